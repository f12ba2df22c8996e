"""Notices (通知公告) and the teaching release column (教学发布专栏).

* ``POST /notices``: department heads (own department), student affairs (students), HR (staff),
  the IT centre and leaders (anyone) publish; recipients get a WeCom textcard (mass send);
* an approved ``teaching-release`` application publishes to its applicant's department (hook);
* ``GET /notices``: what is addressed to me, newest first, read or not; ``GET /notices/{id}``
  records my receipt once; ``GET /notices/{id}/receipts``: the publisher's read counts and who
  has not read it yet; ``GET /notices/published``: what I published.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.schemas import PageQuery, cursor
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
from chalicelib.errors import Forbidden, NotFound
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
    recipients: int
    read_count: int
    source: str | None = Field(description="The teaching-release application it came from")

    @classmethod
    def of_published(cls, notice: Notice) -> PublishedView:
        return cls(**NoticeView.of(notice, None).model_dump(), audience=AudienceView(**notice.audience.as_dict()),
                   recipients=notice.recipients, read_count=notice.read, source=notice.source)


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
    return NoticeBoard(store=_store(), directory=deps.directory(), notify=deps.notifier(), clock=_utc_now,
                       link=_link)


def _link(notice_id: str) -> str | None:
    template = get_settings().notice_link_template
    return template.format(notice_id=notice_id) if template else None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@on_transition("notices")
def publish_teaching_release(app: Application, transition: Transition) -> None:
    """An approved teaching release is published to the applicant's department (once)."""
    board().on_transition(app, transition)


# -- routes -------------------------------------------------------------------------------------
@area.route("/notices", "POST", summary="Publish a notice to departments, person types and role holders",
            policy=PUBLISHER_ROLES, body=NoticeBody, response=PublishedView, status=201, errors=(Forbidden,))
def publish_notice(body: NoticeBody, actor: Actor) -> PublishedView:
    """Department heads reach their own department, student affairs the students, HR the staff,
    the IT centre and leaders anyone (403 beyond that). An audience of nobody active is a 422."""
    return PublishedView.of_published(board().publish(actor, body.draft()))


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
