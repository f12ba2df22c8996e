"""The campus directory's rules: who a person is, what a valid row is, what an import changes.

Pure rules: the repository (``chalicelib.db.directory``) is passed in, never imported.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from chalicelib.domain.access import ROLES, Actor, Role
from chalicelib.domain.identity import InvalidIdentity, mask_id_number, normalise_id_number
from chalicelib.domain.protection import FieldProtector

MAX_IMPORT_ROWS = 1000
USERID_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
PersonType = Literal["staff", "student", "third_party"]
Status = Literal["active", "left"]


@dataclass(frozen=True)
class PersonRecord:
    """A person as the directory stores them. The ID number is only ever held sealed."""

    userid: str
    name: str
    person_type: str
    department: str
    class_id: str | None = None
    roles: frozenset[str] = frozenset()
    counselor_of: frozenset[str] = frozenset()
    dept_head_of: str | None = None
    status: str = "active"
    card_no: str | None = None
    id_number_sealed: str | None = None
    id_number_masked: str | None = None
    id_lookup: str | None = None
    token_version: int = 0
    health_consent: str | None = None  # the version of the health-data consent given, if any

    def actor(self) -> Actor:
        return Actor(
            userid=self.userid,
            person_type=self.person_type,
            department=self.department,
            roles=self.roles,
            class_id=self.class_id,
            counselor_of=self.counselor_of,
            dept_head_of=self.dept_head_of,
            health_consent=self.health_consent,
        )

    # Changing any of these changes what the person may do: older sessions must end.
    AUTHORITY_FIELDS = ("roles", "counselor_of", "dept_head_of", "status", "department", "class_id", "person_type")

    def authority_differs(self, other: PersonRecord) -> bool:
        return any(getattr(self, name) != getattr(other, name) for name in self.AUTHORITY_FIELDS)


ShortId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                          pattern=r"^[A-Za-z0-9_.-]+$")]
UserId = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=USERID_PATTERN)]


class PersonRow(BaseModel):
    """One row of a directory import (JSON object or CSV record). Unknown columns are refused.

    A column that is absent (or an empty CSV cell) keeps the stored value; ``userid`` is compared
    case-insensitively, as WeCom does, and stored lower-case.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    line: int | None = Field(None, ge=1, description="Line in the source file, for error reports")
    userid: UserId
    name: str = Field(min_length=1, max_length=64)
    type: PersonType
    department: ShortId
    class_id: ShortId | None = None
    roles: list[str] = Field(default_factory=list, max_length=len(ROLES))
    counselor_of: list[ShortId] = Field(default_factory=list, max_length=50)
    dept_head_of: ShortId | None = None
    status: Status = "active"
    card_no: str | None = Field(None, min_length=1, max_length=32)
    id_number: str | None = None

    @field_validator("roles", "counselor_of", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # CSV cells carry lists as "a;b" (or "a|b", "a b"); JSON sends real lists.
        if isinstance(value, str):
            return [part for part in re.split(r"[;|,\s]+", value) if part]
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - ROLES)
        if unknown:
            raise ValueError(f"unknown role(s): {', '.join(_safe(u) for u in unknown)}")
        return sorted(set(value))

    @field_validator("id_number")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalise_id_number(value)
        except InvalidIdentity as exc:
            raise ValueError(f"ID number {exc}") from None

    def given(self, name: str) -> bool:
        return name in self.model_fields_set


@dataclass(frozen=True)
class RowError:
    line: int
    userid: str | None
    reason: str


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    subject: str
    action: str
    detail: dict[str, Any]


class DirectoryStore(Protocol):
    """What the import needs from the repository."""

    def get_people(self, userids: Sequence[str]) -> dict[str, PersonRecord]: ...
    def known_departments(self, dept_ids: Iterable[str]) -> set[str]: ...
    def class_departments(self, class_ids: Iterable[str]) -> dict[str, str]: ...
    def save_people(self, changes: Sequence[tuple[PersonRecord, int | None]]) -> set[str]: ...
    def move_counselors(self, changes: Mapping[str, tuple[set[str], set[str]]]) -> None: ...


class AuditLog(Protocol):
    def record_many(self, actor: str, entries: Sequence[AuditEntry]) -> None: ...


