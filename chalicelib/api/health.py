"""Daily health reporting (每日健康填报): consent, reports, cases, statistics, alerts and reminders.

* ``/health/consent``: the separate consent to processing health data (PIPL art. 29), versioned;
* ``/health/reports``: file or correct today's report, today's state, yesterday's answers, mine;
* ``/health/cases``: the hospital's cases opened by abnormal reports, and their events;
* ``/health/overview|missing|abnormal|trend|export``: figures and lists within the caller's scope;
* consumer ``raise_health_alert`` (queue ``campus-health-alerts``);
* jobs ``send_report_reminders``, ``send_daily_health_summary``, ``resend_health_alerts``: they run
  every few minutes and act at the configured campus times (``HEALTH_*_TIME(S)``), once per slot,
  so the times are settings rather than part of the deployed schedule.

No view logs answers, reasons or notes; reads of other people's reports and cases are audited.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Rate, Response
from chalice.app import CloudWatchEvent, Request, SQSEvent
from pydantic import BaseModel, Field, ValidationError

from chalicelib.api import deps
from chalicelib.api.exports import check_accept, spreadsheet
from chalicelib.api.routing import Area, RequestModel, json_response
from chalicelib.api.schemas import PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.domain.absence import whereabouts_of
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.directory import ShortId
from chalicelib.domain.health import REASONS, Breakdown, CaseStatus, DayFigures, Filter, HealthAnswers
from chalicelib.domain.health_cases import Case
from chalicelib.domain.health_desk import Report
from chalicelib.errors import BadRequest, ConsentRequired, Conflict, Forbidden, InvalidInput, NotFound
from chalicelib.observability import logger
from chalicelib.resources import HEALTH_ALERTS

area = Area("health")
ANYONE = authenticated()
HOSPITAL = authenticated(Role.HOSPITAL)
MAX_REPORT_BYTES = 16 * 1024
CONSENT_TEXT = (
    "为做好校园疫情防控，学校将收集和处理您每日填报的体温、症状、所在地、健康码及接触史等健康信息。"
    "这些信息属于敏感个人信息，仅用于健康监测和异常情况的联合处置，仅由校医院及按职责负责您的人事处、学工部、"
    "院系负责人和辅导员在职责范围内查看，每次查看均留有记录，保存期满后自动删除。您可以随时撤回同意，"
    "撤回后将不能在线填报。"
)


# -- shapes -------------------------------------------------------------------------------------
class ConsentBody(RequestModel):
    version: str = Field(min_length=1, max_length=32, description="The version of the text shown")
    agree: Literal[True] = Field(description="Must be true: the person agrees")


class ConsentView(BaseModel):
    version: str = Field(description="The current version of the consent text")
    text: str
    given: bool = Field(description="Whether I have given consent to this version")
    given_version: str | None = Field(description="The version I last consented to, if any")


class Reason(BaseModel):
    code: str
    label: str


def _reasons(codes: tuple[str, ...]) -> list[Reason]:
    return [Reason(code=c, label=REASONS.get(c, c)) for c in codes]


class ReportView(BaseModel):
    date: str
    version: int
    abnormal: bool
    reasons: list[Reason] = Field(description="Why it is abnormal (empty when normal)")
    answers: dict[str, Any]
    filed_at: str
    updated_at: str

    @classmethod
    def of(cls, report: Report) -> ReportView:
        return cls(date=report.day, version=report.version, abnormal=report.abnormal, reasons=_reasons(report.reasons),
                   answers=report.answers, filed_at=report.filed_at, updated_at=report.updated_at)


class FilingView(ReportView):
    outcome: Literal["created", "corrected", "unchanged"] = Field(
        description="created: today's first report; corrected: a new version (the earlier kept); "
                    "unchanged: the same answers again (a retry)")
    earlier_versions: int


class TodayView(BaseModel):
    date: str
    filed: bool = Field(description="Whether today's report is done (the H5 button says so)")
    open: bool = Field(description="Whether it can still be filed or corrected today")
    cutoff_at: str
    consent_needed: bool
    report: ReportView | None


class AwayNote(BaseModel):
    kind: Literal["leave", "travel"]
    id: str = Field(description="the leave or registration")
    end: str
    destination: dict[str, str]
    overdue: bool


class PrefillView(BaseModel):
    from_date: str | None = Field(description="The day whose answers these are (none in the last week: null)")
    answers: dict[str, Any] = Field(description="Reusable answers (the pledge is given afresh); while on leave "
                                                "or away from Jinan, the location is the registered destination")
    away: AwayNote | None = Field(None, description="The leave or travel registration that holds today")


# Dates a query may name: wide enough for any campus record, narrow enough to count days over.
CampusDate = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2099, 12, 31))]
CASE_ID = r"^hc\d{8}[0-9a-f]{16}$"


class PeriodQuery(RequestModel):
    from_: CampusDate = Field(alias="from")
    to: CampusDate


class ReportList(BaseModel):
    items: list[ReportView]


class CaseReportView(BaseModel):
    date: str
    version: int
    reasons: list[Reason]


class CaseEventView(BaseModel):
    at: str
    actor: str
    status: str
    note: str


class CaseView(BaseModel):
    id: str
    userid: str
    name: str
    person_type: str
    department: str
    class_id: str | None
    status: str = Field(description="reported, observing, isolated, referred or cleared")
    open: bool
    opened_at: str
    updated_at: str
    reports: list[CaseReportView]
    events: list[CaseEventView]

    @classmethod
    def of(cls, case: Case) -> CaseView:
        return cls(id=case.case_id, userid=case.userid, name=case.name, person_type=case.person_type,
                   department=case.department, class_id=case.class_id, status=case.status, open=case.is_open,
                   opened_at=case.opened_at, updated_at=case.updated_at,
                   reports=[CaseReportView(date=r.day, version=r.version, reasons=_reasons(r.reasons))
                            for r in case.reports],
                   events=[CaseEventView(at=e.at, actor=e.actor, status=e.status, note=e.note) for e in case.events])


class CasesQuery(PageQuery):
    state: Literal["open", "closed"] = "open"


class CasePage(BaseModel):
    items: list[CaseView]
    next: str | None


class CaseEventBody(RequestModel):
    status: CaseStatus
    note: str = Field("", max_length=500)


class ScopeQuery(RequestModel):
    day: CampusDate | None = Field(None, alias="date", description="Campus day (default today)")
    department: ShortId | None = None
    class_: ShortId | None = Field(None, alias="class")

    def filter(self) -> Filter:
        return Filter(self.department, self.class_)


class MissingQuery(ScopeQuery, PageQuery):
    """Paged by userid: ``next`` continues after the last person of the previous page."""


class FiguresView(BaseModel):
    expected: int
    reported: int
    missing: int
    completion_rate: float = Field(description="reported / expected, 0-1")
    abnormal: int | None = Field(description="null: hidden, a group too small to show without singling "
                                             "someone out (figures-only callers)")

    @classmethod
    def of(cls, figures: DayFigures) -> FiguresView:
        return cls(**figures.as_dict())


class OverviewView(BaseModel):
    date: str
    total: FiguresView
    departments: dict[str, FiguresView]
    classes: dict[str, FiguresView]

    @classmethod
    def of(cls, day: date, breakdown: Breakdown) -> OverviewView:
        return cls(date=day.isoformat(), total=FiguresView.of(breakdown.total),
                   departments={d: FiguresView.of(f) for d, f in breakdown.departments.items()},
                   classes={c: FiguresView.of(f) for c, f in breakdown.classes.items()})


class PersonItem(BaseModel):
    userid: str
    name: str
    person_type: str
    department: str
    class_id: str | None


class MissingView(BaseModel):
    date: str
    count: int = Field(description="Everyone missing in scope (all pages)")
    items: list[PersonItem]
    next: str | None


class AbnormalItem(PersonItem):
    version: int
    reasons: list[Reason]
    temperature: float | None
    updated_at: str


class AbnormalView(BaseModel):
    date: str
    items: list[AbnormalItem]


class TrendQuery(RequestModel):
    from_: CampusDate = Field(alias="from")
    to: CampusDate
    department: ShortId | None = None
    class_: ShortId | None = Field(None, alias="class")


class TrendPoint(FiguresView):
    date: str


class TrendView(BaseModel):
    items: list[TrendPoint]


class ExportQuery(ScopeQuery):
    format: Literal["xlsx", "csv"] = "xlsx"


def _today() -> date:
    return deps.campus_today()


# -- consent ------------------------------------------------------------------------------------
def _consent_view(actor: Actor, given: str | None) -> ConsentView:
    version = deps.get_settings().health_consent_version
    return ConsentView(version=version, text=CONSENT_TEXT, given=given == version, given_version=given)


@area.route("/health/consent", "GET", summary="The health-data consent text and whether I gave it", policy=ANYONE,
            response=ConsentView)
def get_health_consent(actor: Actor) -> ConsentView:
    return _consent_view(actor, actor.health_consent)


@area.route("/health/consent", "POST", summary="Give consent to the processing of my health data",
            policy=ANYONE, body=ConsentBody, response=ConsentView, errors=(Conflict,))
def give_health_consent(body: ConsentBody, actor: Actor) -> ConsentView:
    """``version`` must be the version of the text shown (409 if a newer one exists). Required
    once per version before the first report."""
    return _consent_view(actor, deps.health_desk().give_consent(actor, body.version))


@area.route("/health/consent", "DELETE", summary="Withdraw my consent (filing stops until given again)",
            policy=ANYONE, status=204)
def withdraw_health_consent(actor: Actor) -> None:
    deps.health_desk().withdraw_consent(actor)


# -- reports ------------------------------------------------------------------------------------
@area.route("/health/reports", "POST", summary="File or correct today's health report", policy=ANYONE,
            body=HealthAnswers, response=FilingView, status=201, max_body=MAX_REPORT_BYTES, invalid=InvalidInput,
            errors=(ConsentRequired, Conflict))
def submit_health_report(body: HealthAnswers, actor: Actor) -> Response:
    """One report per person per campus day. The first is 201; filing again before the cutoff
    corrects it (200, the earlier version kept in its history); the same answers again change
    nothing (200, ``unchanged``: safe to retry). After the cutoff 409; without consent 403
    ``consent_required``; bad answers 400 with a reason per field. An abnormal report alerts the
    hospital and the people responsible for the person within seconds."""
    filing = deps.health_desk().file(actor, body)
    if filing.alert_deferred:
        logger.warning("health alert not queued; the sweep will", extra={"version": filing.report.version})
    view = FilingView(**ReportView.of(filing.report).model_dump(), outcome=filing.outcome,
                      earlier_versions=filing.history)
    return json_response(view.model_dump(mode="json"), 201 if filing.outcome == "created" else 200)


@area.route("/health/reports/today", "GET", summary="Whether today's report is done (and open)", policy=ANYONE,
            response=TodayView)
def get_today_report(actor: Actor) -> TodayView:
    today = deps.health_desk().today(actor)
    return TodayView(date=today.day, filed=today.filed, open=today.open, cutoff_at=today.cutoff_at,
                     consent_needed=today.consent_needed, report=ReportView.of(today.report) if today.report else None)


@area.route("/health/reports/prefill", "GET", summary="My latest answers of the last week, to start from",
            policy=ANYONE, response=PrefillView)
def get_report_prefill(actor: Actor) -> PrefillView:
    day, answers = deps.health_desk().prefill(actor)
    desk = deps.absence_desk()
    absence = desk.now_away(actor.userid)
    if absence is None:
        return PrefillView(from_date=day, answers=answers)
    answers = {k: v for k, v in answers.items() if k not in ("whereabouts", "current_city")}
    note = AwayNote(kind=absence.kind, id=absence.app_id, end=absence.end, overdue=absence.overdue_at(desk.clock()),
                    destination={"province": absence.province, "city": absence.city})
    return PrefillView(from_date=day, answers={**answers, **whereabouts_of(absence)}, away=note)


@area.route("/health/reports", "GET", summary="My reports of a period (at most 92 days), newest first",
            policy=ANYONE, query=PeriodQuery, response=ReportList)
def list_my_reports(query: PeriodQuery, actor: Actor) -> ReportList:
    return ReportList(items=[ReportView.of(r) for r in deps.health_desk().mine(actor, query.from_, query.to)])


# -- cases --------------------------------------------------------------------------------------
@area.route("/health/cases", "GET", summary="Health cases in my scope, oldest first (audited)", policy=ANYONE,
            query=CasesQuery, response=CasePage)
def list_health_cases(query: CasesQuery, actor: Actor) -> CasePage:
    """The hospital sees every case; HR staff, student affairs students, a department head their
    department, a counselor their classes; others an empty list."""
    cases, position = deps.health_cases().list(actor, query.state, query.limit, query.position())
    return CasePage(items=[CaseView.of(c) for c in cases], next=cursor(position))


@area.route("/health/cases/{case_id}", "GET", summary="A health case in my scope (audited)", policy=ANYONE,
            response=CaseView, errors=(NotFound,))
def get_health_case(case_id: str, actor: Actor) -> CaseView:
    _check_case_id(case_id)
    return CaseView.of(deps.health_cases().get(actor, case_id))


@area.route("/health/cases/{case_id}/events", "POST", summary="Record what the hospital did (hospital)",
            policy=HOSPITAL, body=CaseEventBody, response=CaseView, status=201, errors=(NotFound, Conflict, Forbidden))
def add_health_case_event(case_id: str, body: CaseEventBody, actor: Actor) -> CaseView:
    """``observing``, ``isolated``, ``referred`` or ``cleared`` (closes the case), with a note;
    the same circle as the alert is told. 409 on a closed case; 403 on one's own."""
    _check_case_id(case_id)
    return CaseView.of(deps.health_cases().add_event(actor, case_id, body.status, body.note))


