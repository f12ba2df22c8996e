"""Health cases: the joint response to abnormal reports (HR - school hospital - student affairs).

An abnormal report is queued on ``health-alerts``; :meth:`HealthCases.raise_alert` (the consumer)
opens a case for the person, or adds the report to their open case, and tells the circle of
:func:`chalicelib.domain.health.alert_circle`. The hospital then records what it does
(``observing``, ``isolated``, ``referred``, ``cleared``), and every event tells the same circle.

Idempotent per report version: the case lists the ``<day>#v<version>`` it has handled, and the
WeCom message key is built from the case and the version, so a redelivered message neither adds
the report twice nor messages anyone twice (the notifications consumer sends a key once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from chalicelib.domain.access import Actor, Subject
from chalicelib.domain.health import HealthScope, StoredCase, alert_circle, reason_labels, scope_of
from chalicelib.domain.notifications import Notification
from chalicelib.errors import Conflict, Forbidden, NotFound

OPEN_CASE_DAYS = 400  # how long the "open case of a person" pointer lives without a clearance


def case_field(userid: str) -> str:
    """The associated data a case's reasons and notes are sealed under (bound to the person)."""
    return f"health_case:{userid}"
STATUS_NAMES = {"reported": "已上报", "observing": "医学观察", "isolated": "隔离", "referred": "转诊",
                "cleared": "解除"}


@dataclass(frozen=True)
class CaseReport:
    day: str
    version: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class CaseEvent:
    at: str
    actor: str
    status: str
    note: str


@dataclass(frozen=True)
class Case:
    """A case, opened (its reports' reasons and the events' notes unsealed)."""

    case_id: str
    userid: str
    name: str
    person_type: str
    department: str
    class_id: str | None
    status: str
    opened_at: str
    updated_at: str
    reports: tuple[CaseReport, ...]
    events: tuple[CaseEvent, ...]

    @property
    def is_open(self) -> bool:
        return self.status != "cleared"


def case_id_for(userid: str, day: str, version: int) -> str:
    """The id of a case opened by a report version: the same for every delivery of its alert, so
    two deliveries racing to open it create one case. Reveals nothing of the person."""
    digest = hashlib.sha256(f"{userid}|{day}|{version}".encode()).hexdigest()[:16]
    return f"hc{day.replace('-', '')}{digest}"


