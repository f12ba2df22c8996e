"""Directory administration (IT centre): one person's admin view and changes, bulk import."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from chalice.app import Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.schemas import PageQuery, Profile, cursor
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Action, Actor, Role
from chalicelib.domain.directory import MAX_IMPORT_ROWS, ShortId, import_people, rows_from_csv
from chalicelib.domain.people import change_person, read_person
from chalicelib.errors import BadRequest, Conflict, Forbidden, Invalid, NotFound

area = Area("admin")
IT_ADMIN = authenticated(Role.IT_ADMIN)


class AdminPerson(Profile):
    token_version: int


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # the default (absent) is not a value a client may send


class PersonChange(RequestModel):
    """Only these fields can be changed here; identity fields come from the import or WeCom.
    ``class_id`` and ``dept_head_of`` may be set to null to remove them."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # Absent means unchanged; null is refused (SkipJsonSchema keeps null out of the documented schema).
    roles: list[str] | SkipJsonSchema[None] = Field(None, max_length=20, json_schema_extra=_no_default)
    status: Literal["active", "left"] | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    class_id: ShortId | None = None
    counselor_of: list[ShortId] | SkipJsonSchema[None] = Field(None, max_length=50, json_schema_extra=_no_default)
    dept_head_of: ShortId | None = None

    @field_validator("roles", "status", "counselor_of", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Absent means "unchanged"; null would mean "none", which these fields cannot be.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class ImportRows(RequestModel):
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_IMPORT_ROWS,
                                       description="People, one object per row (see PersonRow)")
    first_line: int = Field(1, ge=1, description="Line number of the first row, for error reports")


class ImportQuery(RequestModel):
    first_line: int = Field(1, ge=1, description="CSV: file line of the header row")


class RowProblem(BaseModel):
    line: int
    userid: str | None
    reason: str


class ImportReport(BaseModel):
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[RowProblem]


@area.route("/admin/people/{userid}", "GET", summary="A person, as administrators see them", policy=IT_ADMIN,
            response=AdminPerson, errors=(NotFound,))
def get_person_as_admin(userid: str, actor: Actor) -> AdminPerson:
    person = read_person(actor, userid, deps.directory(), Action.ADMIN_PROFILE)
    return AdminPerson(**Profile.of(person).model_dump(), token_version=person.token_version)


@area.route("/admin/people/{userid}", "PATCH", summary="Change a person's roles, status or class",
            policy=IT_ADMIN, body=PersonChange, response=AdminPerson, errors=(NotFound, Conflict, Forbidden))
def change_person_as_admin(userid: str, body: PersonChange, actor: Actor) -> AdminPerson:
    """Ends the person's open sessions and writes an audit record of who changed what."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise Invalid("Name at least one field to change.", {"body": "no field given"})
    person = change_person(actor, userid, changes, deps.directory())
    return AdminPerson(**Profile.of(person).model_dump(), token_version=person.token_version)


@area.route("/admin/directory/import", "POST", summary="Upsert up to 1000 people (JSON rows or CSV)",
            policy=IT_ADMIN, body=ImportRows, query=ImportQuery, response=ImportReport,
            content_types=("application/json", "text/csv"))
def import_directory(body: ImportRows | None, query: ImportQuery, request: Request, actor: Actor) -> ImportReport:
    """Good rows land whole; bad rows are reported by line and change nothing. CSV columns:
    userid,name,type,department,class_id,roles,counselor_of,dept_head_of,status,card_no,id_number
    (lists separated by ';')."""
    if body is None:
        try:
            rows = rows_from_csv((request.raw_body or b"").decode("utf-8-sig"), query.first_line)
        except UnicodeDecodeError:
            raise BadRequest("The CSV is not valid UTF-8 text.") from None
        except ValueError as exc:
            raise BadRequest(f"The CSV cannot be read: {exc}.") from None
        first_line = query.first_line + 1
    else:
        rows, first_line = body.rows, body.first_line
    if not rows:
        raise Invalid("No rows to import.", {"rows": "empty"})
    if len(rows) > MAX_IMPORT_ROWS:
        raise Invalid(f"At most {MAX_IMPORT_ROWS} rows per request.", {"rows": f"{len(rows)} rows"})
    result = import_people(rows, deps.directory(), deps.protector(), deps.audit(), actor, first_line=first_line)
    return ImportReport(
        created=result.created, updated=result.updated, unchanged=result.unchanged, rejected=len(result.errors),
        errors=[RowProblem(line=e.line, userid=e.userid, reason=e.reason) for e in result.errors],
    )


# -- the audit trail ----------------------------------------------------------------------------
class AuditQuery(PageQuery):
    """Filter by one of: ``subject`` (``person#<userid>``, ``health-export#<day>``...), ``actor``
    (a userid), else the campus ``date`` (default today)."""

    subject: str | None = Field(None, min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.@#:-]+$")
    actor: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    day: date | None = Field(None, alias="date")


class AuditItem(BaseModel):
    at: str
    actor: str
    subject: str
    action: str
    detail: dict[str, Any] = Field(description="What was read or changed: field names and counts, never values")


class AuditPage(BaseModel):
    items: list[AuditItem]
    next: str | None


@area.route("/admin/audit", "GET", summary="The audit trail: who read or changed whose data, newest first",
            policy=IT_ADMIN, query=AuditQuery, response=AuditPage)
def list_audit_events(query: AuditQuery) -> AuditPage:
    """Every read of another person's health data, every change to a person, consents given and
    withdrawn, exports."""
    events, position = deps.audit().page(subject=query.subject, actor=query.actor,
                                         day=(query.day or deps.campus_today()).isoformat(), limit=query.limit,
                                         after=query.position())
    return AuditPage(items=[AuditItem(at=e.at, actor=e.actor, subject=e.subject, action=e.action, detail=e.detail)
                            for e in events], next=cursor(position))
