"""WeCom directory changes (通讯录变更): reading callbacks, applying them, and the nightly reconciliation.

Pure rules: the directory store, the audit log, the replay guard, the queue publisher and the
WeCom API are passed in, never imported.

How WeCom's directory maps onto ours (the decisions, in one place):

* **Departments.** WeCom numbers departments (1 is the root, the corp itself); the directory
  department of WeCom department ``N`` is the one whose ``dept_id`` is ``"N"`` (:func:`dept_id_of`).
  Departments with other ids (an import's codes such as ``cs``) are owned by the import: WeCom never
  moves anyone out of them. A department WeCom creates gets the name WeCom sends, or a placeholder
  when WeCom sends none (``department/simplelist`` never does; a later ``update_party`` renames
  it), and kind ``college`` when its name ends in 学院, ``office`` otherwise; an existing kind is
  kept. ``delete_party`` changes nothing: WeCom only deletes empty departments, the directory has
  no "inactive" flag for them, and historical records keep pointing at them.
* **People.** WeCom knows neither person types nor classes. A person WeCom adds is ``staff``
  (students and third-party staff arrive with their type and class through the import); an existing
  person keeps type, class, roles, card and ID number. A student's department follows their class,
  so WeCom's department changes are ignored for students. WeCom changes a person's name, their
  department (main department, else the first listed) and their status.
* **Status.** WeCom's 1 (active) and 4 (not yet activated) are ``active``; 2 (disabled) and 5 (quit)
  are ``left``; ``delete_user`` is ``left``. Nobody is ever deleted. Leaving changes authority, so
  it bumps the token version and ends open sessions. Events arrive out of order (the queue is an
  SQS standard queue), so before anyone is made to leave by an event (``delete_user``, or a status
  of 2 or 5) WeCom is asked (``user/get``): if it lists them as active again (deleted and added
  back, disabled and enabled), the stale event is skipped (outcome ``still_active``). A leaver
  comes back only through WeCom *adding* them again (``create_user``, confirmed with ``user/get``),
  the import or an administrator: an ``update_user`` with status 1 does not revive anyone, because
  callback URLs configured before 2022-08-15 receive every field on every change, so Status=1
  arrives with a mere rename and would undo a leaving recorded here.
* **Renames of a userid** (``NewUserID``): the person continues under the new userid (card and ID
  number move with them, as do class counselor assignments); the old record is kept as ``left``.
  A rename onto a userid the directory already holds for someone else is never merged: it raises
  :class:`~chalicelib.errors.Conflict` (the record is retried, then lands in the DLQ for a person to
  review), and nobody's status or identity fields change.
* **The nightly reconciliation** marks as leavers only people of WeCom's own (numbered)
  departments. People of import-owned departments are never marked by it: WeCom's listing says
  nothing about who belongs there (a class is imported whole; its students join WeCom one by one).

Applying a change is idempotent: the result is compared with what is stored and only a difference
is written (conditionally on the token version read), so a redelivered event changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chalicelib.domain.directory import USERID_PATTERN, AuditEntry, PersonRecord, authority_diff
from chalicelib.errors import Conflict

WECOM_ACTOR = "wecom"  # audit actor of changes from callbacks
SYNC_ACTOR = "wecom-sync"  # audit actor of changes from the nightly reconciliation

ACTIVE_STATUSES = frozenset({1, 4})  # activated, not yet activated
LEFT_STATUSES = frozenset({2, 5})  # disabled, quit the corp

USER_CHANGES = ("create_user", "update_user", "delete_user")
PARTY_CHANGES = ("create_party", "update_party", "delete_party")
ChangeType = Literal["create_user", "update_user", "delete_user", "create_party", "update_party", "delete_party"]

_USERID = re.compile(USERID_PATTERN)
_DIGITS = re.compile(r"[0-9]{1,10}")
_NAME_MAX = 64
_MAX_DEPARTMENT_ID = 2**32 - 1


class MalformedEvent(ValueError):
    """A decrypted callback is not readable XML, or a change_contact event lacks what it needs."""


# -- departments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Department:
    dept_id: str
    name: str
    kind: str  # college | office


def dept_id_of(wecom_department_id: int) -> str:
    """The directory department of a WeCom department: its number, in decimal."""
    return str(wecom_department_id)


def wecom_department_of(dept_id: str) -> int | None:
    """The WeCom department behind a directory department, or None for an import-owned one."""
    return int(dept_id) if _DIGITS.fullmatch(dept_id) else None


def placeholder_name(wecom_department_id: int) -> str:
    return f"企业微信部门 {wecom_department_id}"


def kind_for(name: str) -> str:
    return "college" if name.endswith("学院") else "office"


# -- the change, as parsed from a callback and carried on the queue --------------------------


class ContactChange(BaseModel):
    """One ``change_contact`` event: the queue message is its JSON form (``None`` fields left out).

    User changes carry ``userid``; party changes carry ``party_id``. Every other field is present
    only when WeCom sent it (``update_user`` sends only what changed, and since 2022-08-15 WeCom may
    send only ``UserID`` and ``Department``).
    """

    model_config = ConfigDict(frozen=True)

    event: Literal["change_contact"] = "change_contact"
    change_type: ChangeType
    created_at: int | None = Field(None, description="WeCom's CreateTime, unix seconds")
    userid: str | None = None
    new_userid: str | None = None
    name: str | None = None
    departments: tuple[int, ...] | None = None
    main_department: int | None = None
    status: int | None = None
    party_id: int | None = None
    parent_id: int | None = None

    @field_validator("userid", "new_userid")
    @classmethod
    def _userid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()  # WeCom compares userids case-insensitively; we store lower case
        if not _USERID.match(value):
            raise ValueError("not a userid")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        value = (value or "").strip()[:_NAME_MAX]
        return value or None

    @field_validator("departments")
    @classmethod
    def _departments(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(not 0 < d <= _MAX_DEPARTMENT_ID for d in value):
            raise ValueError("not a department id")
        return value

    @model_validator(mode="after")
    def _subject(self) -> ContactChange:
        if self.change_type in USER_CHANGES and not self.userid:
            raise ValueError(f"{self.change_type} needs a UserID")
        if self.change_type in PARTY_CHANGES and not self.party_id:
            raise ValueError(f"{self.change_type} needs an Id")
        return self

    def to_message(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> ContactChange:
        """Read a queue message back.

        Raises:
            pydantic.ValidationError: not a change this code understands (the record fails).
        """
        return cls.model_validate(message)


_USER_FIELDS = {"UserID": "userid", "NewUserID": "new_userid", "Name": "name", "MainDepartment": "main_department",
                "Status": "status", "CreateTime": "created_at"}
_PARTY_FIELDS = {"Id": "party_id", "Name": "name", "ParentId": "parent_id", "CreateTime": "created_at"}
_INTEGERS = {"main_department", "status", "created_at", "party_id", "parent_id"}


def parse_event(xml_text: str) -> ContactChange | None:
    """The directory change in a decrypted callback, or None for any other event (not ours to act on).

    Raises:
        MalformedEvent: not XML, XML with a DTD or entities, or a change_contact event lacking its
            subject or carrying unreadable values.
    """
    try:
        root = ElementTree.fromstring(xml_text, forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as exc:
        raise MalformedEvent(f"unreadable XML ({type(exc).__name__})") from None

    def text(tag: str) -> str | None:
        element = root.find(tag)
        value = (element.text or "").strip() if element is not None else ""
        return value or None

    if text("MsgType") != "event" or text("Event") != "change_contact":
        return None
    change_type = text("ChangeType")
    if change_type not in USER_CHANGES + PARTY_CHANGES:
        return None  # update_tag and future kinds: nothing in the directory follows them
    names = _USER_FIELDS if change_type in USER_CHANGES else _PARTY_FIELDS
    values: dict[str, Any] = {"change_type": change_type}
    try:
        for tag, name in names.items():
            raw = text(tag)
            if raw is not None:
                values[name] = _integer(raw) if name in _INTEGERS else raw
        departments = text("Department") if change_type in USER_CHANGES else None
        if departments is not None:
            values["departments"] = tuple(_integer(part) for part in departments.split(",") if part.strip())
        return ContactChange.model_validate(values)
    except (ValueError, ValidationError) as exc:
        # The reason names fields only; values (names, userids) stay out of logs and answers.
        raise MalformedEvent(f"unusable {change_type} event ({_fields_of(exc)})") from None


def _integer(raw: str) -> int:
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw):
        raise ValueError("not a number")
    return int(raw)


def _fields_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return ", ".join(".".join(str(p) for p in e["loc"]) or "event" for e in exc.errors(include_input=False))
    return "a number field"


# -- accepting a callback ---------------------------------------------------------------------


class ReplayGuard(Protocol):
    """Short-lived keys (:class:`~chalicelib.db.kv.KeyValueStore` fits)."""

    def claim(self, key: str, ttl_seconds: float) -> bool: ...

    def release(self, key: str) -> None: ...


Accepted = Literal["queued", "duplicate", "ignored"]


def accept_callback(
    message: str, guard: ReplayGuard, publish: Callable[[dict[str, Any]], object], *, replay_ttl_seconds: float
) -> Accepted:
    """Hand a verified, decrypted callback to the queue, at most once.

    The replay key is the SHA-256 of the decrypted message: it catches a replayed request and also a
    WeCom retry that re-encrypted the same event (same plaintext, new ciphertext). It lives as long
    as a signed timestamp is accepted (twice the allowed skew); after that the timestamp check
    refuses the request anyway. If publishing fails the key is released, so WeCom's retry (it
    retries a failed delivery three times) can still get the event through.

    Returns:
        ``queued``; ``duplicate`` (already accepted: nothing published); ``ignored`` (not a
        directory change: nothing published or stored).

    Raises:
        MalformedEvent: the message is not a readable event.
    """
    change = parse_event(message)
    if change is None:
        return "ignored"
    key = "wecom-callback#" + hashlib.sha256(message.encode("utf-8")).hexdigest()
    if not guard.claim(key, replay_ttl_seconds):
        return "duplicate"
    try:
        publish(change.to_message())
    except BaseException:
        guard.release(key)
        raise
    return "queued"


# -- applying changes -------------------------------------------------------------------------


class WeComDirectory(Protocol):
    """The WeCom calls used here (:class:`~chalicelib.integrations.wecom.WeComClient` fits)."""

    def department_simplelist(self) -> list[dict[str, Any]]: ...

    def user_list_id(self) -> Iterator[dict[str, Any]]: ...

    def user_get(self, userid: str) -> dict[str, Any] | None: ...


class DirectoryStore(Protocol):
    """What applying WeCom changes needs from the directory repository."""

    def get_person(self, userid: str, *, consistent: bool = False) -> PersonRecord | None: ...

    def get_people(self, userids: Sequence[str]) -> dict[str, PersonRecord]: ...

    def members_of_department(self, dept_id: str) -> Iterable[PersonRecord]: ...

    def save_people(self, changes: Sequence[tuple[PersonRecord, int | None]]) -> set[str]: ...

    def move_counselors(self, changes: Mapping[str, tuple[set[str], set[str]]]) -> None: ...

    def departments(self, dept_ids: Iterable[str]) -> dict[str, Department]: ...

    def save_departments(self, departments: Sequence[Department]) -> None: ...


class AuditLog(Protocol):
    def record_many(self, actor: str, entries: Sequence[AuditEntry]) -> None: ...


Outcome = Literal["created", "updated", "left", "renamed", "unchanged", "ignored", "still_active",
                  "department_created", "department_renamed"]


def apply_change(change: ContactChange, store: DirectoryStore, wecom: WeComDirectory, audit: AuditLog) -> Outcome:
    """Apply one directory change; applying it again changes nothing.

    ``wecom`` is asked (``user/get``) only for what an event cannot tell: the name and department
    of someone the directory does not know yet, whether someone WeCom adds back is really active
    now (so a stale, redelivered ``create_user`` cannot revive a leaver), and whether someone an
    event makes leave is really gone (so a ``delete_user`` applied after the ``create_user`` that
    followed it cannot end an active member).

    Returns:
        What happened; ``still_active``: the event would make someone leave whom WeCom lists as
        active now, so it was skipped (nothing written).

    Raises:
        Conflict: the person changed meanwhile (nothing written): retry the change. Also a rename
            onto a userid that already belongs to someone else (nothing written: for manual review).
        Exception: whatever the store or ``wecom`` raise (the queue retries the change).
    """
    if change.change_type in PARTY_CHANGES:
        return _apply_party(change, store, audit)
    if change.change_type == "delete_user":
        before = store.get_person(change.userid, consistent=True)  # type: ignore[arg-type]
        if before is None:
            return "ignored"
        if before.status == "left":
            return "unchanged"
        if still_active(wecom, before.userid):
            return "still_active"
        return _commit_one(before, _leave(before), store, audit)
    if change.new_userid and change.new_userid != change.userid:
        return _rename(change, store, wecom, audit)
    return _apply_user(change, store, wecom, audit)


def _apply_user(change: ContactChange, store: DirectoryStore, wecom: WeComDirectory, audit: AuditLog) -> Outcome:
    userid = change.userid
    assert userid is not None
    before = store.get_person(userid, consistent=True)
    if before is None:
        member = wecom.user_get(userid)
        after = new_person(userid, member) if member is not None else None
        if after is None:  # gone from WeCom meanwhile, or added already disabled
            return "ignored"
        return _commit_one(None, after, store, audit)
    if change.change_type == "create_user" and before.status == "left":
        member = wecom.user_get(userid)
        if member is not None and member.get("status") in ACTIVE_STATUSES:
            return _commit_one(before, merge_member(before, member, revive=True), store, audit)
    if change.status in LEFT_STATUSES and before.status != "left" and still_active(wecom, userid):
        # The whole event is out of date: whatever else it says predates WeCom's current state.
        return "still_active"
    after = merge(before, name=change.name, status=change.status,
                  department=target_department(before, change.main_department, change.departments))
    return _commit_one(before, after, store, audit)


def still_active(wecom: WeComDirectory, userid: str) -> bool:
    """Whether WeCom lists ``userid`` as an active member now (status 1 or 4).

    Not found, disabled (2) or quit (5) is not active: the leaving an event reports stands.

    Raises:
        Exception: whatever ``wecom`` raises (the change is retried rather than guessed).
    """
    member = wecom.user_get(userid)
    return member is not None and member.get("status") in ACTIVE_STATUSES


def _rename(change: ContactChange, store: DirectoryStore, wecom: WeComDirectory, audit: AuditLog) -> Outcome:
    old_id, new_id = change.userid, change.new_userid
    assert old_id is not None and new_id is not None
    people = store.get_people([old_id, new_id])
    old, current = people.get(old_id), people.get(new_id)
    if old is None or (current is not None and old.status == "left"):
        # Renamed already (a redelivery), or never known under the old id: an update of the new id.
        return _apply_user(change.model_copy(update={"userid": new_id, "new_userid": None}), store, wecom, audit)
    if current is not None:
        # The new userid belongs to someone else here (a leaver, say). Merging would end an active
        # person or drop identity documents; which record is right is for a person to decide.
        # The message names no userid: it reaches the logs.
        raise Conflict("The new userid of a WeCom rename already exists in the directory; review it by hand.")
    if change.status in LEFT_STATUSES and old.status != "left" and still_active(wecom, new_id):
        return "still_active"
    # The person continues under the new id: everything moves, identity documents included, so
    # a card or ID number still finds exactly one person.
    moved = replace(old, userid=new_id, token_version=0)
    after = merge(moved, name=change.name, status=change.status,
                  department=target_department(moved, change.main_department, change.departments))
    retired = replace(_leave(old), card_no=None, id_number_sealed=None, id_number_masked=None, id_lookup=None)
    _ensure_departments([after.department], store, audit, WECOM_ACTOR)
    lost = store.save_people([(after, None), (retired, old.token_version)])
    if lost:
        raise Conflict("The person changed while being renamed; retry.")
    moves = {class_id: ({new_id}, {old_id}) for class_id in old.counselor_of & after.counselor_of}
    store.move_counselors(moves)
    audit.record_many(WECOM_ACTOR, [
        AuditEntry(f"person#{old_id}", "person.renamed", {"userid": [old_id, new_id], "status": [old.status, "left"]}),
        AuditEntry(f"person#{new_id}", "person.create", {"renamed_from": old_id, **authority_diff(None, after)}),
    ])
    return "renamed"


def _apply_party(change: ContactChange, store: DirectoryStore, audit: AuditLog) -> Outcome:
    if change.change_type == "delete_party":
        return "ignored"  # kept on purpose: see the module docstring
    assert change.party_id is not None
    dept_id = dept_id_of(change.party_id)
    existing = store.departments([dept_id]).get(dept_id)
    if existing is None:
        name = change.name or placeholder_name(change.party_id)
        _save_departments([Department(dept_id, name, kind_for(name))], [], store, audit, WECOM_ACTOR)
        return "department_created"
    if change.name and change.name != existing.name:
        _save_departments([], [(existing, replace(existing, name=change.name))], store, audit, WECOM_ACTOR)
        return "department_renamed"
    return "unchanged"


def new_person(userid: str, member: Mapping[str, Any]) -> PersonRecord | None:
    """A person WeCom has and the directory does not, from WeCom's ``user/get`` answer.

    Returns None for a member WeCom lists as disabled or quit (nobody is added only to leave).
    """
    if member.get("status") in LEFT_STATUSES:
        return None
    main, departments = _member_departments(member)
    department = main or (departments[0] if departments else 1)  # 1: WeCom's root department
    name = str(member.get("name") or "").strip()[:_NAME_MAX] or userid
    return PersonRecord(userid=userid, name=name, person_type="staff", department=dept_id_of(department))


def merge_member(before: PersonRecord, member: Mapping[str, Any], *, revive: bool = False) -> PersonRecord:
    """``before`` updated with WeCom's ``user/get`` answer (see :func:`merge`)."""
    main, departments = _member_departments(member)
    status = member.get("status")
    return merge(
        before,
        name=str(member.get("name") or "").strip()[:_NAME_MAX] or None,
        department=target_department(before, main, departments),
        status=status if isinstance(status, int) else None,
        revive=revive,
    )


