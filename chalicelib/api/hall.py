"""The online service hall: the catalogue, applications, approvals and uploads."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Response
from chalice.app import Request, SQSEvent

from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel, json_response
from chalicelib.api.schemas import IDEMPOTENCY_KEY, PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.forms import CATEGORY_NAMES, Category, FieldSpec, ServiceDefinition
from chalicelib.domain.hall import visible_services
from chalicelib.domain.statistics import ServiceStatistics, service_statistics
from chalicelib.domain.uploads import ALLOWED_TYPES, PENDING_TAGGING, new_key
from chalicelib.domain.workflow import Application
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound, UpstreamUnavailable
from chalicelib.integrations import storage
from chalicelib.resources import HALL_HOOKS
from chalicelib.settings import get_settings

area = Area("hall")
ANYONE = authenticated()


# -- shapes -------------------------------------------------------------------------------------
class ServiceSummary(BaseModel):
    id: str
    name: str
    category: Category
    category_name: str
    description: str
    version: int
    filed_at: str | None = Field(description="Its own endpoint, when it is not filed as a plain application")

    @classmethod
    def of(cls, definition: ServiceDefinition) -> ServiceSummary:
        return cls(id=definition.id, name=definition.name, category=definition.category,
                   category_name=CATEGORY_NAMES[definition.category], description=definition.description,
                   version=definition.version, filed_at=definition.filed_at)


class StepSummary(BaseModel):
    name: str
    approver: str
    when: str | None = None


class ServiceForm(ServiceSummary):
    """What the H5 needs to render the form and show the chain."""

    fields: list[FieldSpec]
    steps: list[StepSummary]

    @classmethod
    def of(cls, definition: ServiceDefinition) -> ServiceForm:
        return cls(**ServiceSummary.of(definition).model_dump(), fields=list(definition.fields),
                   steps=[StepSummary(name=s.name, approver=s.approver, when=s.when) for s in definition.steps])


class Services(BaseModel):
    items: list[ServiceSummary]


class StepView(BaseModel):
    name: str
    authority: str


class TransitionView(BaseModel):
    at: str
    actor: str
    verb: str
    from_status: str | None
    to_status: str
    step: int | None
    comment: str
    authority: str | None = None


class ApplicationView(BaseModel):
    id: str
    service_id: str
    service_name: str
    service_version: int
    applicant: str
    status: str
    step: int | None = Field(description="Index of the current step while pending")
    waiting_for: str | None = Field(description="The authority the current step waits for")
    version: int
    filed_at: str
    updated_at: str
    data: dict[str, Any]
    chain: list[StepView]
    history: list[TransitionView]

    @classmethod
    def of(cls, app: Application) -> ApplicationView:
        return cls(id=app.app_id, service_id=app.service_id, service_name=app.service_name,
                   service_version=app.service_version, applicant=app.applicant.userid, status=app.status,
                   step=app.step, waiting_for=app.current_authority, version=app.version, filed_at=app.filed_at,
                   updated_at=app.updated_at, data=dict(app.data),
                   chain=[StepView(name=s.name, authority=s.authority) for s in app.chain],
                   history=[TransitionView(**vars(t)) for t in app.history])


class ApplicationSummary(BaseModel):
    """An application in a list: no form data (opening one is a read, audited when not one's own)."""

    id: str
    service_id: str
    service_name: str
    applicant: str
    status: str
    step: int | None
    step_name: str | None
    waiting_for: str | None
    filed_at: str
    updated_at: str

    @classmethod
    def of(cls, app: Application) -> ApplicationSummary:
        step_name = app.chain[app.step].name if app.step is not None else None
        return cls(id=app.app_id, service_id=app.service_id, service_name=app.service_name,
                   applicant=app.applicant.userid, status=app.status, step=app.step, step_name=step_name,
                   waiting_for=app.current_authority, filed_at=app.filed_at, updated_at=app.updated_at)


class ApplicationPage(BaseModel):
    items: list[ApplicationSummary]
    next: str | None


class ServicesQuery(RequestModel):
    category: Category | None = None
    q: str | None = Field(None, min_length=1, max_length=40, description="Search in names and descriptions")


class Form(RequestModel):
    data: dict[Annotated[str, Field(max_length=40)], Any] = Field(
        max_length=40, description="Field name -> value, as the service's form describes")


class DecisionBody(RequestModel):
    decision: Literal["approve", "reject", "return"]
    comment: str = Field("", max_length=500)


UploadType = Literal[tuple(ALLOWED_TYPES)]  # type: ignore[valid-type]


class UploadRequest(RequestModel):
    content_type: UploadType = Field(description="The file's media type")
    size: int = Field(ge=1, description="Bytes; the upload must be exactly this long")


class UploadSlot(BaseModel):
    key: str = Field(description="Put this in the form's attachment field once the upload is done")
    url: str = Field(description="PUT the file here with exactly these headers, before expires_at")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="Send each with the PUT: they are signed (Content-Type; the "
                                    "x-amz-tagging that marks the file pending until a form holds it; "
                                    "If-None-Match, so a second PUT is refused with 412: the file is there)")
    expires_at: str


