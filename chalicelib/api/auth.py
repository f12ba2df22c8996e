"""Logging in: a WeCom OAuth code (or, in the local stage only, a demo userid) for a session token."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.routing import PUBLIC, Area, RequestModel
from chalicelib.api.schemas import Profile
from chalicelib.api.security import LOCAL_ONLY, authenticated
from chalicelib.domain.access import Actor, scopes
from chalicelib.domain.directory import USERID_PATTERN
from chalicelib.domain.login import start_session
from chalicelib.errors import Forbidden, Unauthorized, UpstreamUnavailable
from chalicelib.integrations.wecom import WeComError, WeComUnavailable, wecom_client
from chalicelib.observability import logger

area = Area("auth")


class WeComLogin(RequestModel):
    code: str = Field(min_length=1, max_length=512)


class DevLogin(RequestModel):
    userid: str = Field(pattern=USERID_PATTERN)


class Session(BaseModel):
    token: str
    expires_at: datetime
    user: Profile


class Me(BaseModel):
    user: Profile
    roles: list[str]
    scopes: list[str]


@area.route("/auth/wecom", "POST", summary="Log in with a WeCom OAuth code", policy=PUBLIC, body=WeComLogin,
            response=Session, errors=(Unauthorized, Forbidden, UpstreamUnavailable))
def login_with_wecom(body: WeComLogin) -> Session:
    """Exchanges the code from WeCom's OAuth redirect (valid once, five minutes) for a session."""
    try:
        userid = wecom_client().userid_for_code(body.code)
    except WeComUnavailable as exc:
        logger.warning("wecom login unavailable", extra={"errcode": exc.errcode})
        raise UpstreamUnavailable("WeCom is not answering; try again shortly.") from None
    except WeComError as exc:
        # A wrong corp id or secret lands here: loud in the logs, vague to the user.
        logger.error("wecom login refused", extra={"errcode": exc.errcode})
        raise UpstreamUnavailable("WeCom refused the login; the administrators have been told.") from None
    if userid is None:
        raise Unauthorized("The login code is invalid or was already used.")
    return _session_for(userid)


@area.route("/auth/dev-login", "POST", summary="Local stage only: log in as any demo person",
            policy=LOCAL_ONLY, body=DevLogin, response=Session, errors=(Forbidden,))
def dev_login(body: DevLogin) -> Session:
    """Answers 404 in every deployed stage, before reading the body, like a route that does not exist."""
    return _session_for(body.userid)


@area.route("/me", "GET", summary="My profile, roles and scopes", policy=authenticated(), response=Me)
def get_me(actor: Actor) -> Me:
    person = deps.directory().get_person(actor.userid)
    assert person is not None  # the policy just read them
    return Me(user=Profile.of(person), roles=sorted(actor.roles), scopes=scopes(actor))


def _session_for(userid: str) -> Session:
    token, expires_at, person = start_session(userid, deps.directory(), deps.session_tokens())
    return Session(token=token, expires_at=expires_at, user=Profile.of(person))
