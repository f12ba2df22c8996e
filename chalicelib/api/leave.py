"""Who is away: student leave (请假) and staff leaving-Jinan registrations (离济备案).

Both are filed and decided in the hall (``POST /services/student-leave/applications``,
``.../leave-jinan/applications``, the approvers' to-do lists); this area adds:

* the rules of filing (dates, overlaps, trip numbers) and of cancelling (only before the start),
  registered as the hall's area rules, and hooks that keep each absence record and its away rows
  in step with the application;
* ``POST /leave/{id}/return`` (the student, 销假), ``POST /leave/{id}/acknowledge`` (the counselor),
  ``POST /travel/{id}/return`` (the member of staff), and ``GET`` of each record;
* ``GET /leave/overview`` and ``/travel/overview`` (who is away, in the caller's scope) and their
  exports;
* job ``remind_overdue_returns``: once per absence whose end passed without a return.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any, Literal

from chalice import Rate, Response
from chalice.app import CloudWatchEvent, Request
from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.exports import check_accept, spreadsheet
from chalicelib.api.health import CampusDate
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.schemas import PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.domain.absence import FORM_FIELDS, Absence, AbsenceDesk, AwayRow, Kind
from chalicelib.domain.access import Actor
from chalicelib.domain.directory import ShortId
from chalicelib.domain.hall import AreaRules, area_fields, area_rules, on_transition
from chalicelib.domain.health import Filter
from chalicelib.domain.workflow import Application, Transition
from chalicelib.errors import BadRequest, Conflict, Forbidden, Invalid, NotFound
from chalicelib.observability import logger

area = Area("leave")
ANYONE = authenticated()
APP_ID = r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{12}$"
MAX_PERIOD_DAYS = 92


# -- shapes -------------------------------------------------------------------------------------
class AbsenceView(BaseModel):
    id: str
    kind: Literal["leave", "travel"]
    userid: str
    name: str
    department: str
    class_id: str | None
    start: str
    end: str = Field(description="exclusive: a travel's return date counts whole")
    destination: dict[str, str] = Field(description="province and city")
    leaves_jinan: bool
    transport: str
    trip_number: str | None
    status: str = Field(description="the application's status")
    returned_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None = Field(description="the counselor who acknowledged the return")
    overdue: bool = Field(description="approved, the end has passed and no return is confirmed")
    reminded_at: str | None

    @classmethod
    def of(cls, absence: Absence, now: datetime) -> AbsenceView:
        return cls(id=absence.app_id, kind=absence.kind, userid=absence.userid, name=absence.name,
                   department=absence.department, class_id=absence.class_id, start=absence.start, end=absence.end,
                   destination={"province": absence.province, "city": absence.city},
                   leaves_jinan=absence.leaves_jinan, transport=absence.transport, trip_number=absence.trip_number,
                   status=absence.status, returned_at=absence.returned_at, acknowledged_at=absence.acknowledged_at,
                   acknowledged_by=absence.acknowledged_by, overdue=absence.overdue_at(now), reminded_at=absence.reminded_at)


class AwayPerson(BaseModel):
    id: str = Field(description="the application id")
    userid: str
    name: str
    department: str
    class_id: str | None
    start: str
    end: str
    destination: dict[str, str]
    leaves_jinan: bool
    transport: str
    overdue: bool

    @classmethod
    def of(cls, row: AwayRow) -> AwayPerson:
        a = row.absence
        return cls(id=a.app_id, userid=a.userid, name=a.name, department=a.department, class_id=a.class_id,
                   start=a.start, end=a.end, destination={"province": a.province, "city": a.city},
                   leaves_jinan=a.leaves_jinan, transport=a.transport, overdue=row.overdue)


class UnitCount(BaseModel):
    department: str
    class_id: str | None = None
    away: int
    leaving_jinan: int


class PlaceCount(BaseModel):
    province: str
    city: str | None = None
    away: int


class TransportCount(BaseModel):
    transport: str
    away: int


class OverviewBase(BaseModel):
    away: int = Field(description="people away")
    leaving_jinan: int
    overdue: int = Field(description="people whose end has passed without a return")
    by_unit: list[UnitCount]
    by_destination: list[PlaceCount]
    people: list[AwayPerson] = Field(description="by name, for callers who may see individuals (a page)")
    next: str | None


class LeaveOverview(OverviewBase):
    date: str


class TravelOverview(OverviewBase):
    from_: str = Field(alias="from")
    to: str
    by_transport: list[TransportCount]


class LeaveQuery(PageQuery):
    day: CampusDate | None = Field(None, alias="date", description="Campus day (default today)")
    department: ShortId | None = None
    class_: ShortId | None = Field(None, alias="class")

    def filter(self) -> Filter:
        return Filter(self.department, self.class_)


class TravelQuery(PageQuery):
    from_: CampusDate | None = Field(None, alias="from", description="First campus day (default today)")
    to: CampusDate | None = Field(None, description="Last campus day (default: from)")
    department: ShortId | None = None

    def period(self) -> tuple[date, date]:
        return _period(self.from_, self.to)


class LeaveExportQuery(RequestModel):
    day: CampusDate | None = Field(None, alias="date", description="Campus day (default today)")
    department: ShortId | None = None
    class_: ShortId | None = Field(None, alias="class")
    format: Literal["xlsx", "csv"] = "xlsx"


class TravelExportQuery(RequestModel):
    from_: CampusDate | None = Field(None, alias="from")
    to: CampusDate | None = None
    department: ShortId | None = None
    format: Literal["xlsx", "csv"] = "xlsx"


def _period(first: date | None, last: date | None) -> tuple[date, date]:
    """``from`` (default today) to ``to`` (default ``from``). Raises Invalid: reversed or too long."""
    first = first or deps.campus_today()
    last = last or first
    if last < first:
        raise Invalid("The period ends before it starts.", {"to": "must not be before from"})
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise Invalid("The period is too long.", {"to": f"at most {MAX_PERIOD_DAYS - 1} days after from"})
    return first, last


# -- records and returns ------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _check_id(app_id: str) -> None:
    if not re.match(APP_ID, app_id):
        raise NotFound("No such record.")


@area.route("/leave/{app_id}", "GET", summary="A leave with its return (the student, counselor, "
            "department head, student affairs)", policy=ANYONE, response=AbsenceView, errors=(NotFound,))
def get_leave(app_id: str, actor: Actor) -> AbsenceView:
    _check_id(app_id)
    return AbsenceView.of(deps.absence_desk().read(actor, "leave", app_id), _now())


@area.route("/leave/{app_id}/return", "POST", summary="Confirm my return from leave (销假)", policy=ANYONE,
            response=AbsenceView, errors=(NotFound, Conflict))
def return_from_leave(app_id: str, actor: Actor) -> AbsenceView:
    """Only an approved leave that has started; repeating it answers the same. The counselor is
    told to acknowledge."""
    _check_id(app_id)
    return AbsenceView.of(deps.absence_desk().confirm_return(actor, "leave", app_id), _now())


@area.route("/leave/{app_id}/acknowledge", "POST", summary="Acknowledge a student's return (their counselor)",
            policy=ANYONE, response=AbsenceView, errors=(NotFound, Conflict))
def acknowledge_return(app_id: str, actor: Actor) -> AbsenceView:
    _check_id(app_id)
    return AbsenceView.of(deps.absence_desk().acknowledge(actor, app_id), _now())


@area.route("/travel/{app_id}", "GET", summary="A leaving-Jinan registration with its return (the member of "
            "staff, department head, HR)", policy=ANYONE, response=AbsenceView, errors=(NotFound,))
def get_travel(app_id: str, actor: Actor) -> AbsenceView:
    _check_id(app_id)
    return AbsenceView.of(deps.absence_desk().read(actor, "travel", app_id), _now())


@area.route("/travel/{app_id}/return", "POST", summary="Confirm I am back in Jinan", policy=ANYONE,
            response=AbsenceView, errors=(NotFound, Conflict))
def return_from_travel(app_id: str, actor: Actor) -> AbsenceView:
    _check_id(app_id)
    return AbsenceView.of(deps.absence_desk().confirm_return(actor, "travel", app_id), _now())


# -- who is away --------------------------------------------------------------------------------
@area.route("/leave/overview", "GET", summary="Students away on a day in my scope: by class, destination, "
            "leaving Jinan", policy=ANYONE, query=LeaveQuery, response=LeaveOverview, errors=(Forbidden,))
def get_leave_overview(query: LeaveQuery, actor: Actor) -> LeaveOverview:
    """Student affairs: all students; a department head: the department's; a counselor: their
    classes; a leader: the figures, nobody by name. ``overdue`` students (end passed, no return)
    count as away every day until they return."""
    day = query.day or deps.campus_today()
    rows, named = deps.absence_desk().away(actor, "leave", day, day, query.filter())
    figures = _figures(rows, by_class=True, with_city=False)
    people, position = _page(rows if named else [], query)
    return LeaveOverview(date=day.isoformat(), **figures, people=people, next=cursor(position))


@area.route("/travel/overview", "GET", summary="Staff away from Jinan in a period in my scope: by destination "
            "and transport", policy=ANYONE, query=TravelQuery, response=TravelOverview, errors=(Forbidden,))
def get_travel_overview(query: TravelQuery, actor: Actor) -> TravelOverview:
    """HR: all staff; a department head: the department's; a leader: the figures. At most 92 days."""
    first, last = query.period()
    rows, named = deps.absence_desk().away(actor, "travel", first, last, Filter(query.department, None))
    figures = _figures(rows, by_class=False, with_city=True)
    transports = Counter(r.absence.transport for r in _people(rows))
    people, position = _page(rows if named else [], query)
    return TravelOverview.model_validate({
        "from": first.isoformat(), "to": last.isoformat(), **figures,
        "by_transport": [TransportCount(transport=t, away=n) for t, n in sorted(transports.items())],
        "people": people, "next": cursor(position)})


