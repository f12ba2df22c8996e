"""The campus directory's rules: who a person is, what a valid row is, what an import changes.

Pure rules: the repository (``chalicelib.db.directory``) is passed in, never imported.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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

    def actor(self) -> Actor:
        return Actor(
            userid=self.userid,
            person_type=self.person_type,
            department=self.department,
            roles=self.roles,
            class_id=self.class_id,
            counselor_of=self.counselor_of,
            dept_head_of=self.dept_head_of,
        )

    # Changing any of these changes what the person may do: older sessions must end.
    AUTHORITY_FIELDS = ("roles", "counselor_of", "dept_head_of", "status", "department", "class_id", "person_type")

    def authority_differs(self, other: PersonRecord) -> bool:
        return any(getattr(self, name) != getattr(other, name) for name in self.AUTHORITY_FIELDS)


class PersonRow(BaseModel):
    """One row of a directory import (JSON object or CSV record). Unknown columns are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    line: int | None = Field(None, ge=1, description="Line in the source file, for error reports")
    userid: str = Field(pattern=USERID_PATTERN)
    name: str = Field(min_length=1, max_length=64)
    type: PersonType
    department: str = Field(min_length=1, max_length=32)
    class_id: str | None = Field(None, max_length=32)
    roles: list[str] = Field(default_factory=list)
    counselor_of: list[str] = Field(default_factory=list)
    dept_head_of: str | None = None
    status: Status = "active"
    card_no: str | None = Field(None, max_length=32)
    id_number: str | None = None

    @field_validator("roles", "counselor_of", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # CSV cells carry lists as "a;b" (or "a|b", "a b"); JSON sends real lists.
        if isinstance(value, str):
            return [part for part in re.split(r"[;|,\s]+", value) if part]
        return value

    @field_validator("class_id", "dept_head_of", "card_no", "id_number", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - ROLES)
        if unknown:
            raise ValueError(f"unknown role(s): {', '.join(unknown)}")
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

    @model_validator(mode="after")
    def _consistent(self) -> PersonRow:
        if self.type == "student" and not self.class_id:
            raise ValueError("a student needs a class_id")
        if self.type != "student" and self.class_id:
            raise ValueError("only students belong to a class")
        if bool(self.counselor_of) != (Role.COUNSELOR.value in self.roles):
            raise ValueError("counselor_of and the counselor role go together")
        if bool(self.dept_head_of) != (Role.DEPT_HEAD.value in self.roles):
            raise ValueError("dept_head_of and the dept_head role go together")
        return self


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


class DirectoryStore(Protocol):
    """What the import needs from the repository."""

    def get_people(self, userids: Sequence[str]) -> dict[str, PersonRecord]: ...
    def known_departments(self, dept_ids: Iterable[str]) -> set[str]: ...
    def class_departments(self, class_ids: Iterable[str]) -> dict[str, str]: ...
    def save_people(self, people: Sequence[PersonRecord]) -> None: ...
    def move_counselors(self, changes: Mapping[str, tuple[set[str], set[str]]]) -> None: ...


def rows_from_csv(text: str, first_line: int = 1) -> list[dict[str, Any]]:
    """Parse CSV (header row first) into row dicts carrying their line in the file.

    ``first_line`` is the file line of the header, for a chunk cut from a larger file.
    """
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for record in reader:
        row: dict[str, Any] = {k.strip(): v for k, v in record.items() if k is not None}
        if None in record:  # more cells than columns
            row["_extra_cells"] = record[None]
        row["line"] = first_line - 1 + reader.line_num
        rows.append(row)
    return rows


def import_people(
    raw_rows: Sequence[Mapping[str, Any]],
    store: DirectoryStore,
    protector: FieldProtector,
    *,
    first_line: int = 1,
) -> ImportResult:
    """Validate and upsert people. Bad rows are reported by line and left out; good rows land whole.

    A row that changes someone's authority (roles, status, department, class...) bumps their
    token version, so their open sessions end. Counselor assignments are mirrored onto classes.
    """
    result = ImportResult()
    parsed: list[PersonRow] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rows):
        line = raw.get("line") if isinstance(raw.get("line"), int) else first_line + index
        userid = raw.get("userid") if isinstance(raw.get("userid"), str) else None
        try:
            row = PersonRow.model_validate({**raw, "line": line})
        except ValidationError as exc:
            result.errors.append(RowError(line, userid, _reasons(exc)))
            continue
        if row.userid in seen:
            result.errors.append(RowError(line, row.userid, f"duplicate userid (first on line {seen[row.userid]})"))
            continue
        seen[row.userid] = line
        parsed.append(row)

    departments = store.known_departments({r.department for r in parsed} | {r.dept_head_of for r in parsed if r.dept_head_of})
    classes = store.class_departments({r.class_id for r in parsed if r.class_id} | {c for r in parsed for c in r.counselor_of})
    valid: list[PersonRow] = []
    for row in parsed:
        reason = _reference_problem(row, departments, classes)
        if reason:
            result.errors.append(RowError(row.line or 0, row.userid, reason))
        else:
            valid.append(row)

    existing = store.get_people([r.userid for r in valid])
    to_save: list[PersonRecord] = []
    counselor_moves: dict[str, tuple[set[str], set[str]]] = {}
    for row in valid:
        before = existing.get(row.userid)
        after = _record_from_row(row, before, protector)
        if before is not None and after == before:
            result.unchanged += 1
            continue
        if before is not None and after.authority_differs(before):
            after = replace(after, token_version=before.token_version + 1)
        to_save.append(after)
        if before is None:
            result.created += 1
        else:
            result.updated += 1
        old = set(before.counselor_of) if before else set()
        for class_id in set(after.counselor_of) - old:
            counselor_moves.setdefault(class_id, (set(), set()))[0].add(row.userid)
        for class_id in old - set(after.counselor_of):
            counselor_moves.setdefault(class_id, (set(), set()))[1].add(row.userid)
    store.save_people(to_save)
    store.move_counselors(counselor_moves)
    result.errors.sort(key=lambda e: e.line)
    return result


