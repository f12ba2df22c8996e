"""Who is away: student leave (学生请假) and staff leaving-Jinan registrations (离济备案).

Both are services of the hall: ``student-leave`` (area ``leave``) goes through its approval chain
(the class counselor; the department head too over 3 days, student affairs too over 7: the
conditions of the catalogue definition, which the IT centre may change), ``leave-jinan`` (area
``travel``) is a filing, approved when it is filed (the department head and HR are copied in).
:class:`AbsenceDesk` adds what the engine does not know:

* **Rules at filing** (:meth:`AbsenceDesk.file`, run by the hall around its save, inside a lock
  per person): the end after the start, the start not in the past beyond a grace period, at most
  ``max_days`` long, no overlap with the person's other pending or approved absences (until their
  return, for one already confirmed); travel by train or plane needs a well-formed train or
  flight number. An approved absence can be cancelled only before it starts
  (:meth:`AbsenceDesk.may_cancel`).
* **The absence record** mirrors the application (one per application, keyed by person) and adds
  the return: the person confirms it (``return``; not before departure), the counselor
  acknowledges a student's (``acknowledge``).
* **Away days**: one row per campus day a person is away (:func:`away_days`): from the start day
  to the end day while approved and not yet back, to the day of the return once confirmed (an early
  return trims, a late one extends). A person whose end has passed without a return is *overdue*
  and away every day since: overviews add them from the ``awaiting`` index, so the rows never
  depend on today's date. The record keeps the span its rows may cover, widened before rows are
  written and narrowed after surplus rows are deleted, so a retried sync repairs any crash.
* **Overdue reminders** (:meth:`AbsenceDesk.remind_overdue`): once per absence, to the person
  and to their counselor (students) or department head (staff).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from chalicelib.domain.access import Action, Actor, Role, Subject, authorities, can
from chalicelib.domain.health import Filter, Grant, Unit, check_filter
from chalicelib.domain.notifications import Notification
from chalicelib.domain.places import MAINLAND_PROVINCES, TRANSPORTS, in_jinan, trip_number_problem
from chalicelib.domain.workflow import Applicant, Application, Transition
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound
from chalicelib.observability import logger

Kind = Literal["leave", "travel"]
LEAVE_SERVICE = "student-leave"
TRAVEL_SERVICE = "leave-jinan"
KIND_OF_SERVICE: dict[str, Kind] = {LEAVE_SERVICE: "leave", TRAVEL_SERVICE: "travel"}
# The fields each area reads from its forms (the hall refuses a definition without them).
FORM_FIELDS: dict[Kind, dict[str, str]] = {
    "leave": {"start": "datetime", "end": "datetime", "destination": "location", "leaves_jinan": "bool",
              "transport": "select"},
    "travel": {"departure_date": "date", "return_date": "date", "destination": "location", "transport": "select",
               "train_or_flight": "text"},
}
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)  # dates outside are typing mistakes
QUIET_HOURS = (22, 8)  # overdue reminders wait for the morning (campus time)
PERSON_TYPE_OF: dict[Kind, str] = {"leave": "student", "travel": "staff"}
ACTIVE = frozenset({"pending", "approved"})  # statuses that hold the person's calendar
MAX_LEAD = timedelta(days=366)  # how far ahead an absence may be filed
LOCK_SECONDS = 30
_TICK = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Absence:
    """One leave or travel registration of a person, with its return."""

    app_id: str
    kind: Kind
    userid: str
    name: str
    person_type: str
    department: str
    class_id: str | None
    start: str  # UTC ISO-8601
    end: str  # UTC ISO-8601, exclusive (a travel's return date counts whole: its end is the next midnight)
    province: str
    city: str
    leaves_jinan: bool
    transport: str
    status: str  # the application's: pending, approved, rejected, returned, withdrawn, cancelled
    app_version: int
    version: int = 0  # of this record (optimistic locking); 0: not stored yet
    trip_number: str | None = None
    returned_at: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    reminded_at: str | None = None
    rows: tuple[str, str] | None = None  # first and last day that may have away rows

    @property
    def unit(self) -> Unit:
        return Unit(self.department, self.class_id, self.person_type)

    @property
    def row_key(self) -> str:
        """The away rows' sort key: scope prefixes (type, department, class) first."""
        return f"{self.person_type}#{self.department}#{self.class_id or '-'}#{self.userid}#{self.app_id}"

    @property
    def awaiting_return(self) -> bool:
        return self.status == "approved" and self.returned_at is None

    def overdue_at(self, now: datetime) -> bool:
        return self.awaiting_return and datetime.fromisoformat(self.end) <= now

    def holds(self, start: datetime, end: datetime) -> bool:
        """Whether the absence occupies part of ``[start, end)`` (until the return, once back)."""
        if self.status not in ACTIVE:
            return False
        until = datetime.fromisoformat(self.returned_at or self.end)
        return datetime.fromisoformat(self.start) < end and start < until