def _people(rows: Sequence[AwayRow]) -> list[AwayRow]:
    """One row per person (their first absence in the period): figures count people."""
    seen: dict[str, AwayRow] = {}
    for row in rows:
        seen.setdefault(row.absence.userid, row)
    return list(seen.values())


def _figures(rows: Sequence[AwayRow], *, by_class: bool, with_city: bool) -> dict[str, Any]:
    people = _people(rows)
    units: dict[tuple[str, str | None], list[int]] = {}
    places: Counter[tuple[str, str | None]] = Counter()
    for row in people:
        a = row.absence
        counts = units.setdefault((a.department, a.class_id if by_class else None), [0, 0])
        counts[0] += 1
        counts[1] += int(a.leaves_jinan)
        places[(a.province, a.city if with_city else None)] += 1
    return {
        "away": len(people), "leaving_jinan": sum(r.absence.leaves_jinan for r in people),
        "overdue": len({r.absence.userid for r in rows if r.overdue}),
        "by_unit": [UnitCount(department=d, class_id=c, away=n, leaving_jinan=j)
                    for (d, c), (n, j) in sorted(units.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))],
        "by_destination": [PlaceCount(province=p, city=c, away=n)
                           for (p, c), n in sorted(places.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))],
    }


def _page(rows: Sequence[AwayRow], query: PageQuery) -> tuple[list[AwayPerson], str | None]:
    """A page of the rows (sorted by their key) after the cursor's key."""
    after = query.position()
    remaining = [r for r in rows if after is None or r.absence.row_key > after]
    page = remaining[:query.limit]
    more = len(remaining) > query.limit
    return [AwayPerson.of(r) for r in page], (page[-1].absence.row_key if more and page else None)