# -- the catalogue ------------------------------------------------------------------------------
@area.route("/services", "GET", summary="The services I may apply for", policy=ANYONE, query=ServicesQuery,
            response=Services)
def list_services(query: ServicesQuery, actor: Actor) -> Services:
    found = visible_services(deps.catalogue().current_all(), actor, query.category, query.q)
    return Services(items=[ServiceSummary.of(d) for d in found])


@area.route("/services/{service_id}", "GET", summary="A service's form and approval chain", policy=ANYONE,
            response=ServiceForm, errors=(NotFound,))
def get_service(service_id: str, actor: Actor) -> ServiceForm:
    definition = deps.catalogue().current(service_id)
    if not definition.applicants.admits(actor) and not actor.has(Role.IT_ADMIN):
        raise NotFound(f"No service {service_id!r} for you.")
    return ServiceForm.of(definition)


@area.route("/admin/services/{service_id}", "PUT", summary="Create or change a service (a new version)",
            policy=authenticated(Role.IT_ADMIN), body=ServiceDefinition, response=ServiceForm,
            errors=(Conflict,))
def put_service(service_id: str, body: ServiceDefinition, actor: Actor) -> ServiceForm:
    """The definition is stored as the next version; applications in flight keep the version they
    were filed under. ``version`` in the body is ignored."""
    if body.id != service_id:
        raise Invalid("The id in the body must match the path.", {"id": "differs from the path"})
    return ServiceForm.of(deps.catalogue().put(body, actor, datetime.now(timezone.utc)))


# -- applications -------------------------------------------------------------------------------
@area.route("/services/{service_id}/applications", "POST", summary="File an application", policy=ANYONE,
            body=Form, response=ApplicationView, status=201, errors=(NotFound, Conflict, UpstreamUnavailable))