def away_days(absence: Absence, tz: ZoneInfo) -> tuple[date, date] | None:
    """The first and last campus day the absence has rows for (None: no rows).

    Approved: the start day to the end day (the end is exclusive), or to the day of the return once
    confirmed. Overdue days after the end are not rows: they depend on today (see the module doc).
    """
    if absence.status != "approved":
        return None
    first = datetime.fromisoformat(absence.start).astimezone(tz).date()
    if absence.returned_at:
        last = datetime.fromisoformat(absence.returned_at).astimezone(tz).date()
    else:
        last = (datetime.fromisoformat(absence.end) - _TICK).astimezone(tz).date()
    return first, max(first, last)


def days_of(span: tuple[date, date] | None) -> list[date]:
    if span is None:
        return []
    return [span[0] + timedelta(days=n) for n in range((span[1] - span[0]).days + 1)]


def overdue_days(absence: Absence, tz: ZoneInfo, today: date) -> tuple[date, date] | None:
    """The days an overdue absence adds to the rows: after its end day, up to today."""
    if not absence.awaiting_return:
        return None
    after = (datetime.fromisoformat(absence.end) - _TICK).astimezone(tz).date() + timedelta(days=1)
    return (after, today) if after <= today else None


@dataclass(frozen=True)
class AwayRow:
    """A person away on a day (an away row, or an overdue absence counted for the day)."""

    day: str
    absence: Absence
    overdue: bool = False


# -- collaborators ------------------------------------------------------------------------------
class AbsenceStore(Protocol):
    def get(self, userid: str, app_id: str) -> Absence | None: ...
    def of_person(self, userid: str) -> list[Absence]: ...
    def save(self, absence: Absence, expected_version: int) -> bool: ...
    def put_rows(self, absence: Absence, days: Sequence[date], retention_days: int) -> None: ...
    def delete_rows(self, absence: Absence, days: Sequence[date]) -> None: ...
    def rows_on(self, day: date, prefix: str) -> Iterator[Absence]: ...
    def awaiting(self, kind: Kind, ended_by: str) -> Iterator[Absence]: ...


class Locks(Protocol):
    def claim(self, key: str, ttl_seconds: float, value: str = "") -> bool: ...
    def release(self, key: str) -> None: ...


class People(Protocol):
    def get_person(self, userid: str, *, consistent: bool = False) -> Any: ...
    def holders(self, authority: str) -> list[str]: ...
    def class_departments(self, class_ids: Iterable[str]) -> dict[str, str]: ...


class Applications(Protocol):
    def get(self, app_id: str) -> Application | None: ...


class AuditLog(Protocol):
    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None: ...


# -- scope ---------------------------------------------------------------------------------------
def overview_grants(actor: Actor, kind: Kind) -> tuple[tuple[Grant, ...], bool]:
    """The slices of ``kind``'s people ``actor`` sees, and whether they see individuals.

    Leave (students): student affairs all, a department head their department, a counselor their
    classes. Travel (staff): HR all, a department head their department. A leader sees figures of
    everyone and no one by name.
    """
    person_type = PERSON_TYPE_OF[kind]
    grants: list[Grant] = []
    if actor.has(Role.STUDENT_AFFAIRS if kind == "leave" else Role.HR):
        grants.append(Grant(types=frozenset({person_type})))
    if actor.has(Role.DEPT_HEAD) and actor.dept_head_of:
        grants.append(Grant(types=frozenset({person_type}), department=actor.dept_head_of))
    if kind == "leave" and actor.has(Role.COUNSELOR) and actor.counselor_of:
        grants.append(Grant(types=frozenset({person_type}), classes=frozenset(actor.counselor_of)))
    if grants:
        return tuple(grants), True
    if actor.has(Role.LEADER):
        return (Grant(types=frozenset({person_type})),), False
    return (), False