# -- exports ------------------------------------------------------------------------------------
_HEADERS = ["申请编号", "工号/学号", "姓名", "部门", "班级", "开始", "结束", "省份", "城市", "离开济南", "交通方式",
            "车次/航班", "逾期未返"]
_FIGURE_HEADERS = ["部门", "班级", "人数", "离开济南人数"]


@area.route("/leave/export", "GET", summary="Students away on a day in my scope as a spreadsheet",
            policy=ANYONE, query=LeaveExportQuery, errors=(Forbidden, BadRequest))
def export_leave(query: LeaveExportQuery, actor: Actor, request: Request) -> Response:
    """One row per student away (a leader: one per department and class). ``format=xlsx`` (send
    ``Accept`` with its type) or ``csv``. Exports of names are audited."""
    check_accept(query.format, request.headers.get("accept"))
    day = query.day or deps.campus_today()
    desk = deps.absence_desk()
    rows, named = desk.away(actor, "leave", day, day, Filter(query.department, query.class_))
    return _export(desk, actor, "leave", rows, named, query.format, day.isoformat())


@area.route("/travel/export", "GET", summary="Staff away from Jinan in a period in my scope as a spreadsheet",
            policy=ANYONE, query=TravelExportQuery, errors=(Forbidden, BadRequest))