def _record_from_row(row: PersonRow, before: PersonRecord | None, protector: FieldProtector) -> PersonRecord:
    sealed = masked = lookup = None
    if row.id_number:
        lookup = protector.lookup_key("id_number", row.id_number)
        if before is not None and before.id_lookup == lookup:
            # Same number: keep the stored ciphertext (a fresh nonce would look like a change).
            sealed, masked = before.id_number_sealed, before.id_number_masked
        else:
            sealed, masked = protector.seal("id_number", row.id_number), mask_id_number(row.id_number)
    return PersonRecord(
        userid=row.userid,
        name=row.name,
        person_type=row.type,
        department=row.department,
        class_id=row.class_id,
        roles=frozenset(row.roles),
        counselor_of=frozenset(row.counselor_of),
        dept_head_of=row.dept_head_of,
        status=row.status,
        card_no=row.card_no,
        id_number_sealed=sealed,
        id_number_masked=masked,
        id_lookup=lookup,
        token_version=before.token_version if before else 0,
    )


def _reference_problem(row: PersonRow, departments: set[str], classes: Mapping[str, str]) -> str | None:
    if row.department not in departments:
        return f"unknown department {row.department!r}"
    if row.class_id:
        if row.class_id not in classes:
            return f"unknown class {row.class_id!r}"
        if classes[row.class_id] != row.department:
            return f"class {row.class_id!r} belongs to department {classes[row.class_id]!r}"
    missing = sorted(c for c in row.counselor_of if c not in classes)
    if missing:
        return f"unknown class(es) in counselor_of: {', '.join(missing)}"
    if row.dept_head_of and row.dept_head_of not in departments:
        return f"unknown department {row.dept_head_of!r} in dept_head_of"
    return None


def _reasons(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and location == "_extra_cells":
            parts.append("more cells than columns")
        else:
            parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