def _prefixes(person_type: str, grants: Sequence[Grant], wanted: Filter,
              class_departments: Mapping[str, str]) -> list[str]:
    """Sort-key prefixes of the away rows that cover ``grants`` narrowed by ``wanted``."""
    found: list[str] = []
    for grant in grants:
        department = wanted.department or grant.department
        if grant.department and department != grant.department:
            continue
        classes = set(grant.classes) if grant.classes else set()
        if wanted.class_id:
            if classes and wanted.class_id not in classes:
                continue
            classes = {wanted.class_id}
        if classes:
            found += [f"{person_type}#{class_departments[c]}#{c}#" for c in sorted(classes)
                      if c in class_departments and (department is None or class_departments[c] == department)]
        elif department:
            found.append(f"{person_type}#{department}#")
        else:
            found.append(f"{person_type}#")
    # A prefix that extends another is covered by it.
    return sorted(p for p in set(found) if not any(p != q and p.startswith(q) for q in found))


# -- the desk ------------------------------------------------------------------------------------
@dataclass
class AbsenceDesk:
    store: AbsenceStore
    applications: Applications
    people: People
    locks: Locks
    notify: Callable[[Notification], int]
    audit: AuditLog
    clock: Callable[[], datetime]
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    max_days: int = 120
    start_grace: timedelta = timedelta(hours=24)
    retention_days: int = 400

    # -- filing (the hall's area rules) -------------------------------------------------------
    def rules(self, kind: Kind) -> KindRules:
        """The hall's area rules for ``kind``'s services."""
        return KindRules(self, kind)

    def file(self, kind: Kind, applicant: Applicant, data: Mapping[str, Any], replacing: str | None,
             save: Callable[[], Application]) -> Application:
        """Check the form against the person's calendar, then ``save`` it and record the absence,
        all under a lock per person (two filings at once cannot both pass the overlap check).

        Raises:
            Invalid: dates out of order, in the past, too long; an overlap; a place or trip not
                acceptable.
            Conflict: another filing of the same person is in progress.
        """
        lock = f"absence-file:{applicant.userid}"
        if not self.locks.claim(lock, LOCK_SECONDS):
            raise Conflict("Another filing of yours is being processed; try again in a moment.")
        try:
            start, end = self.period(kind, data)
            self._check(kind, applicant, data, start, end, replacing)
            app = save()
            try:
                self.record(app, kind)
            except Exception:  # stored: the transition's hook (retried from its queue) records it
                logger.exception("absence record deferred to the hook", extra={"app_id": app.app_id})
            return app
        finally:
            self.locks.release(lock)

    def may_cancel(self, kind: Kind, app: Application) -> None:
        """Raises Conflict once the absence has started: the person confirms the return instead."""
        start, _ = self.period(kind, app.data)
        if self.clock() >= start:
            raise Conflict("It has started already; confirm your return instead of cancelling.")

    def period(self, kind: Kind, data: Mapping[str, Any]) -> tuple[datetime, datetime]:
        """``[start, end)`` in UTC: a leave's times; a travel's departure date to the end of its return date.

        Raises:
            Invalid: a date missing, malformed or outside 2000-2099 (names the field).
        """
        first, last = ("start", "end") if kind == "leave" else ("departure_date", "return_date")
        moments: list[datetime] = []
        for name in (first, last):
            try:
                if kind == "leave":
                    moment = datetime.fromisoformat(str(data[name]))
                    if moment.tzinfo is None:
                        moment = moment.replace(tzinfo=self.tz)
                    day = moment.astimezone(self.tz).date()
                else:
                    day = date.fromisoformat(str(data[name]))
                    moment = datetime.combine(day, time(0), self.tz)
                if not EARLIEST <= day <= LATEST:
                    raise ValueError(day)
                if name == last and kind == "travel":
                    moment = datetime.combine(day + timedelta(days=1), time(0), self.tz)
                moments.append(moment.astimezone(timezone.utc))
            except (KeyError, ValueError, OverflowError, TypeError):
                raise Invalid("The dates are not acceptable.",
                              {f"data.{name}": f"a date between {EARLIEST.year} and {LATEST.year}"}) from None
        return moments[0], moments[1]

    def _check(self, kind: Kind, applicant: Applicant, data: Mapping[str, Any], start: datetime, end: datetime,
               replacing: str | None) -> None:
        first, last = ("start", "end") if kind == "leave" else ("departure_date", "return_date")
        problems: dict[str, str] = {}
        now = self.clock()
        if end <= start:
            problems[f"data.{last}"] = f"must be after {first}"
        elif end - start > timedelta(days=self.max_days):
            problems[f"data.{last}"] = f"at most {self.max_days} days after {first}"
        if kind == "leave" and start < now - self.start_grace:
            problems[f"data.{first}"] = "is in the past"
        if kind == "travel" and start.astimezone(self.tz).date() < (now - self.start_grace).astimezone(self.tz).date():
            problems[f"data.{first}"] = "is in the past"  # (registering a trip the day after leaving is allowed)
        if start > now + MAX_LEAD:
            problems[f"data.{first}"] = "at most a year ahead"
        destination = data.get("destination") if isinstance(data.get("destination"), Mapping) else {}
        if destination.get("province") not in MAINLAND_PROVINCES:
            problems["data.destination"] = "province must be one of the 31 mainland provinces"
        elif kind == "travel" and in_jinan(destination):
            problems["data.destination"] = "is Jinan: a registration is for leaving Jinan"
        elif kind == "leave" and bool(data.get("leaves_jinan")) == in_jinan(destination):
            problems["data.leaves_jinan"] = ("the destination is Jinan" if in_jinan(destination)
                                             else "the destination is outside Jinan")
        if data.get("transport") not in TRANSPORTS:
            problems["data.transport"] = f"one of {', '.join(TRANSPORTS)}"
        elif kind == "travel":
            reason = trip_number_problem(str(data.get("transport")), data.get("train_or_flight"))
            if reason:
                problems["data.train_or_flight"] = reason
        if problems:
            raise Invalid("The dates or the trip are not acceptable.", problems)
        clash = next((a for a in self.store.of_person(applicant.userid)
                      if a.app_id != replacing and a.holds(start, end)), None)
        if clash is not None:
            what = "leave" if clash.kind == "leave" else "registration"
            raise Invalid(f"It overlaps your {clash.status} {what} {clash.app_id}.",
                          {f"data.{first}": f"overlaps {clash.app_id} ({_local(clash.start, self.tz)} - "
                                            f"{_local(clash.end, self.tz)})"})

    # -- the hall's hook ------------------------------------------------------------------------
    def on_transition(self, kind: Kind, app: Application, transition: Transition) -> Absence | None:
        return self.record(app, kind)

    def record(self, app: Application, kind: Kind) -> Absence:
        """Mirror the application into its absence record and bring the away rows in line.
        Idempotent, and safe to run late or twice (an older application version changes nothing)."""
        for _ in range(8):
            current = self.store.get(app.applicant.userid, app.app_id)
            if current is not None and current.app_version >= app.version:
                return self._sync_rows(current)
            start, end = self.period(kind, app.data)
            mirrored = self._mirror(kind, app, start, end, current)
            if self.store.save(mirrored, current.version if current else 0):
                return self._sync_rows(replace(mirrored, version=mirrored.version + 1))
        raise Conflict("The absence record keeps changing; try again.")

    def _mirror(self, kind: Kind, app: Application, start: datetime, end: datetime,
                current: Absence | None) -> Absence:
        data = app.data
        destination = data.get("destination") or {}
        person = self.people.get_person(app.applicant.userid)
        base = current or Absence(
            app_id=app.app_id, kind=kind, userid=app.applicant.userid, name=getattr(person, "name", "") or "",
            person_type=app.applicant.person_type, department=app.applicant.department,
            class_id=app.applicant.class_id, start="", end="", province="", city="", leaves_jinan=False,
            transport="", status=app.status, app_version=0)
        leaves = bool(data.get("leaves_jinan")) if kind == "leave" else not in_jinan(destination)
        return replace(base, start=_iso(start), end=_iso(end), province=str(destination.get("province", "")),
                       city=str(destination.get("city", "")), leaves_jinan=leaves,
                       transport=str(data.get("transport", "")),
                       trip_number=(str(data["train_or_flight"]).upper() if data.get("train_or_flight") else None),
                       status=app.status, app_version=app.version)

    def _sync_rows(self, absence: Absence) -> Absence:
        """Write the rows of :func:`away_days`, delete the rest of the recorded span, record the span.

        Rows are written only by a writer holding the record's current version: it first saves
        the record (span widened to cover what it writes), writes, then saves the narrowed span
        under the version it saved. If someone changed the record meanwhile its rows may be
        stale: it deletes those the current record does not want and starts again from it. So a
        late or repeated sync (a hook rerun, an old copy) never leaves rows the record disowns.
        """
        for _ in range(8):
            wanted = away_days(absence, self.tz)
            held = (date.fromisoformat(absence.rows[0]), date.fromisoformat(absence.rows[1])) if absence.rows else None
            hull = _hull(wanted, held)
            claimed = replace(absence, rows=_span(hull))
            if not self.store.save(claimed, absence.version):
                absence = self._reread(absence)
                continue
            absence = replace(claimed, version=absence.version + 1)
            written = days_of(wanted)
            if written:
                self.store.put_rows(absence, written, self.retention_days)
            surplus = [d for d in days_of(hull) if d not in set(written)]
            if surplus:
                self.store.delete_rows(absence, surplus)
            narrowed = replace(absence, rows=_span(wanted))
            if self.store.save(narrowed, absence.version):
                return replace(narrowed, version=absence.version + 1)
            absence = self._reread(absence)
            stale = set(written) - set(days_of(away_days(absence, self.tz)))
            if stale:
                self.store.delete_rows(absence, sorted(stale))
        raise Conflict("The absence record keeps changing; try again.")

    def _reread(self, absence: Absence) -> Absence:
        current = self.store.get(absence.userid, absence.app_id)
        if current is None:
            raise NotFound("No such absence.")
        return current

    def _update(self, absence: Absence, change: Callable[[Absence], Absence | None]) -> Absence:
        """Apply ``change`` on the stored record under its version (re-read on a race), then sync rows.
        ``change`` answers None when there is nothing to do."""
        for _ in range(8):
            changed = change(absence)
            if changed is None:
                return absence
            if self.store.save(changed, absence.version):
                return self._sync_rows(replace(changed, version=absence.version + 1))
            absence = self._reread(absence)
        raise Conflict("The absence record keeps changing; try again.")

    # -- the return -----------------------------------------------------------------------------
    def read(self, actor: Actor, kind: Kind, app_id: str) -> Absence:
        """An absence its person or someone with their records in scope may read.

        Raises: NotFound (no such absence, or not visible: indistinguishable).
        """
        absence = self._find(kind, app_id)
        if absence is None or not can(actor, Action.READ_RECORDS, _subject(absence)):
            raise NotFound("No such record.")
        return absence

    def confirm_return(self, actor: Actor, kind: Kind, app_id: str) -> Absence:
        """The person is back (销假). Repeating it answers the same.

        Raises:
            NotFound: not the person's own absence.
            Conflict: not approved, or it has not started yet.
        """
        absence = self._find(kind, app_id)
        if absence is None or absence.userid != actor.userid:
            raise NotFound("No such record.")
        now = self.clock()

        def back(current: Absence) -> Absence | None:
            if current.returned_at:
                return None
            if current.status != "approved":
                raise Conflict(f"It is {current.status}; only an approved one is returned from.")
            if now < datetime.fromisoformat(current.start):
                raise Conflict("It has not started yet: cancel it instead of returning.")
            return replace(current, returned_at=_iso(now))

        was_back = absence.returned_at is not None
        absence = self._update(absence, back)
        if not was_back and kind == "leave" and absence.class_id:
            counselors = [u for u in self.people.holders(f"counselor:{absence.class_id}") if u != absence.userid]
            if counselors:
                self.notify(Notification(
                    key=f"absence:{absence.app_id}:returned", recipients=tuple(counselors), title="学生销假",
                    body=f"{absence.name}（{absence.class_id}）已确认返校销假，请及时确认。"))
        return absence

    def acknowledge(self, actor: Actor, app_id: str) -> Absence:
        """The student's counselor acknowledges the return. Repeating it answers the same.

        Raises:
            NotFound: not a leave of a class ``actor`` counsels (or none at all).
            Conflict: the student has not confirmed the return yet.
        """
        absence = self._find("leave", app_id)
        if absence is None or f"counselor:{absence.class_id}" not in authorities(actor) \
                or actor.userid == absence.userid:
            raise NotFound("No such leave among your classes.")
        now = self.clock()

        def acknowledged(current: Absence) -> Absence | None:
            if current.acknowledged_at:
                return None
            if not current.returned_at:
                raise Conflict("The student has not confirmed the return yet.")
            return replace(current, acknowledged_at=_iso(now), acknowledged_by=actor.userid)

        return self._update(absence, acknowledged)

    def _find(self, kind: Kind, app_id: str) -> Absence | None:
        app = self.applications.get(app_id)
        if app is None:
            return None
        absence = self.store.get(app.applicant.userid, app_id)
        if absence is None and KIND_OF_SERVICE.get(app.service_id) != kind:
            return None
        if absence is not None and absence.kind != kind:
            return None
        if absence is None or absence.app_version < app.version:
            absence = self.record(app, kind)  # the hook has not run yet: mirror it now
        return absence

    # -- overdue ----------------------------------------------------------------------------------
    def remind_overdue(self) -> dict[str, int]:
        """Remind, once, everyone whose absence ended without a return, and tell their counselor
        (students) or department head (staff). Messages are keyed per absence, so a crash between
        sending and marking sends nothing twice. Between 22:00 and 08:00 (campus time) nothing is
        sent: the first run of the morning sends what came due in the night. One absence that
        fails is logged and left for the next run; the others go on."""
        now = self.clock()
        counts = {"reminded": 0, "already": 0, "held": 0, "failed": 0}
        hour = now.astimezone(self.tz).hour
        quiet = hour >= QUIET_HOURS[0] or hour < QUIET_HOURS[1]
        for kind in ("leave", "travel"):
            for seen in self.store.awaiting(kind, _iso(now)):  # type: ignore[arg-type]
                if seen.reminded_at or not seen.overdue_at(now):
                    counts["already"] += 1
                    continue
                if quiet:
                    counts["held"] += 1
                    continue
                try:
                    counts[self._remind(seen, now)] += 1
                except Exception:  # noqa: BLE001 - one record must not stop the others
                    logger.exception("overdue reminder failed", extra={"app_id": seen.app_id})
                    counts["failed"] += 1
        return counts

    def _remind(self, seen: Absence, now: datetime) -> str:
        # The index is eventually consistent: read the record itself before telling anyone.
        current = self.store.get(seen.userid, seen.app_id)
        if current is None or current.reminded_at or not current.overdue_at(now):
            return "already"
        self._send_overdue(current)

        def reminded(record: Absence) -> Absence | None:
            return None if record.reminded_at else replace(record, reminded_at=_iso(now))

        self._update(current, reminded)
        return "reminded"

    def _send_overdue(self, absence: Absence) -> None:
        due = _local(absence.end, self.tz)
        if absence.kind == "leave":
            self.notify(Notification(key=f"absence:{absence.app_id}:overdue:person", recipients=(absence.userid,),
                                     title="请假到期未销假",
                                     body=f"您的请假已于{due}到期，尚未销假。返校后请及时确认销假；如需延长请重新请假。"))
            boss = f"counselor:{absence.class_id}" if absence.class_id else None
            body = f"{absence.name}（{absence.class_id}）的请假已于{due}到期，尚未销假，请关注。"
        else:
            self.notify(Notification(key=f"absence:{absence.app_id}:overdue:person", recipients=(absence.userid,),
                                     title="离济备案到期未返济",
                                     body=f"您登记的离济行程已于{due}到期，尚未确认返济。返济后请及时确认。"))
            boss = f"dept_head:{absence.department}"
            body = f"{absence.name}登记的离济行程已于{due}到期，尚未确认返济，请关注。"
        holders = [u for u in self.people.holders(boss) if u != absence.userid] if boss else []
        if holders:
            self.notify(Notification(key=f"absence:{absence.app_id}:overdue:supervisor", recipients=tuple(holders),
                                     title="到期未返回提醒", body=body))

    # -- who is away ----------------------------------------------------------------------------
    def away(self, actor: Actor, kind: Kind, first: date, last: date, wanted: Filter) -> tuple[list[AwayRow], bool]:
        """Everyone of ``kind`` in ``actor``'s scope away on some day of ``[first, last]``, one row
        per absence (the first day it is away in the period), and whether ``actor`` may see them by
        name (a leader gets figures only).

        Raises:
            Forbidden: no view of ``kind``, or a filter outside the caller's scope.
        """
        grants, named = overview_grants(actor, kind)
        if not grants:
            raise Forbidden("Your roles give no view of who is away.")
        classes = [wanted.class_id] if wanted.class_id else []
        for grant in grants:
            classes += sorted(grant.classes)
        class_departments = self.people.class_departments(classes) if classes else {}
        check_filter(grants, wanted, class_departments.get(wanted.class_id) if wanted.class_id else None)
        person_type = PERSON_TYPE_OF[kind]
        prefixes = _prefixes(person_type, grants, wanted, class_departments)
        found: dict[str, AwayRow] = {}
        day = first
        while day <= last:
            for prefix in prefixes:
                for absence in self.store.rows_on(day, prefix):
                    found.setdefault(absence.row_key, AwayRow(day.isoformat(), absence))
            day += timedelta(days=1)
        today = self.clock().astimezone(self.tz).date()
        if first <= today:
            ended_by = datetime.combine(min(last, today), time(0), self.tz)
            for absence in self.store.awaiting(kind, _iso(ended_by)):
                span = overdue_days(absence, self.tz, today)
                covered = (span is not None and span[0] <= last and first <= span[1]
                           and any(absence.row_key.startswith(p) for p in prefixes)
                           and (wanted.keeps(absence.unit)))
                if covered and span is not None:
                    found[absence.row_key] = AwayRow(max(first, span[0]).isoformat(), absence, overdue=True)
        return sorted(found.values(), key=lambda r: r.absence.row_key), named

    def now_away(self, userid: str) -> Absence | None:
        """The person's absence that holds today (or is overdue), for the health report's prefill."""
        now = self.clock()
        today = now.astimezone(self.tz).date()
        for absence in sorted(self.store.of_person(userid), key=lambda a: a.start, reverse=True):
            span = away_days(absence, self.tz)
            late = overdue_days(absence, self.tz, today)
            started = datetime.fromisoformat(absence.start) <= now
            if (span and started and today <= span[1] and not absence.returned_at) or late:
                return absence
        return None

    def audit_export(self, actor: Actor, kind: Kind, rows: Sequence[AwayRow], period: str) -> None:
        """An export of named people is recorded (who took whose whereabouts)."""
        self.audit.record(subject=f"absences#{kind}", actor=actor.userid, action=f"{kind}.export",
                          detail={"period": period, "people": len({r.absence.userid for r in rows})})