class HealthCases:
    """Cases, for the alert consumer and for the people who manage or follow them.

    Collaborators: ``store`` (reports and cases), ``people`` (the directory: names and holders of
    authorities), ``sealer``, ``notify`` (enqueue a :class:`Notification`), ``audit``,
    ``open_report`` (opens a stored report), ``link`` (the H5 page of a case), ``claims`` (the kv
    store: the pointer to a person's open case), ``clock``.
    """

    def __init__(self, *, store: Any, people: Any, sealer: Any, notify: Callable[[Notification], int], audit: Any,
                 open_report: Callable[[Any], Any], link: Callable[[str], str | None], claims: Any,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.claims = claims
        self.people = people
        self.sealer = sealer
        self.notify = notify
        self.audit = audit
        self.open_report = open_report
        self.link = link
        self.clock = clock

    # -- the alert consumer ---------------------------------------------------------------------
    def raise_alert(self, userid: str, day: str, version: int) -> str:
        """Open or update the person's case for an abnormal report version and tell the circle.

        Returns what happened: ``alerted``; ``superseded`` (a newer version replaced it: that
        version carries its own alert if abnormal); ``gone`` (no such report, or expired);
        ``normal`` (not abnormal). Safe to repeat.
        """
        stored = self.store.get_report(userid, day, consistent=True)
        now = self.clock()
        if stored is None or stored.expires_at <= now:
            return "gone"
        if stored.version != version:
            return "superseded"
        if not stored.abnormal:
            return "normal"
        report = self.open_report(stored)
        mark = f"{day}#v{version}"
        sealed_reasons = self.sealer.seal(case_field(userid), json.dumps(
            {"day": day, "version": version, "reasons": list(report.reasons)}, ensure_ascii=False))
        stamp = _iso(now)
        expires = stored.expires_at
        for _ in range(5):
            case_id = self._open_case_id(userid, case_id_for(userid, day, version))
            case = self.store.get_case(case_id)
            if case is None:
                fresh = StoredCase(case_id=case_id, userid=userid, unit=stored.unit, status="reported",
                                   opened_at=stamp, updated_at=stamp, reports=(mark,), sealed_reports=(sealed_reasons,),
                                   events=(), version=1, expires_at=expires)
                if self.store.create_case(fresh):
                    case = fresh
                    break
                continue  # another delivery opened it: read it again
            if mark in case.reports:  # handled already (a redelivery): tell again, harmlessly
                break
            if not case.is_open:  # cleared meanwhile: this report opens a new case
                self._release(userid, case_id)
                continue
            updated = replace(case, reports=(*case.reports, mark), sealed_reports=(*case.sealed_reports, sealed_reasons),
                              updated_at=stamp, version=case.version + 1, expires_at=max(case.expires_at, expires))
            if self.store.save_case(updated, case.version):
                case = updated
                break
        else:
            raise Conflict("The case kept changing while the alert was added; retried by the queue.")
        person = self.people.get_person(userid)
        name = person.name if person else userid
        where = _where(stored.unit.department, stored.unit.class_id)
        self._tell(case, f"health-alert:{case.case_id}:{day}v{version}", "健康异常提醒",
                   f"{name}（{where}）{day}健康填报异常：{reason_labels(report.reasons)}。"
                   "请校医院、人事处/学工部及相关负责人及时联系处置。")
        return "alerted"

    def _open_case_id(self, userid: str, proposed: str) -> str:
        """The id of the person's open case: the one a pointer names, else ``proposed`` (claimed
        now). The pointer makes "one open case per person" hold for concurrent alerts, which the
        eventually consistent indexes could not."""
        key = f"health-open-case:{userid}"
        if self.claims.claim(key, OPEN_CASE_DAYS * 86400, proposed):
            return proposed
        return self.claims.get(key) or proposed

    def _release(self, userid: str, case_id: str) -> None:
        key = f"health-open-case:{userid}"
        if self.claims.get(key) == case_id:
            self.claims.release(key)

    def _tell(self, case: StoredCase, key: str, title: str, body: str) -> int:
        subject = Subject(case.userid, case.unit.person_type, case.unit.department, case.unit.class_id)
        recipients = self.circle_of(subject)
        if not recipients:
            return 0
        return self.notify(Notification(key=key, recipients=tuple(recipients), title=title, body=body,
                                        url=self.link(case.case_id)))

    def circle_of(self, subject: Subject) -> list[str]:
        """Who is told about ``subject``'s case: the holders of the circle's authorities, now,
        never the person themselves."""
        found: set[str] = set()
        for authority in alert_circle(subject):
            found.update(self.people.holders(authority))
        found.discard(subject.userid)
        return sorted(found)

    # -- managing cases -------------------------------------------------------------------------
    def add_event(self, actor: Actor, case_id: str, status: str, note: str) -> Case:
        """Record what the hospital did about a case and tell the circle; ``cleared`` closes it.

        Raises:
            NotFound: no such case.
            Conflict: the case is closed, or changed meanwhile (reload and retry).
        """
        case = self.store.get_case(case_id)
        if case is None:
            raise NotFound("No such case.")
        if case.userid == actor.userid:
            raise Forbidden("Your own case is handled by a colleague.")
        if not case.is_open:
            raise Conflict("This case is closed; a new abnormal report opens a new one.")
        stamp = _iso(self.clock())
        event = self.sealer.seal(case_field(case.userid), json.dumps(
            {"at": stamp, "actor": actor.userid, "status": status, "note": note}, ensure_ascii=False))
        updated = replace(case, status=status, events=(*case.events, event), updated_at=stamp, version=case.version + 1)
        if not self.store.save_case(updated, case.version):
            raise Conflict("The case changed meanwhile; reload it and try again.")
        if not updated.is_open:
            self._release(case.userid, case_id)
        # The audit names the case, not what happened in it (the IT centre reads the trail).
        self.audit.record(subject=f"person#{case.userid}", actor=actor.userid, action="health.case.event",
                          detail={"case_id": case_id})
        person = self.people.get_person(case.userid)
        name = person.name if person else case.userid
        self._tell(updated, f"health-case:{case_id}:e{len(updated.events)}", "健康个案进展",
                   f"{name}（{_where(case.unit.department, case.unit.class_id)}）的健康个案："
                   f"{STATUS_NAMES[status]}。" + (f"说明：{note}" if note else ""))
        return self._open(updated, {case.userid: person} if person else {})

    def get(self, actor: Actor, case_id: str) -> Case:
        """A case in the caller's scope (audited unless it is their own).

        Raises:
            NotFound: no such case, or outside the caller's scope.
        """
        case = self.store.get_case(case_id, consistent=False)
        if case is None or not (case.userid == actor.userid or scope_of(actor).sees_people(case.unit)):
            raise NotFound("No such case in your scope.")
        if case.userid != actor.userid:
            self.audit.record(subject=f"person#{case.userid}", actor=actor.userid, action="health.case.read",
                              detail={"case_id": case_id})
        person = self.people.get_person(case.userid)
        return self._open(case, {case.userid: person} if person else {})

    def list(self, actor: Actor, state: str, limit: int, after: str | None) -> tuple[list[Case], str | None]:
        """Cases of a state in the caller's scope, oldest first; every case listed is audited.

        Returns the page and the position to continue from (``None`` at the end).
        """
        scope: HealthScope = scope_of(actor)
        if not scope.people:
            return [], None
        page: list[StoredCase] = []
        position = None
        for case in self.store.cases(state, after=after):
            if not scope.sees_people(case.unit):
                continue
            page.append(case)
            if len(page) == limit:
                position = f"{case.opened_at}#{case.case_id}"
                break
        if page:
            self.audit.record_many(actor.userid, [_Read(f"person#{c.userid}", "health.case.read",
                                                        {"case_id": c.case_id}) for c in page])
        people = self.people.get_people([c.userid for c in page])
        return [self._open(c, people) for c in page], position

    def _open(self, case: StoredCase, people: dict[str, Any]) -> Case:
        reports = []
        for token in case.sealed_reports:
            data = json.loads(self.sealer.open(case_field(case.userid), token))
            reports.append(CaseReport(data["day"], int(data["version"]), tuple(data["reasons"])))
        events = []
        for token in case.events:
            data = json.loads(self.sealer.open(case_field(case.userid), token))
            events.append(CaseEvent(data["at"], data["actor"], data["status"], data["note"]))
        person = people.get(case.userid)
        return Case(case_id=case.case_id, userid=case.userid, name=person.name if person else case.userid,
                    person_type=case.unit.person_type, department=case.unit.department, class_id=case.unit.class_id,
                    status=case.status, opened_at=case.opened_at, updated_at=case.updated_at,
                    reports=tuple(reports), events=tuple(events))


@dataclass(frozen=True)
class _Read:
    subject: str
    action: str
    detail: dict[str, Any]


def audit_reads(actor: str, audit: Any, subjects: Sequence[str], action: str, detail: dict[str, Any]) -> None:
    """One audit record per person whose health data ``actor`` just read."""
    if subjects:
        audit.record_many(actor, [_Read(f"person#{s}", action, detail) for s in dict.fromkeys(subjects)])


def _where(department: str, class_id: str | None) -> str:
    return f"{department}/{class_id}" if class_id else department


def _iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds")