def target_department(before: PersonRecord, main: int | None, departments: Sequence[int] | None) -> str | None:
    """The directory department WeCom now puts ``before`` in, or None when WeCom moves nothing.

    WeCom's main department is the person's department. Without one (WeCom sends ``Department``
    alone since 2022-08-15), the first listed department is, unless the person is already in one
    of those listed: being a member of several departments is not a move.
    """
    if main:
        return dept_id_of(main)
    if not departments or wecom_department_of(before.department) in departments:
        return None
    return dept_id_of(departments[0])


def merge(
    before: PersonRecord,
    *,
    name: str | None = None,
    department: str | None = None,
    status: int | None = None,
    revive: bool = False,
) -> PersonRecord:
    """``before`` with what WeCom says changed; the token version is bumped when authority changes.

    ``department`` (see :func:`target_department`) applies only to non-students who are in a WeCom
    department (a student's department follows their class; an import-owned department keeps its
    people). ``status`` 2 or 5 makes the person ``left``; ``revive`` (WeCom added them again) makes
    a leaver with status 1 or 4 ``active``.
    """
    values: dict[str, Any] = {}
    if name and name != before.name:
        values["name"] = name
    if (department and department != before.department and before.person_type != "student"
            and wecom_department_of(before.department) is not None):
        values["department"] = department
    if status in LEFT_STATUSES:
        values["status"] = "left"
    elif revive and status in ACTIVE_STATUSES:
        values["status"] = "active"
    after = replace(before, **values)
    if after.authority_differs(before):
        after = replace(after, token_version=before.token_version + 1)
    return after


