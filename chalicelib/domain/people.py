"""Reading and changing people in the directory, with the access rules applied."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from chalicelib.domain.access import ROLES, Action, Actor, Subject, require
from chalicelib.domain.directory import USERID_PATTERN, AuditEntry, PersonRecord, authority_diff, directory_problems
from chalicelib.errors import Forbidden, Invalid, NotFound

_USERID = re.compile(USERID_PATTERN)


class PeopleStore(Protocol):
    def get_person(self, userid: str, *, consistent: bool = False) -> PersonRecord | None: ...
    def known_departments(self, dept_ids: Iterable[str]) -> set[str]: ...
    def class_departments(self, class_ids: Iterable[str]) -> dict[str, str]: ...
    def commit_person_change(self, person: PersonRecord, *, expected_token_version: int,
                             counselor_moves: Mapping[str, tuple[set[str], set[str]]], audit: AuditEntry,
                             actor: str) -> None: ...


def subject_of(person: PersonRecord) -> Subject:
    return Subject(person.userid, person.person_type, person.department, person.class_id)


def read_person(actor: Actor, userid: str, store: PeopleStore, action: Action = Action.READ_PROFILE,
                *, consistent: bool = False) -> PersonRecord:
    """The person, if ``actor`` may see them for ``action``.

    Raises:
        NotFound: no such person, or not in the actor's scope (indistinguishable on purpose).
    """
    userid = userid.lower()
    person = store.get_person(userid, consistent=consistent) if _USERID.match(userid) else None
    if person is None:
        raise NotFound("No such person in your scope.")
    require(actor, action, subject_of(person))
    return person


def change_person(actor: Actor, userid: str, changes: Mapping[str, Any], store: PeopleStore) -> PersonRecord:
    """Apply an administrator's change (roles, status, class, counselor/head assignments).

    The person, their classes' counselor lists and the audit record (old and new values; none of
    these fields is sensitive) are written in one transaction. Any change bumps the token version,
    ending the person's open sessions.

    Raises:
        NotFound: no such person (or the actor may not administer them).
        Forbidden: an administrator changing their own authority (another must do it).
        Invalid: the result breaks a directory rule (``fields`` says which).
        Conflict: someone changed the person meanwhile.
    """
    before = read_person(actor, userid, store, Action.ADMIN_PROFILE, consistent=True)
    values: dict[str, Any] = {}
    if "roles" in changes:
        unknown = sorted(set(changes["roles"]) - ROLES)
        if unknown:
            raise Invalid(fields={"roles": f"unknown role(s): {', '.join(unknown)}"})
        values["roles"] = frozenset(changes["roles"])
    if "counselor_of" in changes:
        values["counselor_of"] = frozenset(changes["counselor_of"])
    for name in ("status", "class_id", "dept_head_of"):
        if name in changes:
            values[name] = changes[name]
    after = replace(before, **values)
    diff = authority_diff(before, after)
    if not diff:
        return before
    if before.userid == actor.userid:
        raise Forbidden("You cannot change your own roles or status; ask another administrator.")
    departments = store.known_departments({after.department} | ({after.dept_head_of} if after.dept_head_of else set()))
    classes = store.class_departments(({after.class_id} if after.class_id else set()) | set(after.counselor_of))
    problems = directory_problems(after, departments, classes)
    if problems:
        raise Invalid("The change breaks a directory rule.", problems)
    after = replace(after, token_version=before.token_version + 1)
    moves: dict[str, tuple[set[str], set[str]]] = {}
    for class_id in after.counselor_of - before.counselor_of:
        moves.setdefault(class_id, (set(), set()))[0].add(before.userid)
    for class_id in before.counselor_of - after.counselor_of:
        moves.setdefault(class_id, (set(), set()))[1].add(before.userid)
    store.commit_person_change(
        after, expected_token_version=before.token_version, counselor_moves=moves,
        audit=AuditEntry(f"person#{before.userid}", "person.change", diff), actor=actor.userid,
    )
    return after