def export_travel(query: TravelExportQuery, actor: Actor, request: Request) -> Response:
    check_accept(query.format, request.headers.get("accept"))
    first, last = _period(query.from_, query.to)
    desk = deps.absence_desk()
    rows, named = desk.away(actor, "travel", first, last, Filter(query.department, None))
    return _export(desk, actor, "travel", rows, named, query.format, f"{first.isoformat()}_{last.isoformat()}")


def _export(desk: AbsenceDesk, actor: Actor, kind: Kind, rows: Sequence[AwayRow], named: bool, fmt: str,
            period: str) -> Response:
    tz = desk.tz
    if named:
        desk.audit_export(actor, kind, rows, period)
        table = [[r.absence.app_id, r.absence.userid, r.absence.name, r.absence.department, r.absence.class_id or "",
                  _local(r.absence.start, tz), _local(r.absence.end, tz), r.absence.province, r.absence.city,
                  "是" if r.absence.leaves_jinan else "否", r.absence.transport, r.absence.trip_number or "",
                  "是" if r.overdue else "否"] for r in rows]
        return spreadsheet(fmt, f"{kind}-{period}", period, _HEADERS, table)
    figures = _figures(rows, by_class=kind == "leave", with_city=False)["by_unit"]
    table = [[u.department, u.class_id or "", u.away, u.leaving_jinan] for u in figures]
    return spreadsheet(fmt, f"{kind}-{period}", period, _FIGURE_HEADERS, table)


def _local(iso: str, tz: Any) -> str:
    return datetime.fromisoformat(iso).astimezone(tz).strftime("%Y-%m-%d %H:%M")


# -- the hall's rules and hooks -----------------------------------------------------------------
@area_rules("leave")
def leave_rules() -> AreaRules:
    return deps.absence_desk().rules("leave")


@area_rules("travel")
def travel_rules() -> AreaRules:
    return deps.absence_desk().rules("travel")


for _kind in ("leave", "travel"):
    area_fields(_kind, FORM_FIELDS[_kind])  # type: ignore[index]


@on_transition("leave")
def follow_leave(app: Application, transition: Transition) -> None:
    """Keep the absence record and its away rows in step with the application."""
    deps.absence_desk().on_transition("leave", app, transition)


@on_transition("travel")
def follow_travel(app: Application, transition: Transition) -> None:
    deps.absence_desk().on_transition("travel", app, transition)


# -- the overdue job ----------------------------------------------------------------------------
@area.blueprint.schedule(Rate(30, unit=Rate.MINUTES))
def remind_overdue_returns(event: CloudWatchEvent) -> dict[str, Any]:
    """Remind, once, each person whose leave or travel ended without a confirmed return, and tell
    their counselor (students) or department head (staff). "Now" is the event's scheduled time."""
    now = _event_time(event)
    desk = dataclasses.replace(deps.absence_desk(), clock=lambda: now)
    report = desk.remind_overdue()
    logger.info("overdue returns", extra={"job": report})
    return report


def _event_time(event: CloudWatchEvent) -> datetime:
    try:
        return datetime.fromisoformat(str(event.time).replace("Z", "+00:00"))
    except ValueError:
        return _now()