def _leave(before: PersonRecord) -> PersonRecord:
    if before.status == "left":
        return before
    return replace(before, status="left", token_version=before.token_version + 1)


def _member_departments(member: Mapping[str, Any]) -> tuple[int | None, list[int]]:
    """``(main department or None, departments)`` from a ``user/get`` answer."""
    main = member.get("main_department")
    listed = member.get("department")
    departments = [d for d in listed if isinstance(d, int) and d > 0] if isinstance(listed, list) else []
    return (main if isinstance(main, int) and main > 0 else None), departments


def _commit_one(before: PersonRecord | None, after: PersonRecord, store: DirectoryStore, audit: AuditLog) -> Outcome:
    if after == before:
        return "unchanged"
    saved, lost = commit_people([(before, after)], store, audit, WECOM_ACTOR)
    if lost:
        raise Conflict("The person changed meanwhile; retry the WeCom change.")
    if before is None:
        return "created"
    return "left" if after.status == "left" and before.status != "left" else "updated"


def commit_people(
    pairs: Sequence[tuple[PersonRecord | None, PersonRecord]], store: DirectoryStore, audit: AuditLog, actor: str
) -> tuple[set[str], set[str]]:
    """Write the changed people (``(before or None, after)``) and audit changes of authority.

    Departments the people move into are created first when missing (WeCom said they exist). Each
    write is conditional on the token version read, so a concurrent change is never overwritten.

    Returns:
        ``(written userids, userids that lost a race)``; nothing is written for the latter.
    """
    pairs = [(before, after) for before, after in pairs if after != before]
    if not pairs:
        return set(), set()
    _ensure_departments({after.department for _, after in pairs}, store, audit, actor)
    lost = store.save_people([(after, before.token_version if before else None) for before, after in pairs])
    entries = []
    for before, after in pairs:
        diff = authority_diff(before, after)
        if after.userid not in lost and diff:
            entries.append(AuditEntry(f"person#{after.userid}", "person.create" if before is None else "person.change",
                                      diff))
    audit.record_many(actor, entries)
    return {after.userid for _, after in pairs} - lost, lost