def _check_case_id(case_id: str) -> None:
    if not re.fullmatch(CASE_ID, case_id):
        raise NotFound("No such case in your scope.")


# -- statistics ---------------------------------------------------------------------------------
@area.route("/health/overview", "GET", summary="Expected, reported, completion and abnormal counts in my scope",
            policy=ANYONE, query=ScopeQuery, response=OverviewView, errors=(Forbidden,))
def get_health_overview(query: ScopeQuery, actor: Actor) -> OverviewView:
    """By department and class, from counters kept on every filing. Leaders see the campus."""
    day = query.day or _today()
    return OverviewView.of(day, deps.health_stats().overview(actor, day, query.filter()))


@area.route("/health/missing", "GET", summary="Who in my scope has not reported (names only)", policy=ANYONE,
            query=MissingQuery, response=MissingView, errors=(Forbidden,))
def list_missing_reports(query: MissingQuery, actor: Actor) -> MissingView:
    day = query.day or _today()
    people = deps.health_stats().missing(actor, day, query.filter())
    after = query.position()
    rest = [p for p in people if after is None or p.userid > after]
    page = rest[:query.limit]
    return MissingView(date=day.isoformat(), count=len(people),
                       items=[PersonItem(userid=p.userid, name=p.name, person_type=p.person_type,
                                         department=p.department, class_id=p.class_id) for p in page],
                       next=cursor(page[-1].userid) if len(rest) > query.limit else None)