def whereabouts_of(absence: Absence) -> dict[str, Any]:
    """The daily report's location answers for someone away: the registered destination."""
    place = {"province": absence.province, "city": absence.city}
    if in_jinan(place) or (absence.kind == "leave" and not absence.leaves_jinan):
        return {"whereabouts": "jinan"}
    if max(len(absence.province), len(absence.city)) > PLACE_TEXT:
        return {"whereabouts": "other_city"}  # too long for the report's fields: the person types it
    return {"whereabouts": "other_city", "current_city": place}


PLACE_TEXT = 20  # the daily report's province and city fields


def _subject(absence: Absence) -> Subject:
    return Subject(absence.userid, absence.person_type, absence.department, absence.class_id)


def _hull(a: tuple[date, date] | None, b: tuple[date, date] | None) -> tuple[date, date] | None:
    spans = [s for s in (a, b) if s is not None]
    if not spans:
        return None
    return min(s[0] for s in spans), max(s[1] for s in spans)


def _span(days: tuple[date, date] | None) -> tuple[str, str] | None:
    return (days[0].isoformat(), days[1].isoformat()) if days else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _local(iso: str, tz: ZoneInfo) -> str:
    return datetime.fromisoformat(iso).astimezone(tz).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class KindRules:
    """The hall's area rules for one kind of absence (the area names the kind, not the form)."""

    desk: AbsenceDesk
    kind: Kind

    def file(self, applicant: Applicant, data: Mapping[str, Any], replacing: str | None,
             save: Callable[[], Application]) -> Application:
        return self.desk.file(self.kind, applicant, data, replacing, save)

    def may_cancel(self, app: Application) -> None:
        self.desk.may_cancel(self.kind, app)
