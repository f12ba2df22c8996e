"""Reading and changing people in the directory, with the access rules applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from chalicelib.domain.access import ROLES, Action, Actor, Role, Subject, require
from chalicelib.domain.directory import PersonRecord
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound


class PeopleStore(Protocol):
    def get_person(self, userid: str, *, consistent: bool = False) -> PersonRecord | None: ...
    def replace_person(self, person: PersonRecord, *, expected_token_version: int) -> None: ...
    def known_departments(self, dept_ids: Any) -> set[str]: ...
    def class_departments(self, class_ids: Any) -> dict[str, str]: ...
    def move_counselors(self, changes: Mapping[str, tuple[set[str], set[str]]]) -> None: ...


class AuditTrail(Protocol):
    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None: ...


def subject_of(person: PersonRecord) -> Subject:
    return Subject(person.userid, person.person_type, person.department, person.class_id)


def read_person(actor: Actor, userid: str, store: PeopleStore, action: Action = Action.READ_PROFILE) -> PersonRecord:
    """The person, if ``actor`` may see them for ``action``.

    Raises:
        NotFound: no such person, or not in the actor's scope (indistinguishable on purpose).
    """
    person = store.get_person(userid)
    if person is None:
        raise NotFound("No such person in your scope.")
    require(actor, action, subject_of(person))
    return person


def change_person(
    actor: Actor, userid: str, changes: Mapping[str, Any], store: PeopleStore, audit: AuditTrail
) -> PersonRecord:
    """Apply an administrator's change (roles, status, class, counselor/head assignments).

    Any change bumps the token version, ending the person's open sessions. Recorded in the audit
    trail with old and new values (none of these fields is sensitive).

    Raises:
        NotFound: no such person (or the actor may not administer them).
        Invalid: the result breaks a directory rule (``fields`` says which).
        Conflict: someone changed the person meanwhile.
        Forbidden: an administrator removing their own it_admin role.
    """
    before = read_person(actor, userid, store, Action.ADMIN_PROFILE)
    values: dict[str, Any] = {}
    if "roles" in changes:
        unknown = sorted(set(changes["roles"]) - ROLES)
        if unknown:
            raise Invalid(fields={"roles": f"unknown role(s): {', '.join(unknown)}"})
        values["roles"] = frozenset(changes["roles"])
        if userid == actor.userid and Role.IT_ADMIN.value not in values["roles"]:
            raise Forbidden("You cannot remove your own it_admin role; ask another administrator.")
    for name in ("status", "class_id", "dept_head_of"):
        if name in changes:
            values[name] = changes[name]
    if "counselor_of" in changes:
        values["counselor_of"] = frozenset(changes["counselor_of"])
    after = replace(before, **values)
    _check_rules(after, store)
    diff = {name: [_plain(getattr(before, name)), _plain(getattr(after, name))]
            for name in values if getattr(before, name) != getattr(after, name)}
    if not diff:
        return before
    after = replace(after, token_version=before.token_version + 1)
    store.replace_person(after, expected_token_version=before.token_version)
    moves: dict[str, tuple[set[str], set[str]]] = {}
    for class_id in after.counselor_of - before.counselor_of:
        moves.setdefault(class_id, (set(), set()))[0].add(userid)
    for class_id in before.counselor_of - after.counselor_of:
        moves.setdefault(class_id, (set(), set()))[1].add(userid)
    store.move_counselors(moves)
    audit.record(subject=f"person#{userid}", actor=actor.userid, action="person.change", detail=diff)
    return after


def _check_rules(person: PersonRecord, store: PeopleStore) -> None:
    fields: dict[str, str] = {}
    if person.person_type == "student" and not person.class_id:
        fields["class_id"] = "a student needs a class"
    if person.person_type != "student" and person.class_id:
        fields["class_id"] = "only students belong to a class"
    if person.class_id:
        classes = store.class_departments({person.class_id})
        if person.class_id not in classes:
            fields["class_id"] = f"unknown class {person.class_id!r}"
        elif classes[person.class_id] != person.department:
            fields["class_id"] = f"class belongs to department {classes[person.class_id]!r}"
    if bool(person.counselor_of) != (Role.COUNSELOR.value in person.roles):
        fields["counselor_of"] = "counselor_of and the counselor role go together"
    elif person.counselor_of:
        missing = sorted(set(person.counselor_of) - set(store.class_departments(person.counselor_of)))
        if missing:
            fields["counselor_of"] = f"unknown class(es): {', '.join(missing)}"
    if bool(person.dept_head_of) != (Role.DEPT_HEAD.value in person.roles):
        fields["dept_head_of"] = "dept_head_of and the dept_head role go together"
    elif person.dept_head_of and person.dept_head_of not in store.known_departments({person.dept_head_of}):
        fields["dept_head_of"] = f"unknown department {person.dept_head_of!r}"
    if fields:
        raise Invalid("The change breaks a directory rule.", fields)


def _plain(value: Any) -> Any:
    return sorted(value) if isinstance(value, frozenset) else value


__all__ = ["Conflict", "change_person", "read_person", "subject_of"]