def file_application(service_id: str, body: Form, actor: Actor, request: Request) -> Response:
    """Invalid forms are refused with a reason per field (``data.<field>``); nothing is written.

    Send an ``Idempotency-Key`` header (1-64 letters, digits, ``-`` or ``_``) per submission: a
    retry with the same key within a day answers with the application already filed (and the
    header ``Idempotent-Replayed: true``) instead of filing it twice."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise Invalid("The Idempotency-Key header is malformed.", {"Idempotency-Key": "1-64 of A-Z a-z 0-9 - _"})
    app, replayed = deps.hall().file(actor, service_id, body.data, key)
    return json_response(ApplicationView.of(app).model_dump(mode="json"), 201,
                         {"Idempotent-Replayed": "true"} if replayed else None)


@area.route("/applications", "GET", summary="My applications, newest first", policy=ANYONE, query=PageQuery,
            response=ApplicationPage)
def list_my_applications(query: PageQuery, actor: Actor) -> ApplicationPage:
    items, position = deps.hall().mine(actor, query.limit, query.position())
    return ApplicationPage(items=[ApplicationSummary.of(a) for a in items], next=cursor(position))


@area.route("/applications/{app_id}", "GET", summary="An application (its applicant, approvers and people "
            "copied in)", policy=ANYONE, response=ApplicationView, errors=(NotFound,))
def get_application(app_id: str, actor: Actor) -> ApplicationView:
    return ApplicationView.of(deps.hall().read(actor, app_id))


@area.route("/applications/{app_id}", "PUT", summary="Edit and resend an application returned to me",
            policy=ANYONE, body=Form, response=ApplicationView,
            errors=(NotFound, Forbidden, Conflict, UpstreamUnavailable))
def resubmit_application(app_id: str, body: Form, actor: Actor) -> ApplicationView:
    return ApplicationView.of(deps.hall().resubmit(actor, app_id, body.data))


@area.route("/applications/{app_id}/withdraw", "POST", summary="Withdraw my pending or returned application",
            policy=ANYONE, response=ApplicationView, errors=(NotFound, Forbidden, Conflict))
def withdraw_application(app_id: str, actor: Actor) -> ApplicationView:
    return ApplicationView.of(deps.hall().withdraw_or_cancel(actor, app_id, "withdraw"))


@area.route("/applications/{app_id}/cancel", "POST", summary="Cancel my approved application", policy=ANYONE,
            response=ApplicationView, errors=(NotFound, Forbidden, Conflict))
def cancel_application(app_id: str, actor: Actor) -> ApplicationView:
    return ApplicationView.of(deps.hall().withdraw_or_cancel(actor, app_id, "cancel"))


class FileQuery(RequestModel):
    key: str = Field(max_length=100, pattern=r"^uploads/[0-9a-z./]+$", description="An attachment key of the form")


class FileLink(BaseModel):
    url: str = Field(description="GET it before expires_at")
    expires_at: str


@area.route("/applications/{app_id}/files", "GET", summary="A short-lived link to one attachment of an application",
            policy=ANYONE, query=FileQuery, response=FileLink, errors=(NotFound,))
def get_application_file(app_id: str, query: FileQuery, actor: Actor) -> FileLink:
    """For whoever may read the application (the read is audited when it is not one's own)."""
    key = deps.hall().attachment(actor, app_id, query.key)
    lifetime = timedelta(minutes=get_settings().upload_url_minutes)
    url = storage.presign_get(deps.uploads_bucket(), key, int(lifetime.total_seconds()))
    return FileLink(url=url, expires_at=(datetime.now(timezone.utc) + lifetime).isoformat(timespec="seconds"))


# -- approvers ----------------------------------------------------------------------------------
@area.route("/approvals", "GET", summary="Applications waiting for my decision, oldest first", policy=ANYONE,
            query=PageQuery, response=ApplicationPage)
def list_my_approvals(query: PageQuery, actor: Actor) -> ApplicationPage:
    items, position = deps.hall().todo(actor, query.limit, query.position())
    return ApplicationPage(items=[ApplicationSummary.of(a) for a in items], next=cursor(position))


@area.route("/applications/{app_id}/decisions", "POST", summary="Approve, reject or return the current step",
            policy=ANYONE, body=DecisionBody, response=ApplicationView, errors=(NotFound, Forbidden, Conflict))
def decide_application(app_id: str, body: DecisionBody, actor: Actor) -> ApplicationView:
    """Two approvers deciding at once: one succeeds, the other gets 409 and reloads."""
    return ApplicationView.of(deps.hall().decide(actor, app_id, body.decision, body.comment))


# -- uploads ------------------------------------------------------------------------------------
@area.route("/uploads", "POST", summary="A presigned URL to upload one attachment", policy=ANYONE,
            body=UploadRequest, response=UploadSlot, status=201)
def create_upload(body: UploadRequest, actor: Actor) -> UploadSlot:
    settings = get_settings()
    if body.size > settings.upload_max_bytes:
        raise Invalid("The file is too large.", {"size": f"at most {settings.upload_max_bytes} bytes"})
    now = datetime.now(timezone.utc)
    lifetime = timedelta(minutes=settings.upload_url_minutes)
    key = new_key(body.content_type, now)
    # The slot outlives the URL by a day so a form filed a little later can still use the file.
    deps.uploads().open(key, actor.userid, body.content_type, body.size, now, lifetime + timedelta(days=1))
    url, headers = storage.presign_put(deps.uploads_bucket(), key, body.content_type, body.size,
                                       int(lifetime.total_seconds()), PENDING_TAGGING)
    return UploadSlot(key=key, url=url, headers=headers,
                      expires_at=(now + lifetime).isoformat(timespec="seconds"))


# -- hooks that failed inline ------------------------------------------------------------------
class HookRetry(BaseModel):
    app_id: str
    version: int = Field(ge=1)


@area.blueprint.on_sqs_message(queue=HALL_HOOKS.name, batch_size=HALL_HOOKS.batch_size)
def rerun_transition_hooks(event: SQSEvent) -> dict[str, Any]:
    """Send the messages and run the area hooks of a transition whose effects failed when it was
    stored (both are idempotent, so what already happened is not repeated)."""
    return process_partial_response(event=event.to_dict(), record_handler=_rerun_hooks,
                                    processor=BatchProcessor(EventType.SQS), context=event.context)


def _rerun_hooks(record: SQSRecord) -> None:
    retry = HookRetry.model_validate_json(record.body)
    app = deps.applications().get(retry.app_id)
    if app is None or retry.version > len(app.history):
        raise ValueError("no such application transition")  # to the DLQ after the retries
    deps.hall().effects(app, retry.version)


# -- statistics ---------------------------------------------------------------------------------
MAX_STATISTICS_DAYS = 92  # a quarter: the statistics read every application filed in the period


class PeriodQuery(RequestModel):
    from_: date = Field(alias="from", description="First campus day (YYYY-MM-DD)")
    to: date = Field(description="Last campus day, included (the period spans at most 92 days)")


@area.route("/statistics/services/{service_id}", "GET", summary="A service's figures over a period",
            policy=authenticated(Role.LEADER, Role.IT_ADMIN, Role.STUDENT_AFFAIRS, Role.HR), query=PeriodQuery,
            response=ServiceStatistics, errors=(NotFound,))
def get_service_statistics(service_id: str, query: PeriodQuery) -> ServiceStatistics:
    """Applications filed in the period: counts by status, median hours from filing to decision, and
    what is still open, per approver authority. Aggregates only."""
    if query.to < query.from_ or (query.to - query.from_).days >= MAX_STATISTICS_DAYS:
        raise Invalid(f"The period must run forwards and span at most {MAX_STATISTICS_DAYS} days.",
                      {"to": "before from or too far"})
    deps.catalogue().current(service_id)  # 404 for an unknown service
    tz = get_settings().tz
    since = datetime.combine(query.from_, time(), tz).astimezone(timezone.utc).isoformat(timespec="milliseconds")
    until = datetime.combine(query.to + timedelta(days=1), time(), tz).astimezone(timezone.utc).isoformat(
        timespec="milliseconds")
    return service_statistics(service_id, deps.applications().figures_of(service_id, since, until))