@area.route("/health/abnormal", "GET", summary="Abnormal reports of a day in my scope (audited)", policy=ANYONE,
            query=ScopeQuery, response=AbnormalView, errors=(Forbidden,))
def list_abnormal_reports(query: ScopeQuery, actor: Actor) -> AbnormalView:
    day = query.day or _today()
    found = deps.health_stats().abnormal(actor, day, query.filter())
    return AbnormalView(date=day.isoformat(), items=[
        AbnormalItem(userid=p.userid, name=p.name, person_type=p.person_type, department=p.department,
                     class_id=p.class_id, version=r.version, reasons=_reasons(r.reasons),
                     temperature=r.answers.get("temperature"), updated_at=r.updated_at) for p, r in found])


@area.route("/health/trend", "GET", summary="Daily figures of a period in my scope (at most 92 days)",
            policy=ANYONE, query=TrendQuery, response=TrendView, errors=(Forbidden,))
def get_health_trend(query: TrendQuery, actor: Actor) -> TrendView:
    series = deps.health_stats().trend(actor, query.from_, query.to, Filter(query.department, query.class_))
    return TrendView(items=[TrendPoint(date=d.isoformat(), **f.as_dict()) for d, f in series])


@area.route("/health/export", "GET", summary="A day's reports in my scope as a spreadsheet (audited)",
            policy=ANYONE, query=ExportQuery, errors=(Forbidden, BadRequest))
