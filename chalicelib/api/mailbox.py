"""The mailbox to the head of student affairs (学工部长信箱): private letters, replies, closing.

A letter is seen by its writer and the mailbox's owners (the student affairs role) only: to anyone
else it answers 404, like an unknown id. The rules live in :mod:`chalicelib.domain.mailbox`.
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
from chalicelib.db.mailbox import LetterRepository
from chalicelib.domain.access import Actor
from chalicelib.domain.mailbox import Letter, LetterStatus, LetterSummary, Mailbox, Seen
from chalicelib.errors import Conflict, Forbidden, NotFound

area = Area("mailbox")
ANYONE = authenticated()


# -- wiring -------------------------------------------------------------------------------------
def mailbox() -> Mailbox:
    """The mailbox, wired to its store, the directory, the notifications queue and the clock."""
    return Mailbox(letters=letter_repository(), people=deps.directory(), notify=deps.notifier(), clock=utc_now)


@functools.cache
def letter_repository() -> LetterRepository:
    return LetterRepository()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- shapes -------------------------------------------------------------------------------------
class WriterView(BaseModel):
    userid: str
    name: str | None


class ReplyView(BaseModel):
    at: str
    by: Literal["owner", "writer"] = Field(description="owner: student affairs answered; writer: a follow-up")
    author: str | None = Field(description="Which owner answered: shown to the owners only")
    body: str


class LetterSummaryView(BaseModel):
    id: str
    subject: str
    anonymous: bool
    status: LetterStatus
    version: int
    created_at: str
    updated_at: str
    replies: int
    writer: WriterView | None = Field(description="Absent where the viewer may not know (anonymous letters)")

    @classmethod
    def of(cls, seen: Seen) -> LetterSummaryView:
        letter: LetterSummary = seen.letter
        return cls(id=letter.letter_id, subject=letter.subject, anonymous=letter.anonymous, status=letter.status,
                   version=letter.version, created_at=letter.created_at, updated_at=letter.updated_at,
                   replies=letter.reply_count, writer=_writer(seen))


class LetterView(BaseModel):
    id: str
    subject: str
    body: str
    anonymous: bool
    status: LetterStatus
    version: int
    created_at: str
    updated_at: str
    closed_by: Literal["writer", "owner"] | None
    writer: WriterView | None = Field(description="Absent where the viewer may not know (anonymous letters)")
    replies: list[ReplyView]

    @classmethod
    def of(cls, seen: Seen) -> LetterView:
        letter: Letter = seen.letter
        replies = [ReplyView(at=r.at, by="owner" if r.by_owner else "writer", body=r.body,
                             author=r.author if seen.authors_shown else None) for r in letter.replies]
        return cls(id=letter.letter_id, subject=letter.subject, body=letter.body, anonymous=letter.anonymous,
                   status=letter.status, version=letter.version, created_at=letter.created_at,
                   updated_at=letter.updated_at, closed_by=letter.closed_by, writer=_writer(seen), replies=replies)


def _writer(seen: Seen) -> WriterView | None:
    return WriterView(userid=seen.writer, name=seen.writer_name) if seen.writer else None


class LetterPage(BaseModel):
    items: list[LetterSummaryView]
    next: str | None


class LetterBody(RequestModel):
    subject: str = Field(min_length=1, max_length=60)
    body: str = Field(min_length=1, max_length=2000)
    anonymous: bool = Field(False, strict=True, description="Hide who wrote it from everyone but the owners")


class ReplyBody(RequestModel):
    body: str = Field(min_length=1, max_length=2000)


class LetterQuery(PageQuery):
    status: LetterStatus | None = None


# -- routes -------------------------------------------------------------------------------------
@area.route("/mailbox/letters", "POST", summary="Write to the head of student affairs", policy=ANYONE,
            body=LetterBody, response=LetterView, status=201, errors=(Forbidden,))
def write_letter(body: LetterBody, actor: Actor) -> LetterView:
    """Students and staff only. The owners are told a letter arrived, never by whom."""
    return LetterView.of(mailbox().write(actor, body.subject, body.body, body.anonymous))


@area.route("/mailbox/letters", "GET", summary="My letters (the owners: the whole mailbox), newest first",
            policy=ANYONE, query=LetterQuery, response=LetterPage)
def list_letters(query: LetterQuery, actor: Actor) -> LetterPage:
    page = mailbox().list_letters(actor, query.status, query.limit, query.position())
    return LetterPage(items=[LetterSummaryView.of(s) for s in page.items], next=cursor(page.next))


@area.route("/mailbox/letters/{letter_id}", "GET", summary="A letter and its replies (its writer or the owners)",
            policy=ANYONE, response=LetterView, errors=(NotFound,))
def get_letter(letter_id: str, actor: Actor) -> LetterView:
    """An owner's first read marks the letter read."""
    return LetterView.of(mailbox().read(actor, letter_id))


@area.route("/mailbox/letters/{letter_id}/replies", "POST", summary="Reply (an owner) or follow up (the writer)",
            policy=ANYONE, body=ReplyBody, response=LetterView, status=201, errors=(NotFound, Conflict))
def reply_to_letter(letter_id: str, body: ReplyBody, actor: Actor) -> LetterView:
    """An owner's reply marks the letter replied and tells the writer; 409 on a closed letter."""
    return LetterView.of(mailbox().reply(actor, letter_id, body.body))


@area.route("/mailbox/letters/{letter_id}/close", "POST", summary="Close a letter (its writer or an owner)",
            policy=ANYONE, response=LetterView, errors=(NotFound, Conflict))
def close_letter(letter_id: str, actor: Actor) -> LetterView:
    return LetterView.of(mailbox().close(actor, letter_id))
