"""Session tokens with a moved clock."""

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.sessions import SessionTokens
from chalicelib.errors import Unauthorized

SECRET = "a-test-signing-key-that-is-long-enough-0123"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


def test_a_token_is_valid_until_exactly_two_hours():
    clock = Clock()
    tokens = SessionTokens(SECRET, "local", clock=clock)
    token, expires_at = tokens.issue("s001", ["counselor"], 3)
    assert expires_at == clock.now + timedelta(hours=2)
    claims = tokens.verify(token)
    assert (claims.userid, claims.roles, claims.token_version) == ("s001", ("counselor",), 3)
    clock.now += timedelta(hours=2) - timedelta(seconds=1)
    tokens.verify(token)
    clock.now += timedelta(seconds=1)
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_a_token_of_another_stage_or_key_is_refused():
    token, _ = SessionTokens(SECRET, "dev").issue("s001", [], 0)
    with pytest.raises(Unauthorized):
        SessionTokens(SECRET, "prod").verify(token)
    with pytest.raises(Unauthorized):
        SessionTokens(SECRET + "x", "dev").verify(token)


def test_short_keys_are_refused():
    with pytest.raises(ValueError):
        SessionTokens("short", "local")
