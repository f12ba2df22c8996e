"""Campus entry: the visitor's public form, door passes, and their sync to the door system.

* ``POST /visitor/entry-applications`` and ``GET``/``cancel`` by id with the lookup token: public
  (no login; visitors are not in the directory), rate limited per address and ID number;
* ``GET /entry/passes/{pass_id}`` (the security office, the host, the holder) and
  ``POST /entry/passes/{pass_id}/revoke`` (the security office);
* the hall's ``entry`` hook: approval grants a pass, rejection, withdrawal or cancellation revokes it;
* consumer ``sync_door_pass`` (queue ``campus-door-sync``) pushes a pass version to the door
  gateway, with backoff between tries;
* job ``expire_entry_passes`` (every 5 minutes) revokes passes whose window ended and queues
  again passes whose sync stalled.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from typing import Any, Literal

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Rate
from chalice.app import CloudWatchEvent, Request, SQSEvent
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from chalicelib.api import deps
from chalicelib.api.routing import PUBLIC, Area, RequestModel
from chalicelib.api.schemas import IDEMPOTENCY_KEY
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.door import TOMBSTONE, DoorPass, RetryLater
from chalicelib.domain.hall import on_transition
from chalicelib.domain.workflow import Application, Transition
from chalicelib.errors import BadRequest, Conflict, NotFound, RateLimited
from chalicelib.integrations.queues import retry_after
from chalicelib.observability import logger
from chalicelib.resources import DOOR_SYNC

area = Area("entry")
ANYONE = authenticated()
SECURITY = authenticated(Role.SECURITY)
APP_ID = r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{12}$"


# -- shapes -------------------------------------------------------------------------------------
class VisitorForm(RequestModel):
    """The campus-entry form (入校申请) as a visitor fills it in."""

    name: str = Field(min_length=1, max_length=50)
    id_number: str = Field(min_length=15, max_length=18, description="18-digit resident ID (GB 11643)")
    mobile: str = Field(min_length=11, max_length=20, description="mainland mobile number")
    organisation: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)
    host: str = Field(min_length=1, max_length=64, description="userid of the member of staff who receives you")
    visit_start: AwareDatetime
    visit_end: AwareDatetime
    gates: list[Literal["east", "west", "south", "north"]] = Field(min_length=1, max_length=4)
    vehicle_plate: str | None = Field(None, max_length=10)
    health_code: Literal["green", "yellow", "red"]
    pledge: bool


class TokenQuery(RequestModel):
    token: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class CancelBody(RequestModel):
    token: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    reason: str = Field("", max_length=200)


class RevokeBody(RequestModel):
    reason: str = Field(min_length=1, max_length=200)


class VisitorStatus(BaseModel):
    """What a visitor learns about their application: its status, never the form back."""

    id: str
    status: str
    step: str | None = Field(description="the step waiting for a decision, while pending")
    visit_start: str
    visit_end: str
    gates: list[str]
    filed_at: str
    updated_at: str
    pass_state: Literal["granted", "revoked"] | None = None
    pass_sync: Literal["pending", "synced", "failed"] | None = None

    @classmethod
    def of(cls, app: Application, door_pass: DoorPass | None) -> VisitorStatus:
        return cls(id=app.app_id, status=app.status,
                   step=app.chain[app.step].name if app.status == "pending" and app.step is not None else None,
                   visit_start=str(app.data.get("visit_start")), visit_end=str(app.data.get("visit_end")),
                   gates=list(app.data.get("gates") or ()), filed_at=app.filed_at, updated_at=app.updated_at,
                   pass_state=door_pass.state if door_pass and door_pass.kind != TOMBSTONE else None,
                   pass_sync=door_pass.sync_status if door_pass and door_pass.kind != TOMBSTONE else None)


class VisitorReceipt(VisitorStatus):
    token: str = Field(description="keep it: with the id it reads the status or cancels; shown once")


class PassView(BaseModel):
    pass_id: str
    version: int
    person: str
    name: str
    kind: str
    host: str | None
    credential_kind: str
    credential: str = Field(description="masked")
    gates: list[str]
    valid_from: str
    valid_to: str
    state: Literal["granted", "revoked"]
    revoked_because: str | None
    sync_status: Literal["pending", "synced", "failed"]
    synced_version: int
    sync_error: str | None
    updated_at: str

    @classmethod
    def of(cls, item: DoorPass) -> PassView:
        return cls(pass_id=item.pass_id, version=item.version, person=item.person, name=item.name, kind=item.kind,
                   host=item.host, credential_kind=item.credential_kind, credential=item.credential_masked,
                   gates=list(item.gates), valid_from=item.valid_from, valid_to=item.valid_to, state=item.state,
                   revoked_because=item.revoked_because, sync_status=item.sync_status,
                   synced_version=item.synced_version, sync_error=item.sync_error, updated_at=item.updated_at)


# -- the visitor --------------------------------------------------------------------------------
@area.route("/visitor/entry-applications", "POST", summary="Apply to enter the campus (visitors; no login)",
            policy=PUBLIC, body=VisitorForm, response=VisitorReceipt, status=201,
            errors=(RateLimited, BadRequest, Conflict),
            max_body=8 * 1024)
def apply_for_entry(body: VisitorForm, request: Request) -> VisitorReceipt:
    """The host, then the security office decide; once both approve, the ID card opens the chosen
    gates inside the window. Keep the returned ``token``: it is the only way to read the status
    or cancel. At most ``ENTRY_MAX_DAYS`` days, not in the past; the host must be an active member
    of staff. Send an ``Idempotency-Key`` per submission: a resent submission files nothing new and
    answers the same application with a fresh token."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1-64 letters, digits, '-' or '_'.")
    data = body.model_dump(mode="json", exclude_none=True)
    data["visit_start"], data["visit_end"] = body.visit_start.isoformat(), body.visit_end.isoformat()
    app, token = deps.entry_desk().apply(data, _source_ip(request), key)
    logger.info("visitor application filed", extra={"app_id": app.app_id})
    return VisitorReceipt(**VisitorStatus.of(app, None).model_dump(), token=token)