def export_health_reports(query: ExportQuery, actor: Actor, request: Request) -> Response:
    """One row per expected person in scope with their answers (or not reported); a leader gets
    figures per department and class instead. ``format=xlsx`` (send ``Accept`` with its type so
    API Gateway returns the bytes) or ``csv`` (UTF-8 with a byte-order mark, for Excel)."""
    check_accept(query.format, request.headers.get("accept"))
    day = query.day or _today()
    headers, rows = deps.health_stats().export_rows(actor, day, query.filter())
    return spreadsheet(query.format, f"health-{day.isoformat()}", day.isoformat(), headers, rows)


# -- the alert consumer -------------------------------------------------------------------------
class HealthAlert(BaseModel):
    """An abnormal report version to act on."""

    userid: str = Field(pattern=r"^[a-z0-9_.@-]{1,64}$")
    day: date
    version: int = Field(ge=1)


@area.blueprint.on_sqs_message(queue=HEALTH_ALERTS.name, batch_size=HEALTH_ALERTS.batch_size)
def raise_health_alert(event: SQSEvent) -> dict[str, Any]:
    """Open or update the person's health case and tell the hospital, HR or student affairs, the
    department head or the counselor. Each record stands alone (partial batch failures); a
    repeated record changes nothing; one that keeps failing goes to the DLQ."""
    return process_partial_response(event=event.to_dict(), record_handler=_raise_alert,
                                    processor=BatchProcessor(EventType.SQS), context=event.context)


