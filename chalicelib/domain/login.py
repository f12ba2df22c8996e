"""Starting a session for a person the directory knows and who has not left."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from chalicelib.domain.directory import PersonRecord
from chalicelib.domain.sessions import SessionTokens
from chalicelib.errors import Forbidden


class PersonLookup(Protocol):
    def get_person(self, userid: str, *, consistent: bool = False) -> PersonRecord | None: ...


def start_session(userid: str, people: PersonLookup, tokens: SessionTokens) -> tuple[str, datetime, PersonRecord]:
    """Issue a token for ``userid`` (compared case-insensitively, as WeCom does).

    Raises:
        Forbidden: unknown to the directory, or left.
    """
    person = people.get_person(userid.strip().lower(), consistent=True)
    if person is None or person.status != "active":
        raise Forbidden("You are not in the campus directory, or your account has been closed.")
    token, expires_at = tokens.issue(person.userid, sorted(person.roles), person.token_version)
    return token, expires_at, person