def _ensure_departments(dept_ids: Iterable[str], store: DirectoryStore, audit: AuditLog, actor: str) -> int:
    """Create missing WeCom departments with a placeholder name; returns how many were created."""
    wanted = {d for d in dept_ids if wecom_department_of(d) is not None}
    if not wanted:
        return 0
    known = store.departments(wanted)
    missing = []
    for dept_id in sorted(wanted - set(known)):
        name = placeholder_name(int(dept_id))
        missing.append(Department(dept_id, name, kind_for(name)))
    _save_departments(missing, [], store, audit, actor)
    return len(missing)


def _save_departments(created: Sequence[Department], renamed: Sequence[tuple[Department, Department]],
                      store: DirectoryStore, audit: AuditLog, actor: str) -> None:
    if not created and not renamed:
        return
    store.save_departments([*created, *(after for _, after in renamed)])
    audit.record_many(actor, [
        *(AuditEntry(f"department#{d.dept_id}", "department.create", {"name": [None, d.name]}) for d in created),
        *(AuditEntry(f"department#{a.dept_id}", "department.rename", {"name": [b.name, a.name]}) for b, a in renamed),
    ])


# -- the nightly reconciliation ---------------------------------------------------------------


@dataclass
class SyncReport:
    """Counts only (no personal data): what the reconciliation found and changed."""

    wecom_departments: int = 0
    wecom_members: int = 0
    directory_people: int = 0
    departments_created: int = 0
    departments_renamed: int = 0
    people_created: int = 0
    people_updated: int = 0
    people_left: int = 0
    unchanged: int = 0
    left_here_listed_in_wecom: int = 0  # leavers not revived (see the module docstring)
    lookups_failed: int = 0  # user/get failed for them: retried next night
    conflicts: int = 0  # changed by someone else meanwhile: retried next night
    unreadable_members: int = 0  # userids WeCom listed that the directory cannot hold
    leavers_withheld: int = 0  # too many leavers at once: see sync_directory
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SyncAborted(RuntimeError):
    """WeCom's answer cannot be trusted for a reconciliation (nothing about people was changed)."""


