"""Notices (通知公告) and the teaching release column (教学发布专栏).

* ``POST /notices``: department heads (own department), student affairs (students), HR (staff),
  the IT centre and leaders (anyone) publish. The request stores the notice ``publishing`` and
  answers 202; the ``fan_out_notice`` consumer (queue ``campus-notice-fanout``) writes the
  recipients, sends them a WeCom textcard (mass send) and marks it ``published``;
* an approved ``teaching-release`` application publishes to its applicant's department (hook,
  through the same queue);
* ``GET /notices``: what is addressed to me, newest first, read or not; ``GET /notices/{id}``
  records my receipt once; ``GET /notices/{id}/receipts``: the publisher's read counts and who
  has not read it yet; ``GET /notices/published``: what I published.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any, Literal

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Response
from chalice.app import Request, SQSEvent
from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel, json_response
from chalicelib.api.schemas import IDEMPOTENCY_KEY, PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.db.notices import NoticeRepository
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.directory import ShortId
from chalicelib.domain.hall import on_transition
from chalicelib.domain.notices import (
    COLUMN_NAMES,
    MAX_BODY,
    MAX_TITLE,
    PUBLISHERS,
    Audience,
    Column,
    Delivery,
    Draft,
    Notice,
    NoticeBoard,
)
from chalicelib.domain.workflow import Application, Transition
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound
from chalicelib.integrations.queues import publish
from chalicelib.resources import NOTICE_FANOUT
from chalicelib.settings import get_settings

area = Area("notices")
ANYONE = authenticated()
PUBLISHER_ROLES = authenticated(*sorted(PUBLISHERS, key=lambda role: role.value))
PersonType = Literal["staff", "student", "third_party"]


# -- shapes -------------------------------------------------------------------------------------
class AudienceBody(RequestModel):
    """Who receives it: everyone in any of these departments, of any of these types, holding any of
    these roles (at least one entry)."""

    departments: list[ShortId] = Field(default_factory=list, max_length=50)
    types: list[PersonType] = Field(default_factory=list, max_length=3)
    roles: list[Role] = Field(default_factory=list, max_length=len(Role))


class NoticeBody(RequestModel):
    title: str = Field(min_length=1, max_length=MAX_TITLE, pattern=r"^[^\r\n]+$")
    body: str = Field(min_length=1, max_length=MAX_BODY)
    column: Column = "notice"
    audience: AudienceBody
    url: str | None = Field(None, max_length=2048, pattern=r"^https?://\S+$", description="A page to open")

    def draft(self) -> Draft:
        audience = Audience.of({"departments": self.audience.departments, "types": self.audience.types,
                                "roles": [role.value for role in self.audience.roles]})
        return Draft(title=self.title, body=self.body, column=self.column, audience=audience, url=self.url)


class AudienceView(BaseModel):
    departments: list[str]
    types: list[str]
    roles: list[str]
    member_types: list[str] = Field(description="Only these types of the departments' members (empty: all)")


class NoticeView(BaseModel):
    id: str
    column: Column
    column_name: str
    title: str
    body: str
    url: str | None
    attachments: list[str]
    publisher: str
    publisher_department: str
    published_at: str
    read: bool | None = Field(description="Whether I have read it; null when I am not a recipient (the publisher)")
    read_at: str | None

    @classmethod
    def of(cls, notice: Notice, delivery: Delivery | None) -> NoticeView:
        return cls(id=notice.notice_id, column=notice.column, column_name=COLUMN_NAMES[notice.column],
                   title=notice.title, body=notice.body, url=notice.url, attachments=list(notice.attachments),
                   publisher=notice.publisher, publisher_department=notice.publisher_department,
                   published_at=notice.published_at, read=delivery.read if delivery else None,
                   read_at=delivery.read_at if delivery else None)


class PublishedView(NoticeView):
    """A notice as its publisher sees it: with its audience and read counts."""

    audience: AudienceView
    status: Literal["publishing", "published"] = Field(
        description="publishing: accepted, recipients and the WeCom card on their way; published: done")
    recipients: int = Field(description="How many people received it (0 while publishing)")
    read_count: int
    source: str | None = Field(description="The teaching-release application it came from")

    @classmethod
    def of_published(cls, notice: Notice) -> PublishedView:
        return cls(**NoticeView.of(notice, None).model_dump(), audience=AudienceView(**notice.audience.as_dict()),
                   status=notice.state, recipients=notice.recipients, read_count=notice.read, source=notice.source)


class NoticeItem(BaseModel):
    id: str
    column: str
    title: str
    published_at: str
    read: bool

    @classmethod
    def of(cls, delivery: Delivery) -> NoticeItem:
        return cls(id=delivery.notice_id, column=delivery.column, title=delivery.title,
                   published_at=delivery.published_at, read=delivery.read)


class NoticePage(BaseModel):
    items: list[NoticeItem]
    next: str | None


class PublishedPage(BaseModel):
    items: list[PublishedView]
    next: str | None


class ReceiptsView(BaseModel):
    notice_id: str
    total: int
    read: int
    unread: int
    unread_userids: list[str] = Field(description="One page of the recipients who have not read it, by userid")
    next: str | None


class NoticesQuery(PageQuery):
    column: Column | None = Field(None, description="Only this column (teaching: 教学发布专栏)")


# -- collaborators ------------------------------------------------------------------------------
@functools.cache
def _store() -> NoticeRepository:
    return NoticeRepository()


def board() -> NoticeBoard:
    # A fan-out run holds its notice for less than the queue hides a message: a run that died
    # frees the notice before its message is delivered again (Lambda's timeout is far shorter).
    return NoticeBoard(store=_store(), directory=deps.directory(), notify=deps.notifier(), clock=_utc_now,
                       link=_link, claims=deps.kv(), queue_fan_out=_queue_fan_out,
                       lease_seconds=NOTICE_FANOUT.visibility_timeout * 5 / 6)


def _queue_fan_out(notice_id: str) -> None:
    publish(NOTICE_FANOUT, {"notice_id": notice_id})


def _link(notice_id: str) -> str | None:
    template = get_settings().notice_link_template
    return template.format(notice_id=notice_id) if template else None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@on_transition("notices")
def publish_teaching_release(app: Application, transition: Transition) -> None:
    """An approved teaching release is published to the applicant's department (once): stored
    ``publishing`` and queued for the fan-out consumer."""
    board().on_transition(app, transition)


# -- the fan-out consumer -----------------------------------------------------------------------
class FanOut(BaseModel):
    """A fan-out message: the notice to finish publishing."""

    notice_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")


@area.blueprint.on_sqs_message(queue=NOTICE_FANOUT.name, batch_size=NOTICE_FANOUT.batch_size)
def fan_out_notice(event: SQSEvent) -> dict[str, Any]:
    """Write the recipients of a notice accepted by ``POST /notices`` (or an approved teaching
    release), send them the WeCom card and mark it published. Every step is safe to repeat: a
    record that fails is delivered again and finishes the job (the DLQ after the queue's
    ``max_receive_count``); a message for a notice already published does nothing."""
    return process_partial_response(event=event.to_dict(), record_handler=_fan_out,
                                    processor=BatchProcessor(EventType.SQS), context=event.context)


def _fan_out(record: SQSRecord) -> None:
    board().fan_out(FanOut.model_validate_json(record.body).notice_id)


# -- routes -------------------------------------------------------------------------------------
@area.route("/notices", "POST", summary="Publish a notice to departments, person types and role holders",
            policy=PUBLISHER_ROLES, body=NoticeBody, response=PublishedView, status=202, errors=(Forbidden, Conflict))
def publish_notice(body: NoticeBody, actor: Actor, request: Request) -> Response:
    """Department heads reach their own department, student affairs the students, HR the staff,
    the IT centre and leaders anyone (403 beyond that). An audience of nobody active is a 422.

    Accepted, not yet delivered: 202 with the notice ``publishing`` (and ``Location`` of it); its
    recipients and their WeCom card follow within seconds, after which ``GET /notices/published``
    shows it ``published`` with the number of recipients.

    Send an ``Idempotency-Key`` header (1-64 letters, digits, ``-`` or ``_``) per notice: a retry
    with the same key within a day answers with the notice already accepted (and the header
    ``Idempotent-Replayed: true``) instead of publishing it twice; 409 while the first request
    with that key is still running."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise Invalid("The Idempotency-Key header is malformed.", {"Idempotency-Key": "1-64 of A-Z a-z 0-9 - _"})
    notice, replayed = board().publish(actor, body.draft(), key)
    headers = {"Location": f"/notices/{notice.notice_id}", **({"Idempotent-Replayed": "true"} if replayed else {})}
    return json_response(PublishedView.of_published(notice).model_dump(mode="json"), 202, headers)


