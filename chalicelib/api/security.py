"""Authentication policies declared on routes.

``authenticated()`` admits any active person holding a current session token; with roles, only
people holding one of them. The token only says who logged in: the person is read from the
directory on every request, so roles come from the directory, and leaving or a change of authority
(which bumps the token version) ends a session at its next request.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalice.app import Request

from chalicelib.api import deps
from chalicelib.domain.access import Actor, Role
from chalicelib.errors import DomainError, Forbidden, NotFound, Unauthorized
from chalicelib.observability import logger
from chalicelib.settings import get_settings

_INVALID = "The session token is invalid or expired."


@dataclass(frozen=True)
class Authenticated:
    roles: frozenset[str] = frozenset()
    errors: tuple[type[DomainError], ...] = (Unauthorized, Forbidden)

    @property
    def name(self) -> str:
        return "authenticated" + (f":{'|'.join(sorted(self.roles))}" if self.roles else "")

    def check(self, request: Request) -> Actor:
        claims = deps.session_tokens().verify(bearer_token(request))
        person = deps.directory().get_person(claims.userid, consistent=True)
        if person is None or person.status != "active" or person.token_version != claims.token_version:
            raise Unauthorized(_INVALID)
        actor = person.actor()
        logger.thread_safe_append_keys(user_id=actor.userid)
        if self.roles and not (actor.roles & self.roles):
            raise Forbidden("Your roles do not allow this.")
        return actor


@dataclass(frozen=True)
class LocalOnly:
    """Public in the ``local`` stage; in every deployed stage the route answers like an unknown one."""

    name: str = "local-only"
    errors: tuple[type[DomainError], ...] = ()

    def check(self, request: Request) -> None:
        if not get_settings().is_local:
            raise NotFound(f"No route matches {request.method} {request.path}.")


LOCAL_ONLY = LocalOnly()


def authenticated(*roles: Role) -> Authenticated:
    return Authenticated(frozenset(role.value for role in roles))


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send the session token as 'Authorization: Bearer <token>'.")
    return token.strip()