def rows_from_csv(text: str, first_line: int = 1) -> list[dict[str, Any]]:
    """Parse CSV (header row first) into row dicts carrying their line in the file.

    ``first_line`` is the file line of the header, for a chunk cut from a larger file. Empty
    cells are left out (the stored value is kept).

    Raises:
        ValueError: the text is not parseable CSV (for example a field beyond the size limit).
    """
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        for record in reader:
            row: dict[str, Any] = {k.strip(): v for k, v in record.items() if k is not None and v not in (None, "")}
            if None in record:  # more cells than columns
                row["_extra_cells"] = record[None]
            row["line"] = first_line - 1 + reader.line_num
            rows.append(row)
    except csv.Error as exc:
        raise ValueError(f"unreadable CSV near line {first_line - 1 + reader.line_num}") from exc
    return rows


def directory_problems(person: PersonRecord, departments: set[str], classes: Mapping[str, str]) -> dict[str, str]:
    """Every rule a stored person must satisfy, as ``{field: reason}`` (empty when valid).

    ``departments`` and ``classes`` (``{class_id: department}``) must hold at least the ones the
    person refers to.
    """
    problems: dict[str, str] = {}
    if person.department not in departments:
        problems["department"] = f"unknown department {_safe(person.department)!r}"
    if person.person_type == "student" and not person.class_id:
        problems["class_id"] = "a student needs a class"
    elif person.person_type != "student" and person.class_id:
        problems["class_id"] = "only students belong to a class"
    elif person.class_id:
        if person.class_id not in classes:
            problems["class_id"] = f"unknown class {_safe(person.class_id)!r}"
        elif classes[person.class_id] != person.department:
            problems["class_id"] = f"class {person.class_id!r} belongs to department {classes[person.class_id]!r}"
    if bool(person.counselor_of) != (Role.COUNSELOR.value in person.roles):
        problems["counselor_of"] = "counselor_of and the counselor role go together"
    else:
        missing = sorted(c for c in person.counselor_of if c not in classes)
        if missing:
            problems["counselor_of"] = f"unknown class(es): {', '.join(_safe(m) for m in missing)}"
    if bool(person.dept_head_of) != (Role.DEPT_HEAD.value in person.roles):
        problems["dept_head_of"] = "dept_head_of and the dept_head role go together"
    elif person.dept_head_of and person.dept_head_of not in departments:
        problems["dept_head_of"] = f"unknown department {_safe(person.dept_head_of)!r}"
    return problems