@area.route("/visitor/entry-applications/{app_id}", "GET", summary="My application's status (visitors: token)",
            policy=PUBLIC, query=TokenQuery, response=VisitorStatus, errors=(NotFound,))
def get_entry_application(app_id: str, query: TokenQuery) -> VisitorStatus:
    """An unknown id and a wrong token are the same 404."""
    _check_app_id(app_id)
    desk = deps.entry_desk()
    app = desk.lookup(app_id, query.token)
    return VisitorStatus.of(app, desk.pass_of(app.app_id))


@area.route("/visitor/entry-applications/{app_id}/cancel", "POST",
            summary="Withdraw or cancel my application (visitors: token); an issued pass is revoked",
            policy=PUBLIC, body=CancelBody, response=VisitorStatus, errors=(NotFound, Conflict))
def cancel_entry_application(app_id: str, body: CancelBody) -> VisitorStatus:
    _check_app_id(app_id)
    desk = deps.entry_desk()
    app = desk.cancel(app_id, body.token, body.reason)
    return VisitorStatus.of(app, desk.pass_of(app.app_id))


def _source_ip(request: Request) -> str:
    return str(((request.context or {}).get("identity") or {}).get("sourceIp") or "unknown")


def _check_app_id(app_id: str) -> None:
    if not _looks_like_app_id(app_id):
        raise NotFound("No such application, or the token does not match.")


# -- passes -------------------------------------------------------------------------------------
@area.route("/entry/passes/{pass_id}", "GET", summary="A door pass and its sync status (security, host, holder)",
            policy=ANYONE, response=PassView, errors=(NotFound,))
def get_door_pass(pass_id: str, actor: Actor) -> PassView:
    if not _looks_like_app_id(pass_id):
        raise NotFound("No such pass.")
    return PassView.of(deps.door_passes().read(actor, pass_id))


@area.route("/entry/passes/{pass_id}/revoke", "POST", summary="Revoke a door pass now (security)",
            policy=SECURITY, body=RevokeBody, response=PassView, errors=(NotFound, Conflict))
def revoke_door_pass(pass_id: str, body: RevokeBody, actor: Actor) -> PassView:
    """The gates stop opening for it as soon as the door system has the revoke (``sync_status``)."""
    if not _looks_like_app_id(pass_id):
        raise NotFound("No such pass.")
    return PassView.of(deps.door_passes().revoke_now(actor, pass_id, body.reason))


def _looks_like_app_id(value: str) -> bool:
    return re.match(APP_ID, value) is not None


@on_transition("entry")
def follow_entry_application(app: Application, transition: Transition) -> None:
    """Approved: grant the door pass. Rejected, withdrawn or cancelled: revoke it."""
    deps.entry_desk().on_transition(app, transition)


# -- the door-sync consumer ---------------------------------------------------------------------
class PassVersion(BaseModel):
    pass_id: str = Field(pattern=APP_ID)
    version: int = Field(ge=1)


@area.blueprint.on_sqs_message(queue=DOOR_SYNC.name, batch_size=DOOR_SYNC.batch_size)
def sync_door_pass(event: SQSEvent) -> dict[str, Any]:
    """Push pass versions to the door gateway. Each record stands alone (partial batch failures);
    an unavailable gateway makes the record come back later (30 s, 60 s, 120 s... up to 15 min),
    and the last try marks the pass ``failed`` and tells the security office (the expiry job keeps
    queueing failed passes, so they sync once the gateway is back)."""
    passes = deps.door_passes()

    def handle(record: SQSRecord) -> str:
        try:
            message = PassVersion.model_validate_json(record.body)
        except ValidationError:
            raise ValueError("unusable door-sync message") from None
        attempt = int(record.attributes.approximate_receive_count or 1)
        try:
            outcome = passes.sync(message.pass_id, message.version, attempt)
        except RetryLater as retry:
            retry_after(DOOR_SYNC, record.receipt_handle, retry.delay)
            logger.warning("door gateway unavailable", extra={"pass_id": message.pass_id, "attempt": attempt,
                                                             "retry_in": retry.delay})
            raise
        logger.info("door sync", extra={"pass_id": message.pass_id, "version": message.version, "outcome": outcome})
        return outcome

    return process_partial_response(event=event.to_dict(), record_handler=handle,
                                    processor=BatchProcessor(EventType.SQS), context=event.context)


# -- the expiry job -----------------------------------------------------------------------------
@area.blueprint.schedule(Rate(5, unit=Rate.MINUTES))
def expire_entry_passes(event: CloudWatchEvent) -> dict[str, Any]:
    """Revoke granted passes whose window has ended, and queue again passes whose sync stalled.

    "Now" is the event's scheduled time (EventBridge's ``time``), so a late or replayed run acts
    for the moment it was meant for."""
    now = _event_time(event)
    passes = dataclasses.replace(deps.door_passes(), clock=lambda: now)
    report = {"revoked": passes.expire(), "requeued": passes.sweep()}
    logger.info("entry passes", extra={"job": report})
    return report


def _event_time(event: CloudWatchEvent) -> datetime:
    try:
        return datetime.fromisoformat(str(event.time).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(timezone.utc)

