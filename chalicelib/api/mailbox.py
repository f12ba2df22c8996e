"""The mailbox to the head of student affairs (学工部长信箱): private letters, replies, closing,
and forwarding to the offices that handle them.

A letter is seen by its writer, the mailbox's owners (the student affairs role) and the holders of
an office it was forwarded to (who never learn the writer of an anonymous letter): to anyone else it
answers 404, like an unknown id. The rules live in :mod:`chalicelib.domain.mailbox`.
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
from chalicelib.domain.mailbox import Capacity, LetterStatus, Mailbox, Seen
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
    by: Literal["owner", "writer", "handler"] = Field(description="owner: student affairs; writer: a follow-up; "
                                                      "handler: the office the letter was forwarded to")
    author: str | None = Field(description="Which owner or handler wrote: shown to staff only, not to the writer")
    office: str | None = Field(description="Set on internal notes: the thread between student affairs and this "
                                           "office (never shown to the writer); null: the conversation with the "
                                           "writer")
    body: str


class ForwardView(BaseModel):
    to: str = Field(description="The office's authority, e.g. role:logistics or dept_head:cs")
    by: str = Field(description="The owner who forwarded it")
    at: str
    note: str | None


class LetterSummaryView(BaseModel):
    id: str
    subject: str
    anonymous: bool
    status: LetterStatus
    version: int
    created_at: str
    updated_at: str
    replies: int = Field(description="The writer and the owners: replies in their conversation; a handler: the "
                                     "notes in their offices' threads")
    writer: WriterView | None = Field(description="Absent where the viewer may not know (anonymous letters)")

    @classmethod
    def of(cls, seen: Seen) -> LetterSummaryView:
        letter = seen.letter
        return cls(id=letter.letter_id, subject=letter.subject, anonymous=letter.anonymous, status=letter.status,
                   version=letter.version, created_at=letter.created_at, updated_at=letter.updated_at,
                   replies=seen.reply_count, writer=_writer(seen))


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
    viewing_as: Capacity = Field(description="The caller's part in this letter: what they see and may do follows")
    writer: WriterView | None = Field(description="Absent where the viewer may not know (anonymous letters)")
    replies: list[ReplyView] = Field(description="What the caller may see: the writer, their conversation with "
                                                 "student affairs; a handler, their offices' threads; owners, all")
    forwards: list[ForwardView] = Field(description="Owners: every forwarding; a handler: those to their offices; "
                                                    "the writer: none")

    @classmethod
    def of(cls, seen: Seen) -> LetterView:
        letter = seen.letter
        replies = [ReplyView(at=r.at, by="owner" if r.by_owner else "handler" if r.internal else "writer",
                             office=r.office, body=r.body, author=r.author if seen.authors_shown else None)
                   for r in seen.replies]
        forwards = [ForwardView(to=f.to, by=f.by, at=f.at, note=f.note) for f in seen.forwards]
        return cls(id=letter.letter_id, subject=letter.subject, body=letter.body, anonymous=letter.anonymous,
                   status=letter.status, version=letter.version, created_at=letter.created_at,
                   updated_at=letter.updated_at, closed_by=letter.closed_by, viewing_as=seen.capacity,
                   writer=_writer(seen), replies=replies, forwards=forwards)


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
    to: str | None = Field(None, max_length=60, description="An internal note to this office's thread instead "
                           "of a reply to the writer (student affairs, naming an office the letter was forwarded "
                           "to; a handler holding several of them, naming theirs)")


class ForwardBody(RequestModel):
    to: str = Field(min_length=1, max_length=60, description="The office's authority: role:<hr, hospital, "
                    "security, logistics, psych_center or it_admin>, or dept_head:<department>")
    note: str | None = Field(None, max_length=500, description="For the office (the writer never sees it)")


class LetterQuery(PageQuery):
    status: LetterStatus | None = None
    forwarded: bool = Field(False, description="The letters forwarded to an office you hold, for handling, "
                            "instead of your own (the owners: the whole mailbox)")


# -- routes -------------------------------------------------------------------------------------
@area.route("/mailbox/letters", "POST", summary="Write to the head of student affairs", policy=ANYONE,
            body=LetterBody, response=LetterView, status=201, errors=(Forbidden,))
def write_letter(body: LetterBody, actor: Actor) -> LetterView:
    """Students and staff only. The owners are told a letter arrived, never by whom."""
    return LetterView.of(mailbox().write(actor, body.subject, body.body, body.anonymous))


@area.route("/mailbox/letters", "GET", summary="My letters (the owners: the whole mailbox; forwarded=true: "
            "those forwarded to my offices), newest first", policy=ANYONE, query=LetterQuery, response=LetterPage)
def list_letters(query: LetterQuery, actor: Actor) -> LetterPage:
    page = mailbox().list_letters(actor, query.status, query.limit, query.position(), forwarded=query.forwarded)
    return LetterPage(items=[LetterSummaryView.of(s) for s in page.items], next=cursor(page.next))


@area.route("/mailbox/letters/{letter_id}", "GET", summary="A letter and its replies (its writer, the owners, or "
            "an office it was forwarded to)", policy=ANYONE, response=LetterView, errors=(NotFound,))
def get_letter(letter_id: str, actor: Actor) -> LetterView:
    """An owner's first read marks the letter read."""
    return LetterView.of(mailbox().read(actor, letter_id))


@area.route("/mailbox/letters/{letter_id}/replies", "POST", summary="Reply (an owner), follow up (the writer), or "
            "write an internal note (a handler; an owner with to)", policy=ANYONE, body=ReplyBody,
            response=LetterView, status=201, errors=(NotFound, Forbidden, Conflict))
def reply_to_letter(letter_id: str, body: ReplyBody, actor: Actor) -> LetterView:
    """An owner's reply marks the letter replied and tells the writer; a handler's note tells the
    owners and is never shown to the writer; 409 on a closed letter."""
    return LetterView.of(mailbox().reply(actor, letter_id, body.body, body.to))


@area.route("/mailbox/letters/{letter_id}/forwards", "POST", summary="Forward a letter to an office or college "
            "for handling (the owners)", policy=ANYONE, body=ForwardBody, response=LetterView, status=201,
            errors=(NotFound, Forbidden, Conflict))
def forward_letter(letter_id: str, body: ForwardBody, actor: Actor) -> LetterView:
    """The office's holders are told (never who wrote it) and may then read it and answer the
    owners; an anonymous letter's writer stays hidden from them. 409 when closed or forwarded there
    already; 422 when ``to`` is not an office, or nobody holds it now."""
    return LetterView.of(mailbox().forward(actor, letter_id, body.to, body.note))


@area.route("/mailbox/letters/{letter_id}/close", "POST", summary="Close a letter (its writer or an owner)",
            policy=ANYONE, response=LetterView, errors=(NotFound, Forbidden, Conflict))
def close_letter(letter_id: str, actor: Actor) -> LetterView:
    return LetterView.of(mailbox().close(actor, letter_id))
