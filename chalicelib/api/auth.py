"""Logging in: a WeCom OAuth code (or, in the local stage only, a demo userid) for a session token."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.routing import PUBLIC, Area, RequestModel
from chalicelib.api.schemas import Profile
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Actor, scopes
from chalicelib.domain.directory import USERID_PATTERN, PersonRecord
from chalicelib.errors import Forbidden, NotFound, Unauthorized, UpstreamUnavailable
from chalicelib.integrations.wecom import WeComError, WeComUnavailable, wecom_client
from chalicelib.settings import get_settings

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
    except WeComUnavailable:
        raise UpstreamUnavailable("WeCom is not answering; try again shortly.") from None
    except WeComError:
        raise UpstreamUnavailable("WeCom refused the login; the administrators have been told.") from None
    if userid is None:
        raise Unauthorized("The login code is invalid or was already used.")
    return _session_for(userid)


@area.route("/auth/dev-login", "POST", summary="Local stage only: log in as any demo person", policy=PUBLIC,
            body=DevLogin, response=Session, errors=(Forbidden, NotFound))
def dev_login(body: DevLogin) -> Session:
    """Answers 404 in every deployed stage, exactly like a route that does not exist."""
    if not get_settings().is_local:
        raise NotFound("No route matches this request.")
    return _session_for(body.userid)


@area.route("/me", "GET", summary="My profile, roles and scopes", policy=authenticated(), response=Me)
def get_me(actor: Actor) -> Me:
    person = deps.directory().get_person(actor.userid)
    assert person is not None  # the policy just read them
    return Me(user=Profile.of(person), roles=sorted(actor.roles), scopes=scopes(actor))


def _session_for(userid: str) -> Session:
    person: PersonRecord | None = deps.directory().get_person(userid, consistent=True)
    if person is None or person.status != "active":
        raise Forbidden("You are not in the campus directory, or your account has been closed.")
    token, expires_at = deps.session_tokens().issue(userid, sorted(person.roles), person.token_version)
    return Session(token=token, expires_at=expires_at, user=Profile.of(person))