MAX_LEAVER_SHARE = 0.05
LEAVER_FLOOR = 20
LOOKUP_THREADS = 8


def sync_directory(
    wecom: WeComDirectory,
    store: DirectoryStore,
    audit: AuditLog,
    *,
    max_leaver_share: float = MAX_LEAVER_SHARE,
    leaver_floor: int = LEAVER_FLOOR,
) -> SyncReport:
    """Reconcile the directory with WeCom's: departments, then people; only differences are written.

    1. Every WeCom department exists in the directory (created with a placeholder name when
       missing; renamed when WeCom's listing carries a different name).
    2. Every member WeCom lists (``user/list_id``) is compared with the directory, which is read by
       department through the ``by_department`` index (the WeCom departments, plus the departments
       of listed members found elsewhere by key): never a Scan. Members the directory lacks, and
       non-students whose directory department is not among their WeCom departments, are looked up
       (``user/get``) and added or updated; members unchanged by that measure are not looked up.
    3. Active people of the WeCom departments (numbered, listed by ``department/simplelist``)
       whom WeCom does not list are ``left``. People of import-owned departments are never marked:
       WeCom's listing says nothing about them (a class imported whole joins WeCom one by one).
       If that would be more than ``max_leaver_share`` of the active people of the WeCom
       departments (and more than ``leaver_floor`` people), nobody is marked and
       ``leavers_withheld`` says how many: a truncated listing or an app whose visible range
       shrank must not end thousands of sessions at 02:30.

    Raises:
        SyncAborted: WeCom listed no member at all (nothing about people is changed).
        Exception: WeCom failed while listing (nothing about people is changed).
    """
    report = SyncReport()
    wecom_departments = _sync_departments(wecom.department_simplelist(), store, audit, report)

    listed: dict[str, set[int]] = {}
    for row in wecom.user_list_id():
        userid = str(row.get("userid") or "").strip().lower()
        if not _USERID.match(userid):
            report.unreadable_members += 1
            continue
        departments = listed.setdefault(userid, set())
        if isinstance(row.get("department"), int):
            departments.add(row["department"])
    report.wecom_members = len(listed)
    if not listed:
        raise SyncAborted("WeCom listed no members; the directory was left as it is")

    wecom_dept_ids = {dept_id_of(d) for d in wecom_departments}
    directory = _read_directory(store, sorted(wecom_dept_ids), listed)
    report.directory_people = len(directory)

    pairs: list[tuple[PersonRecord | None, PersonRecord]] = []
    to_look_up: list[str] = []
    for userid, departments in listed.items():
        before = directory.get(userid)
        if before is None:
            to_look_up.append(userid)
        elif before.status == "left":
            report.left_here_listed_in_wecom += 1
        elif before.person_type != "student" and wecom_department_of(before.department) not in (departments | {None}):
            to_look_up.append(userid)
        else:
            report.unchanged += 1
    for userid, member in _look_up(wecom, to_look_up, report):
        before = directory.get(userid)
        after = new_person(userid, member) if before is None else merge_member(before, member)
        if after is None:  # listed, but disabled or quit: nobody is added only to leave
            continue
        if after == before:
            report.unchanged += 1
            continue
        pairs.append((before, after))

    # Only WeCom's own departments: their members are exactly whom WeCom lists there.
    owned = [p for p in directory.values() if p.status == "active" and p.department in wecom_dept_ids]
    leavers = [p for p in owned if p.userid not in listed]
    active = len(owned)
    if len(leavers) > max(leaver_floor, max_leaver_share * active):
        report.leavers_withheld = len(leavers)
        report.notes.append("too many leavers at once: none marked; check the app's visible range in WeCom")
    else:
        pairs += [(p, _leave(p)) for p in leavers]

    written, lost = commit_people(pairs, store, audit, SYNC_ACTOR)
    report.conflicts = len(lost)
    for before, after in pairs:
        if after.userid not in written:
            continue
        if before is None:
            report.people_created += 1
        elif after.status == "left" and before.status != "left":
            report.people_left += 1
        else:
            report.people_updated += 1
    return report


