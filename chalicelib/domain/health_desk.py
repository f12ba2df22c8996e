"""Filing and reading daily health reports, and the consent that comes first.

The rules of filing (issue: exactly one report per person per campus day, under any concurrency
or retry):

* the first report of a day is a conditional put on the natural key ``(userid, day)``; of any
  number of simultaneous first filings one creates the report and the others become corrections;
* a correction before the cutoff replaces the report with the next version (conditional on the
  version read) and keeps the earlier version, sealed, in its history; after the cutoff the day is
  closed (409);
* a retry with the same answers changes nothing, and repairs what a crash may have left undone
  (the day's counters, a queued alert): the counters and the alert consumer are idempotent;
* an abnormal report is flagged ``alert pending`` in the same write, queued on ``health-alerts``
  and then unflagged; a report whose flag stays (the queue was down, the function died) is queued
  again by the ``resend_health_alerts`` job. No abnormal report is ever left without its alert.

A normal first filing costs the session check (the person's record, which also carries their
consent), the conditional put and one counter update: three AWS calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol

from chalicelib.domain.access import Actor
from chalicelib.domain.health import MAX_VERSIONS, CampusClock, HealthAnswers, HealthRules, StoredReport, Unit
from chalicelib.errors import ConsentRequired, Conflict, Invalid


class Sealer(Protocol):
    def seal(self, field: str, value: str) -> str: ...
    def open(self, field: str, token: str) -> str: ...


class AuditLog(Protocol):
    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None: ...


def sealed_field(userid: str, day: str) -> str:
    """The associated data a report is sealed under: its ciphertext opens only as this person's
    report of this day (it cannot be moved to another item)."""
    return f"health_report:{userid}:{day}"


@dataclass(frozen=True)
class Report:
    """A day's report, opened: the answers, why it is abnormal, its version and times."""

    userid: str
    day: str
    version: int
    answers: dict[str, Any]
    reasons: tuple[str, ...]
    filed_at: str
    updated_at: str
    unit: Unit

    @property
    def abnormal(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class Filing:
    """What ``file`` did: ``created``, ``corrected`` or ``unchanged`` (a retry), and the report."""

    report: Report
    outcome: str
    history: int  # earlier versions kept
    alert_deferred: bool = False  # the alert could not be queued now: the sweep job will


@dataclass(frozen=True)
class Today:
    day: str
    filed: bool
    open: bool
    cutoff_at: str
    consent_needed: bool
    report: Report | None


class HealthDesk:
    """The daily report, for the person filing it.

    Collaborators: ``store`` (:class:`chalicelib.db.health.HealthRepository`), ``consents``
    (records consent on the person), ``sealer`` (AES-GCM of answers), ``audit``, ``queue_alert``
    (puts ``{userid, day, version}`` on the ``health-alerts`` queue), ``clock`` (UTC now).
    """

    def __init__(self, *, store: Any, consents: Any, sealer: Sealer, audit: AuditLog, rules: HealthRules,
                 campus: CampusClock, consent_version: str, retention_days: int,
                 queue_alert: Callable[[str, str, int], None], clock: Callable[[], datetime]) -> None:
        self.store = store
        self.consents = consents
        self.sealer = sealer
        self.audit = audit
        self.rules = rules
        self.campus = campus
        self.consent_version = consent_version
        self.retention_days = retention_days
        self.queue_alert = queue_alert
        self.clock = clock

    # -- consent --------------------------------------------------------------------------------
    def give_consent(self, actor: Actor, version: str) -> str:
        """Record the person's consent to the current version of the health-data notice.

        Raises:
            Conflict: ``version`` is not the current one (the H5 showed an old text).
        """
        if version != self.consent_version:
            raise Conflict(f"The current consent text is version {self.consent_version}; show it and ask again.")
        if actor.health_consent != version:
            self.consents.set_health_consent(actor.userid, version)
            self.audit.record(subject=f"person#{actor.userid}", actor=actor.userid, action="health.consent.given",
                              detail={"version": version})
        return version

    def withdraw_consent(self, actor: Actor) -> None:
        """Withdraw consent (PIPL art. 15): no more filing until given again; stored reports stay
        until they expire, as the school's duty to keep them requires."""
        if actor.health_consent is not None:
            self.consents.set_health_consent(actor.userid, None)
            self.audit.record(subject=f"person#{actor.userid}", actor=actor.userid, action="health.consent.withdrawn",
                              detail={"version": actor.health_consent})

    def consented(self, actor: Actor) -> bool:
        return actor.health_consent == self.consent_version

    # -- filing ---------------------------------------------------------------------------------
    def file(self, actor: Actor, answers: HealthAnswers) -> Filing:
        """File or correct today's report.

        Raises:
            ConsentRequired: no consent to the current version (403).
            Conflict: the day's cutoff has passed, or too many corrections (409).
        """
        if not self.consented(actor):
            raise ConsentRequired("Consent to the processing of your health data first (POST /health/consent).")
        now = self.clock()
        if not self.campus.is_open(now):
            raise Conflict(f"Today's report closed at {self.campus.cutoff_text}.")
        day = self.campus.day(now).isoformat()
        reasons = self.rules.assess(answers)
        stored_answers = answers.stored()
        stamp = _iso(now)
        fresh = self._stored(actor.userid, day, 1, stored_answers, reasons, stamp, stamp, Unit.of(actor), ())
        if self.store.create_report(fresh):
            return self._after_write(fresh, "created", 0, alert=fresh.abnormal)
        for _ in range(5):  # lost races with concurrent corrections of the same day: read again
            before = self.store.get_report(actor.userid, day, consistent=True)
            if before is None:  # expired meanwhile: impossible within a day, but never lose a report
                if self.store.create_report(fresh):
                    return self._after_write(fresh, "created", 0, alert=fresh.abnormal)
                continue
            previous = self.open(before)
            if previous.answers == stored_answers:
                return self._after_write(before, "unchanged", len(before.history), alert=before.alert_pending)
            if before.version >= MAX_VERSIONS:
                raise Conflict(f"Today's report was already corrected {MAX_VERSIONS - 1} times; "
                               "ask your counselor or the hospital to note further changes.")
            history = (*before.history, before.sealed)
            # Counted where it was first counted, even if the person changed class since.
            after = self._stored(actor.userid, day, before.version + 1, stored_answers, reasons, before.filed_at,
                                 stamp, before.unit, history)
            if self.store.replace_report(after, before.version):
                # The circle hears again only when the reasons change (or the last alert is still due).
                alert = bool(reasons) and (reasons != previous.reasons or before.alert_pending)
                return self._after_write(after, "corrected", len(history), alert=alert)
        raise Conflict("Today's report is being changed by another request; try again.")

    def _stored(self, userid: str, day: str, version: int, answers: dict[str, Any], reasons: tuple[str, ...],
                filed_at: str, updated_at: str, unit: Unit, history: tuple[str, ...]) -> Any:
        sealed = self.sealer.seal(sealed_field(userid, day), json.dumps(
            {"version": version, "answers": answers, "reasons": list(reasons), "at": updated_at},
            ensure_ascii=False, sort_keys=True))
        expires = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=timezone.utc) + timedelta(
            days=self.retention_days + 1)
        return StoredReport(userid=userid, day=day, version=version, sealed=sealed, abnormal=bool(reasons),
                            filed_at=filed_at, updated_at=updated_at, expires_at=expires, unit=unit,
                            history=history, alert_pending=bool(reasons))

    def _after_write(self, stored: StoredReport, outcome: str, history: int, *, alert: bool) -> Filing:
        """Count the report, then queue its alert. A failure to queue is not the filer's problem:
        the report keeps its pending flag and ``resend_health_alerts`` queues it minutes later."""
        report = self.open(stored)
        self.store.count(stored.day, stored.unit, stored.userid, report.abnormal, stored.version, stored.expires_at)
        deferred = False
        if alert:
            try:
                self.queue_alert(stored.userid, stored.day, stored.version)
            except Exception:  # noqa: BLE001 - any failure of the queue: the sweep covers it
                deferred = True
            else:
                self.store.alert_queued(stored.userid, stored.day, stored.version)
        elif stored.alert_pending:
            self.store.alert_queued(stored.userid, stored.day, stored.version)  # nothing new to say
        return Filing(report=report, outcome=outcome, history=history, alert_deferred=deferred)

    # -- reading one's own ----------------------------------------------------------------------
    def open(self, stored: Any) -> Report:
        data = json.loads(self.sealer.open(sealed_field(stored.userid, stored.day), stored.sealed))
        return Report(userid=stored.userid, day=stored.day, version=stored.version, answers=data["answers"],
                      reasons=tuple(data["reasons"]), filed_at=stored.filed_at, updated_at=stored.updated_at,
                      unit=stored.unit)

    def live(self, stored: Any) -> Any:
        """``stored`` unless it has expired (DynamoDB's TTL deletes late: readers filter)."""
        if stored is None or stored.expires_at <= self.clock():
            return None
        return stored

    def today(self, actor: Actor) -> Today:
        now = self.clock()
        day = self.campus.day(now)
        stored = self.live(self.store.get_report(actor.userid, day.isoformat()))
        return Today(day=day.isoformat(), filed=stored is not None, open=self.campus.is_open(now),
                     cutoff_at=self.campus.cutoff_of(day).isoformat(), consent_needed=not self.consented(actor),
                     report=self.open(stored) if stored else None)

    def prefill(self, actor: Actor) -> tuple[str | None, dict[str, Any]]:
        """The answers of the latest report of the last week, for reuse (the pledge is given
        afresh each day). ``(None, {})`` when there is none."""
        today = self.campus.day(self.clock())
        recent = self.store.reports_of(actor.userid, (today - timedelta(days=7)).isoformat(),
                                       (today - timedelta(days=1)).isoformat())
        for stored in recent:
            if self.live(stored) is not None:
                report = self.open(stored)
                answers = dict(report.answers)
                answers.pop("pledge", None)
                return report.day, answers
        return None, {}

    def mine(self, actor: Actor, first: date, last: date) -> list[Report]:
        """My reports from ``first`` to ``last`` (at most 92 days), newest first.

        Raises:
            Invalid: the period is reversed or too long.
        """
        check_period(first, last)
        return [self.open(s) for s in self.store.reports_of(actor.userid, first.isoformat(), last.isoformat())
                if self.live(s) is not None]


MAX_PERIOD_DAYS = 92


def check_period(first: date, last: date) -> None:
    if last < first:
        raise Invalid("The period ends before it starts.", {"to": "must not be before from"})
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise Invalid("The period is too long.", {"to": f"at most {MAX_PERIOD_DAYS} days after from"})


def _iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds")
