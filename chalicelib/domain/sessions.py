"""Session tokens: signed JWTs (HS256) that name a person and a directory token version.

A token proves who logged in and when; it does not grant anything by itself. Each request looks
the person up again, so leaving (status ``left``) or a role change (which bumps the person's
``token_version``) ends every older session at the next request, not at expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt

from chalicelib.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "campus-platform"
DEFAULT_TTL = timedelta(hours=2)


@dataclass(frozen=True)
class SessionClaims:
    userid: str
    roles: tuple[str, ...]
    token_version: int
    expires_at: datetime


class SessionTokens:
    """Issues and verifies tokens for one stage (the audience), with one signing key."""

    def __init__(self, secret: str, stage: str, *, ttl: timedelta = DEFAULT_TTL,
                 clock: Callable[[], datetime] | None = None) -> None:
        if len(secret) < 32:
            raise ValueError("the session signing key must be at least 32 characters")
        self._secret = secret
        self._audience = f"{ISSUER}:{stage}"
        self._ttl = ttl
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    def issue(self, userid: str, roles: list[str] | tuple[str, ...], token_version: int) -> tuple[str, datetime]:
        """Return ``(token, expires_at)``."""
        now = self._clock().replace(microsecond=0)
        expires_at = now + self._ttl
        claims = {
            "iss": ISSUER,
            "aud": self._audience,
            "sub": userid,
            "roles": sorted(roles),
            "ver": token_version,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at

    def verify(self, token: str) -> SessionClaims:
        """Check signature, algorithm, issuer, audience and expiry.

        Raises:
            Unauthorized: for any token that is not one of ours and current (no detail why, by design).
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=ISSUER,
                # Times are checked below against the injected clock, so tests can move time.
                options={"require": ["exp", "iat", "sub", "aud", "iss"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            raise Unauthorized("The session token is invalid or expired.") from None
        expires, issued = claims.get("exp"), claims.get("iat")
        now = self._clock().timestamp()
        if (
            not isinstance(expires, int)
            or not isinstance(issued, int)
            or now >= expires
            or issued > now + 60  # issued in the future: a clock problem or a forgery
            or not isinstance(claims.get("ver"), int)
            or not isinstance(claims.get("roles"), list)
        ):
            raise Unauthorized("The session token is invalid or expired.")
        return SessionClaims(
            userid=str(claims["sub"]),
            roles=tuple(claims["roles"]),
            token_version=claims["ver"],
            expires_at=datetime.fromtimestamp(expires, timezone.utc),
        )