@area.route("/notices", "GET", summary="Notices addressed to me, newest first, with my read flag", policy=ANYONE,
            query=NoticesQuery, response=NoticePage)
def list_my_notices(query: NoticesQuery, actor: Actor) -> NoticePage:
    items, position = board().addressed_to(actor, query.column, query.limit, query.position())
    return NoticePage(items=[NoticeItem.of(d) for d in items], next=cursor(position))


@area.route("/notices/published", "GET", summary="Notices I published, newest first, with read counts",
            policy=ANYONE, query=PageQuery, response=PublishedPage)
def list_published_notices(query: PageQuery, actor: Actor) -> PublishedPage:
    items, position = board().published_by(actor, query.limit, query.position())
    return PublishedPage(items=[PublishedView.of_published(n) for n in items], next=cursor(position))


@area.route("/notices/{notice_id}", "GET", summary="A notice (its recipients, recording my receipt; its "
            "publisher)", policy=ANYONE, response=NoticeView, errors=(NotFound,))
def get_notice(notice_id: str, actor: Actor) -> NoticeView:
    """Opening it the first time records that I read it; later opens change nothing."""
    notice, delivery = board().open(actor, notice_id)
    return NoticeView.of(notice, delivery)


@area.route("/notices/{notice_id}/receipts", "GET", summary="Read counts and who has not read it (its "
            "publisher)", policy=ANYONE, query=PageQuery, response=ReceiptsView, errors=(NotFound,))
def get_notice_receipts(notice_id: str, query: PageQuery, actor: Actor) -> ReceiptsView:
    receipts, position = board().receipts(actor, notice_id, query.limit, query.position())
    return ReceiptsView(notice_id=notice_id, total=receipts.total, read=receipts.read,
                        unread=receipts.total - receipts.read, unread_userids=receipts.unread_userids,
                        next=cursor(position))