def _sync_departments(listing: Sequence[Mapping[str, Any]], store: DirectoryStore, audit: AuditLog,
                      report: SyncReport) -> set[int]:
    names: dict[int, str | None] = {}
    for row in listing:
        wecom_id = row.get("id")
        if isinstance(wecom_id, int) and 0 < wecom_id <= _MAX_DEPARTMENT_ID:
            name = str(row.get("name") or "").strip()[:_NAME_MAX]
            names[wecom_id] = name or None
    report.wecom_departments = len(names)
    existing = store.departments(dept_id_of(i) for i in names)
    created, renamed = [], []
    for wecom_id, name in sorted(names.items()):
        before = existing.get(dept_id_of(wecom_id))
        if before is None:
            label = name or placeholder_name(wecom_id)
            created.append(Department(dept_id_of(wecom_id), label, kind_for(label)))
        elif name and name != before.name:
            renamed.append((before, replace(before, name=name)))
    _save_departments(created, renamed, store, audit, SYNC_ACTOR)
    report.departments_created, report.departments_renamed = len(created), len(renamed)
    return set(names)


def _read_directory(store: DirectoryStore, dept_ids: Sequence[str], listed: Mapping[str, set[int]]
                    ) -> dict[str, PersonRecord]:
    """The directory people to compare: the WeCom departments' members, plus the listed members
    found in no WeCom department, read by key (their colleagues there are not WeCom's to judge)."""
    people: dict[str, PersonRecord] = {}
    for dept_id in dept_ids:
        for person in store.members_of_department(dept_id):
            people[person.userid] = person
    people.update(store.get_people(sorted(set(listed) - set(people))))
    return people


def _look_up(wecom: WeComDirectory, userids: Sequence[str], report: SyncReport
             ) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``user/get`` for each userid (a few at a time: each is a round trip to WeCom)."""
    def one(userid: str) -> tuple[str, Mapping[str, Any] | None, bool]:
        try:
            return userid, wecom.user_get(userid), True
        except Exception:  # noqa: BLE001 (one member WeCom cannot describe must not stop the others)
            return userid, None, False

    if not userids:
        return
    with ThreadPoolExecutor(max_workers=min(LOOKUP_THREADS, len(userids))) as pool:
        for userid, member, ok in pool.map(one, userids):
            if not ok:
                report.lookups_failed += 1
            elif member is not None:  # gone from WeCom between the listing and the lookup
                yield userid, member