def _raise_alert(record: SQSRecord) -> str:
    try:
        alert = HealthAlert.model_validate_json(record.body)
    except ValidationError as exc:
        # Locations only: a ValidationError's text would carry the values.
        problems = "; ".join(".".join(str(p) for p in e["loc"]) or "message"
                             for e in exc.errors(include_input=False, include_url=False))
        raise ValueError(f"unusable health alert ({problems})") from None
    outcome = deps.health_cases().raise_alert(alert.userid, alert.day.isoformat(), alert.version)
    logger.info("health alert", extra={"outcome": outcome, "version": alert.version})
    return outcome


# -- jobs ---------------------------------------------------------------------------------------
@area.blueprint.schedule(Rate(10, unit=Rate.MINUTES))
def send_report_reminders(event: CloudWatchEvent) -> dict[str, Any]:
    """When the day opens (00:00) record its expected counts; at the reminder times (default 08:00
    and 14:00) remind whoever has not reported; at the digest time (16:00) send each counselor
    their students still missing. Once per slot."""
    report = deps.health_stats().send_reminders().as_dict()
    logger.info("health reminders", extra={"job": report})
    return report


@area.blueprint.schedule(Rate(10, unit=Rate.MINUTES))
def send_daily_health_summary(event: CloudWatchEvent) -> dict[str, Any]:
    """At the summary time (default 20:00) send the day's figures to leaders and department heads."""
    report = deps.health_stats().send_summary().as_dict()
    logger.info("health summary", extra={"job": report})
    return report


@area.blueprint.schedule(Rate(5, unit=Rate.MINUTES))
def resend_health_alerts(event: CloudWatchEvent) -> dict[str, Any]:
    """Queue again alerts of abnormal reports whose filing stopped before queueing them."""
    report = deps.health_stats().resend_alerts().as_dict()
    if report["alerts_requeued"]:
        logger.warning("health alerts requeued", extra={"job": report})
    return report

