"""Who has reported, who has not, and the reminders and summaries that follow from it.

Every figure comes from the day counters (one partition per day, a row per unit), never from a
query over the reports: see :mod:`chalicelib.db.health`. Who is expected comes from the directory
(active people of the expected types); the reminder job writes each day's expected counts into the
counters when the day opens (00:00 campus time) and again at each reminder, so that day's dashboards
read them back. For a day without them (the job has not run) a dashboard takes the expected counts
live from the directory for the caller's scope, and writes nothing: a GET never does.

Scopes (:func:`chalicelib.domain.health.scope_of`): a counselor sees their classes, a department
head their department, HR the staff, student affairs the students, the hospital everyone; a
leader sees figures of everyone and no individual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from chalicelib.domain.health import (
    Breakdown,
    CampusClock,
    DayFigures,
    Filter,
    Grant,
    HealthScope,
    Unit,
    check_filter,
    due_slots,
    reason_labels,
    scope_of,
    sum_units,
)
from chalicelib.domain.health_cases import audit_reads
from chalicelib.domain.health_desk import Report, check_period
from chalicelib.domain.notifications import Notification
from chalicelib.errors import Forbidden

DAY_OPENS = time(0, 0)  # the first run of a day records its expected counts, before any dashboard
SLOT_WINDOW = timedelta(minutes=50)  # a slot is still sent by a run this long after its time
SLOT_LEASE_SECONDS = 15 * 60  # a run that died frees its slot for the next run after this
DIGEST_NAMES = 120  # names listed in one counselor message (WeCom's 2,000 characters)


@dataclass(frozen=True)
class Person:
    userid: str
    name: str
    person_type: str
    department: str
    class_id: str | None

    @property
    def unit(self) -> Unit:
        return Unit.of(self)


@dataclass
class JobReport:
    """What a scheduled run did (logged; counts only)."""

    slots: list[str] = field(default_factory=list)
    reminded: int = 0
    digests: int = 0
    summaries: int = 0
    alerts_requeued: int = 0
    recounted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"slots": self.slots, "reminded": self.reminded, "digests": self.digests,
                "summaries": self.summaries, "alerts_requeued": self.alerts_requeued, "recounted": self.recounted}


class HealthStats:
    """Dashboards, missing lists, exports and the reminder and summary jobs.

    Collaborators: ``store`` (counters and reports), ``directory`` (rosters, classes, holders),
    ``open_report`` (a stored report opened), ``audit``, ``notify`` (and ``notify_all``, the same for many at once), ``claims`` (the kv store:
    one run per slot), ``queue_alert``, ``clock``.
    """

    def __init__(self, *, store: Any, directory: Any, open_report: Callable[[Any], Report], audit: Any,
                 notify: Callable[[Notification], int], notify_all: Callable[[Sequence[Notification]], int],
                 claims: Any, queue_alert: Callable[[str, str, int], None],
                 campus: CampusClock, expected_types: Sequence[str], reminder_times: Sequence[time],
                 digest_times: Sequence[time], summary_times: Sequence[time], page_url: str | None,
                 retention_days: int, min_cell: int, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.directory = directory
        self.open_report = open_report
        self.audit = audit
        self.notify = notify
        self.notify_all = notify_all
        self.claims = claims
        self.queue_alert = queue_alert
        self.campus = campus
        self.expected_types = tuple(expected_types)
        self.reminder_times = tuple(reminder_times)
        self.digest_times = tuple(digest_times)
        self.summary_times = tuple(summary_times)
        self.page_url = page_url
        self.retention_days = retention_days
        self.min_cell = min_cell
        self.clock = clock

    def _expires(self, day: date) -> datetime:
        """When a day's counters go, with its reports."""
        return datetime.combine(day, time(0), tzinfo=timezone.utc) + timedelta(days=self.retention_days + 1)

    # -- who is expected ------------------------------------------------------------------------
    def roster(self) -> list[Person]:
        """Everyone expected to report: active people of the expected types (directory index)."""
        return [_person(p) for t in self.expected_types for p in self.directory.roster(t) if p.status == "active"]

    def people_in(self, grants: Sequence[Grant], wanted: Filter) -> list[Person]:
        """The expected people the grants cover, narrowed by ``wanted``, in userid order, read as
        narrowly as the grants allow (a class, a department, or the whole roster)."""
        if wanted.class_id is not None:
            source: Iterable[Any] = self.directory.students_of_class(wanted.class_id)
        elif grants and all(g.classes for g in grants):
            source = [p for g in grants for c in sorted(g.classes) for p in self.directory.students_of_class(c)]
        elif wanted.department is not None:
            source = self.directory.members_of_department(wanted.department)
        elif grants and all(g.department for g in grants):
            source = [p for d in sorted({g.department for g in grants}) for p in self.directory.members_of_department(d)]
        else:
            return sorted((p for p in self.roster() if any(g.covers(p.unit) for g in grants) and wanted.keeps(p.unit)),
                          key=lambda p: p.userid)
        chosen = {p.userid: _person(p) for p in source
                  if p.status == "active" and p.person_type in self.expected_types}
        return sorted((p for p in chosen.values() if any(g.covers(p.unit) for g in grants) and wanted.keeps(p.unit)),
                      key=lambda p: p.userid)

    @staticmethod
    def expected_of(people: Iterable[Person]) -> dict[Unit, int]:
        counts: dict[Unit, int] = {}
        for person in people:
            counts[person.unit] = counts.get(person.unit, 0) + 1
        return counts

    # -- dashboards -----------------------------------------------------------------------------
    def _scope(self, actor: Any, wanted: Filter, *, people: bool) -> tuple[HealthScope, tuple[Grant, ...]]:
        scope = scope_of(actor)
        grants = scope.people if people else scope.figures
        if not grants:
            raise Forbidden("Your roles give no view of health reporting." if not people else
                            "Your roles give figures only, not individuals' reports.")
        class_department = None
        if wanted.class_id is not None:
            class_department = self.directory.class_departments([wanted.class_id]).get(wanted.class_id)
        check_filter(grants, wanted, class_department)
        return scope, grants

    def figures(self, day: date, grants: Sequence[Grant], wanted: Filter) -> Breakdown:
        units, taken = self.store.day_units(day.isoformat())
        if not taken:
            units = _with_expected(units, self.expected_of(self.people_in(grants, wanted)))
        return sum_units(units, lambda u: any(g.covers(u) for g in grants) and wanted.keeps(u))

    def overview(self, actor: Any, day: date, wanted: Filter) -> Breakdown:
        """Expected, reported, completion and abnormal counts in scope, by department and class.

        Raises:
            Forbidden: the caller has no health scope, or the filter is outside it.
        """
        scope, grants = self._scope(actor, wanted, people=False)
        breakdown = self.figures(day, grants, wanted)
        # A caller with figures only (a leader) must not single anyone out through a tiny group.
        return breakdown if scope.people else breakdown.hide_small(self.min_cell)

    def trend(self, actor: Any, first: date, last: date, wanted: Filter) -> list[tuple[date, DayFigures]]:
        """The daily series of the overview's totals (at most 92 days)."""
        check_period(first, last)
        _, grants = self._scope(actor, wanted, people=False)
        series = []
        live: dict[Unit, int] | None = None  # today's directory, for days whose roster was never taken
        day = first
        while day <= last:
            units, taken = self.store.day_units(day.isoformat())
            if not taken:
                live = self.expected_of(self.people_in(grants, wanted)) if live is None else live
                units = _with_expected(units, live)
            series.append((day, sum_units(units, lambda u: any(g.covers(u) for g in grants)
                                          and wanted.keeps(u)).total))
            day += timedelta(days=1)
        return series

    def missing(self, actor: Any, day: date, wanted: Filter) -> list[Person]:
        """Expected people in scope who have not reported on ``day`` (names, no health data)."""
        _, grants = self._scope(actor, wanted, people=True)
        people = self.people_in(grants, wanted)
        reported = self.store.reporters(day.isoformat(), sorted({p.unit for p in people}))
        return [p for p in people if p.userid not in reported]

    def abnormal(self, actor: Any, day: date, wanted: Filter) -> list[tuple[Person, Report]]:
        """Abnormal reports of ``day`` in scope, with the reasons; every one is audited."""
        _, grants = self._scope(actor, wanted, people=True)
        found = [r for r in self.store.abnormal_reports(day.isoformat())
                 if any(g.covers(r.unit) for g in grants) and wanted.keeps(r.unit) and r.expires_at > self.clock()]
        people = self.directory.get_people([r.userid for r in found])
        audit_reads(actor.userid, self.audit, [r.userid for r in found if r.userid != actor.userid],
                    "health.report.read", {"day": day.isoformat()})
        return [(_known(people, r), self.open_report(r)) for r in found]

    def export_rows(self, actor: Any, day: date, wanted: Filter) -> tuple[list[str], list[list[Any]]]:
        """The rows of ``GET /health/export``: one per expected person in scope with their report
        (or none), or, for a caller with figures only (a leader), one per unit. Audited once, with
        the scope and the number of people in it."""
        scope = scope_of(actor)
        if not scope.people:
            _, grants = self._scope(actor, wanted, people=False)
            breakdown = self.figures(day, grants, wanted).hide_small(self.min_cell)
            headers = ["日期", "院系", "班级", "应报", "已报", "未报", "完成率", "异常"]
            rows = [[day.isoformat(), dept, "", f.expected, f.reported, max(0, f.expected - f.reported),
                     f.completion, f.abnormal] for dept, f in sorted(breakdown.departments.items())]
            rows += [[day.isoformat(), "", cls, f.expected, f.reported, max(0, f.expected - f.reported),
                      f.completion, f.abnormal] for cls, f in sorted(breakdown.classes.items())]
            self.audit.record(subject=f"health-export#{day.isoformat()}", actor=actor.userid,
                              action="health.export.figures", detail={"rows": len(rows)})
            return headers, rows
        _, grants = self._scope(actor, wanted, people=True)
        people = self.people_in(grants, wanted)
        reports: dict[str, Any] = {}
        for unit in sorted({p.unit for p in people}):
            for stored in self.store.reports_of_unit(day.isoformat(), unit):
                if stored.expires_at > self.clock():
                    reports[stored.userid] = stored
        headers = ["日期", "工号/学号", "姓名", "类别", "院系", "班级", "已报", "填报时间", "体温", "症状", "所在地",
                   "健康码", "接触史", "风险地区", "隔离观察", "异常", "异常原因"]
        rows = []
        for person in people:
            stored = reports.get(person.userid)
            base = [day.isoformat(), person.userid, person.name, person.person_type, person.department,
                    person.class_id or ""]
            if stored is None:
                rows.append(base + ["否"] + [""] * 10)
                continue
            report = self.open_report(stored)
            a = report.answers
            rows.append(base + ["是", report.updated_at, a.get("temperature"), ",".join(a.get("symptoms", [])),
                                a.get("whereabouts", ""), a.get("health_code", ""), _yes(a.get("close_contact")),
                                _yes(a.get("risk_area")), _yes(a.get("quarantined")), _yes(report.abnormal),
                                reason_labels(report.reasons)])
        # Whose reports were read, one record each (rows without a report carry no health data).
        audit_reads(actor.userid, self.audit, [u for u in reports if u != actor.userid], "health.report.read",
                    {"day": day.isoformat(), "export": True})
        return headers, rows

    # -- jobs -----------------------------------------------------------------------------------
    def _claim(self, day: date, kind: str, slot: time) -> str | None:
        key = f"health-slot:{day.isoformat()}:{kind}:{slot.strftime('%H%M')}"
        return key if self.claims.claim(key, SLOT_LEASE_SECONDS, "running") else None

    def _done(self, key: str) -> None:
        self.claims.put(key, "done", 2 * 24 * 3600)

    def send_reminders(self) -> JobReport:
        """Record the day's expected counts when it opens (00:00), remind the people who have not
        reported (at the reminder times, until the cutoff) and send each class's counselors the
        names still missing (at the digest times). Each slot runs once a day however often the
        schedule fires; every one records the expected counts again (the roster may have changed)."""
        now = self.clock()
        result = JobReport()
        opening = due_slots(now, self.campus, (DAY_OPENS,), SLOT_WINDOW)
        reminders = due_slots(now, self.campus, self.reminder_times, SLOT_WINDOW) if self.campus.is_open(now) else []
        digests = due_slots(now, self.campus, self.digest_times, SLOT_WINDOW) if self.campus.is_open(now) else []
        work = [("open", d, s) for d, s in opening] + [("reminder", d, s) for d, s in reminders] \
            + [("digest", d, s) for d, s in digests]
        for kind, day, slot in work:
            key = self._claim(day, kind, slot)
            if key is None:
                continue
            roster = self.roster()
            self.store.set_expected(day.isoformat(), self.expected_of(roster), _iso(now), self._expires(day))
            if kind != "open":
                reported = self.store.reporters(day.isoformat(), sorted({p.unit for p in roster}))
                missing = [p for p in roster if p.userid not in reported]
                if kind == "reminder":
                    result.reminded += self._remind(day, slot, missing)
                else:
                    result.digests += self._digest(day, missing)
            result.slots.append(f"{kind}@{slot.strftime('%H:%M')}")
            self._done(key)
        return result

    def _remind(self, day: date, slot: time, missing: Sequence[Person]) -> int:
        if not missing:
            return 0
        cutoff = self.campus.cutoff_text
        self.notify(Notification(
            key=f"health-reminder:{day.isoformat()}:{slot.strftime('%H%M')}",
            recipients=tuple(p.userid for p in missing), title="每日健康填报提醒",
            body=f"您今天（{day.isoformat()}）的健康填报尚未完成，请于{cutoff}前在“企业微信+”服务大厅填报。",
            url=self.page_url, mass=True))
        return len(missing)

    def _digest(self, day: date, missing: Sequence[Person]) -> int:
        by_class: dict[str, list[Person]] = {}
        for person in missing:
            if person.person_type == "student" and person.class_id:
                by_class.setdefault(person.class_id, []).append(person)
        counselors = self.directory.class_counselors(sorted(by_class))
        # Only counselors who are active and still hold the class (the class row may lag).
        holders = self.directory.get_people(sorted({u for c in counselors.values() for u in c}))
        digests: list[Notification] = []
        for class_id, students in sorted(by_class.items()):
            recipients = tuple(sorted(u for u in counselors.get(class_id, ()) if u in holders
                                      and holders[u].status == "active" and class_id in holders[u].counselor_of
                                      and "counselor" in holders[u].roles))
            if not recipients:
                continue
            names = "、".join(p.name for p in students[:DIGEST_NAMES])
            more = f"等{len(students)}人" if len(students) > DIGEST_NAMES else f"共{len(students)}人"
            body = f"截至目前{class_id}班尚未完成{day.isoformat()}健康填报（{more}）：{names}"
            digests.append(Notification(
                key=f"health-missing:{day.isoformat()}:{class_id}", recipients=recipients,
                title=f"{class_id}班今日未填报名单", body=_clip(body), url=self.page_url, mass=True))
        if digests:
            self.notify_all(digests)
        return len(digests)

    def send_summary(self) -> JobReport:
        """At the summary time: campus figures to leaders, each department's to its head (counts
        only, never an individual)."""
        now = self.clock()
        result = JobReport()
        for day, slot in due_slots(now, self.campus, self.summary_times, SLOT_WINDOW):
            key = self._claim(day, "summary", slot)
            if key is None:
                continue
            roster = self.roster()
            result.recounted += self.reconcile(day, roster)
            self.store.set_expected(day.isoformat(), self.expected_of(roster), _iso(now), self._expires(day))
            units, _ = self.store.day_units(day.isoformat())
            campus = sum_units(units, lambda u: True)
            leaders = self.directory.holders("role:leader")
            if leaders:
                shown = campus.hide_small(self.min_cell)
                lines = [f"{d}：{_line(f)}" for d, f in sorted(shown.departments.items())]
                self.notify(Notification(key=f"health-summary:{day.isoformat()}", recipients=tuple(leaders),
                                         title=f"{day.isoformat()}健康填报汇总", kind="text",
                                         body=_clip(f"全校{_line(campus.total)}\n" + "\n".join(lines)), mass=True))
                result.summaries += 1
            for department, figures in sorted(campus.departments.items()):
                heads = self.directory.holders(f"dept_head:{department}")
                if not heads:
                    continue
                own = sum_units(units, lambda u, d=department: u.department == d)
                lines = [f"{c}班：{_line(f)}" for c, f in sorted(own.classes.items())]
                self.notify(Notification(key=f"health-summary:{day.isoformat()}:{department}",
                                         recipients=tuple(heads), title=f"{day.isoformat()}本单位健康填报汇总",
                                         kind="text", body=_clip(f"{department}：{_line(figures)}\n" + "\n".join(lines)),
                                         mass=True))
                result.summaries += 1
            result.slots.append(f"summary@{slot.strftime('%H:%M')}")
            self._done(key)
        return result

    def reconcile(self, day: date, roster: Sequence[Person]) -> int:
        """Repair the day's counters from the stored reports (a count lost to a crash between a
        report and its count); returns how many people were recounted. Reads every report of the
        day through the unit index, once, in the evening job: dashboards never do."""
        counted = self.store.counted_people(day.isoformat())
        units = {p.unit for p in roster} | set(counted)
        repaired = 0
        for unit in sorted(units):
            seen = counted.get(unit, {})
            for stored in self.store.reports_of_unit(day.isoformat(), unit):
                if seen.get(stored.userid) != (stored.version, stored.abnormal):
                    self.store.count(day.isoformat(), unit, stored.userid, stored.abnormal, stored.version,
                                     stored.expires_at)
                    repaired += 1
        return repaired

    def resend_alerts(self, older_than: timedelta = timedelta(minutes=2)) -> JobReport:
        """Queue again the alerts of abnormal reports still flagged pending (their filing died, or
        the queue was down, between the write and the alert). The consumer is idempotent."""
        cutoff = _iso(self.clock() - older_than)
        result = JobReport()
        for userid, day, version in self.store.pending_alerts(cutoff):
            self.queue_alert(userid, day, version)
            self.store.alert_queued(userid, day, version)
            result.alerts_requeued += 1
        return result


def _with_expected(units: dict[Unit, DayFigures], expected: dict[Unit, int]) -> dict[Unit, DayFigures]:
    """The day's counters with expected counts taken from ``expected`` (units nobody reported in too)."""
    merged = {u: DayFigures(expected.get(u, 0), f.reported, f.abnormal) for u, f in units.items()}
    for unit, count in expected.items():
        merged.setdefault(unit, DayFigures(count, 0, 0))
    return merged


def _person(record: Any) -> Person:
    return Person(record.userid, record.name, record.person_type, record.department,
                  record.class_id if record.person_type == "student" else None)


def _known(people: dict[str, Any], stored: Any) -> Person:
    record = people.get(stored.userid)
    if record is not None:
        return _person(record)
    return Person(stored.userid, stored.userid, stored.unit.person_type, stored.unit.department, stored.unit.class_id)


def _line(figures: DayFigures) -> str:
    abnormal = f"异常{figures.abnormal}人" if figures.abnormal is not None else "异常人数（人数过少，不显示）"
    return f"应报{figures.expected}人，已报{figures.reported}人，完成率{figures.completion:.1%}，{abnormal}"


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yes(value: Any) -> str:
    return "是" if value else "否"


def _iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds")