def authority_diff(before: PersonRecord | None, after: PersonRecord) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the fields that decide what the person may do (none sensitive)."""
    return {
        name: [_plain(getattr(before, name)) if before else None, _plain(getattr(after, name))]
        for name in PersonRecord.AUTHORITY_FIELDS
        if before is None or getattr(before, name) != getattr(after, name)
    }


def import_people(
    raw_rows: Sequence[Mapping[str, Any]],
    store: DirectoryStore,
    protector: FieldProtector,
    audit: AuditLog,
    actor: Actor,
    *,
    first_line: int = 1,
) -> ImportResult:
    """Validate and upsert people. Bad rows are reported by line and left out; good rows land whole.

    Each write is conditional on the person being unchanged since this import read them, so a
    concurrent change (someone leaving meanwhile) is never overwritten: that row is reported. A
    row that changes someone's authority bumps their token version (their sessions end); nobody
    may change their own authority. Counselor assignments are mirrored onto classes, and every
    creation and change of authority is audited.
    """
    result = ImportResult()
    parsed: list[PersonRow] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rows):
        line = raw.get("line") if isinstance(raw.get("line"), int) else first_line + index
        raw_userid = raw.get("userid")
        userid = raw_userid.strip().lower() if isinstance(raw_userid, str) else None
        try:
            row = PersonRow.model_validate({**raw, "line": line})
        except ValidationError as exc:
            result.errors.append(RowError(line, _safe(userid) if userid else None, _reasons(exc)))
            continue
        if row.userid in seen:
            result.errors.append(RowError(line, row.userid, f"duplicate userid (first on line {seen[row.userid]})"))
            continue
        seen[row.userid] = line
        parsed.append(row)

    existing = store.get_people([r.userid for r in parsed])
    merged = [(row, existing.get(row.userid), _merge(row, existing.get(row.userid), protector)) for row in parsed]
    departments = store.known_departments(
        {m.department for _, _, m in merged} | {m.dept_head_of for _, _, m in merged if m.dept_head_of})
    classes = store.class_departments(
        {m.class_id for _, _, m in merged if m.class_id} | {c for _, _, m in merged for c in m.counselor_of})

    to_save: list[tuple[PersonRecord, int | None]] = []
    entries: dict[str, AuditEntry] = {}
    kept: list[tuple[PersonRecord | None, PersonRecord]] = []
    for row, before, after in merged:
        problems = directory_problems(after, departments, classes)
        if problems:
            result.errors.append(RowError(row.line or 0, row.userid, "; ".join(problems.values())))
            continue
        if before is not None and after == before:
            result.unchanged += 1
            kept.append((before, after))
            continue
        diff = authority_diff(before, after)
        if row.userid == actor.userid and before is not None and diff:
            result.errors.append(RowError(row.line or 0, row.userid,
                                          "you cannot change your own roles or status; ask another administrator"))
            continue
        if before is not None and diff:
            after = replace(after, token_version=before.token_version + 1)
        to_save.append((after, before.token_version if before else None))
        kept.append((before, after))
        if diff:
            action = "person.create" if before is None else "person.change"
            entries[row.userid] = AuditEntry(f"person#{row.userid}", action, diff)

    lost = store.save_people(to_save)
    lines = {row.userid: row.line or 0 for row in parsed}
    for userid in sorted(lost):
        result.errors.append(RowError(lines[userid], userid,
                                      "changed by someone else during the import; import this row again"))
    moves: dict[str, tuple[set[str], set[str]]] = {}
    for before, after in kept:
        if after.userid in lost:
            continue
        if before is None:
            result.created += 1
        elif after != before:
            result.updated += 1
        # Derived from the rows, not only from what changed: re-running an interrupted import
        # repairs the class lists (the set operations are idempotent).
        for class_id in after.counselor_of:
            moves.setdefault(class_id, (set(), set()))[0].add(after.userid)
        for class_id in (before.counselor_of if before else frozenset()) - after.counselor_of:
            moves.setdefault(class_id, (set(), set()))[1].add(after.userid)
    store.move_counselors(moves)
    audit.record_many(actor.userid, [e for u, e in entries.items() if u not in lost])
    result.errors.sort(key=lambda e: e.line)
    return result


def _merge(row: PersonRow, before: PersonRecord | None, protector: FieldProtector) -> PersonRecord:
    """The record after applying ``row`` to ``before``: absent columns keep stored values."""
    def pick(name: str, value: Any, default: Any) -> Any:
        if row.given(name):
            return value
        return getattr(before, _STORED.get(name, name)) if before is not None else default

    sealed = before.id_number_sealed if before else None
    masked = before.id_number_masked if before else None
    lookup = before.id_lookup if before else None
    if row.id_number:
        new_lookup = protector.lookup_key("id_number", row.id_number)
        if new_lookup != lookup:  # same number: keep the ciphertext (a new nonce is no change)
            sealed, masked, lookup = protector.seal("id_number", row.id_number), mask_id_number(row.id_number), new_lookup
    return PersonRecord(
        userid=row.userid,
        name=row.name,
        person_type=row.type,
        department=row.department,
        class_id=pick("class_id", row.class_id, None),
        roles=frozenset(pick("roles", row.roles, ())),
        counselor_of=frozenset(pick("counselor_of", row.counselor_of, ())),
        dept_head_of=pick("dept_head_of", row.dept_head_of, None),
        status=pick("status", row.status, "active"),
        card_no=pick("card_no", row.card_no, None),
        id_number_sealed=sealed,
        id_number_masked=masked,
        id_lookup=lookup,
        token_version=before.token_version if before else 0,
        health_consent=before.health_consent if before else None,
    )


_STORED = {"type": "person_type"}
_LONG_DIGITS = re.compile(r"\d{11,}")


def _safe(value: Any) -> str:
    """A value fit to echo in an error: runs of 11+ digits (ID or phone numbers) masked."""
    text = str(value)[:64]
    return _LONG_DIGITS.sub(lambda m: mask_id_number(m.group()), text)


def _plain(value: Any) -> Any:
    return sorted(value) if isinstance(value, frozenset) else value


def _reasons(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(p) for p in err["loc"])
        message = _safe(err["msg"].removeprefix("Value error, "))
        if err["type"] == "extra_forbidden" and location == "_extra_cells":
            parts.append("more cells than columns")
        else:
            parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
