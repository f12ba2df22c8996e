"""The mailbox to the head of student affairs (学工部长信箱): private letters and their replies.

The rules, in plain Python with the clock passed in:

* Students and staff write letters. The mailbox's owners are the people holding the
  ``student_affairs`` role (the head of student affairs and their office).
* A letter is seen by its writer and the owners only; to anyone else it does not exist
  (:class:`NotFound`, the same answer as for an unknown id).
* ``anonymous`` hides the writer from everyone but the owners (and the writer): whatever else
  shows a letter (a forwarding, an export) asks :func:`writer_visible`. Notifications to the
  owners never name the writer, anonymous or not: they show on lock screens.
* Status: ``new`` -> ``read`` (an owner's first read) -> ``replied`` (an owner's reply; more
  replies keep it there) -> ``closed`` (by the writer or an owner). A reply may come before any
  read (``new`` -> ``replied``); the writer's follow-ups add to the conversation without moving the
  status (the owners are told). Nothing happens to a closed letter: that, and any other change
  that makes no sense, is a :class:`Conflict`.
* Every change is written only if the letter's ``version`` is still the one read (optimistic
  locking): of two owners replying at once, one succeeds and the other reloads.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from chalicelib.domain.access import Actor, Role
from chalicelib.domain.notifications import Notification
from chalicelib.errors import Conflict, Forbidden, NotFound

LetterStatus = Literal["new", "read", "replied", "closed"]
STATUSES: tuple[str, ...] = ("new", "read", "replied", "closed")
OWNERS = f"role:{Role.STUDENT_AFFAIRS.value}"
WRITER_TYPES = frozenset({"student", "staff"})
# Replies live inside the letter's item (DynamoDB items stop at 400 KB): a conversation longer than
# this belongs in a new letter.
MAX_REPLIES = 40
TITLE = "学工部长信箱"


@dataclass(frozen=True)
class Reply:
    at: str
    author: str
    by_owner: bool
    body: str


@dataclass(frozen=True)
class LetterSummary:
    """What a list shows of a letter."""

    letter_id: str
    writer: str
    anonymous: bool
    subject: str
    status: str
    version: int
    created_at: str
    updated_at: str
    reply_count: int


@dataclass(frozen=True)
class Letter:
    letter_id: str
    writer: str
    anonymous: bool
    subject: str
    body: str
    status: str
    version: int
    created_at: str
    updated_at: str
    replies: tuple[Reply, ...] = ()
    read_at: str | None = None
    closed_by: Literal["writer", "owner"] | None = None

    def summary(self) -> LetterSummary:
        return LetterSummary(letter_id=self.letter_id, writer=self.writer, anonymous=self.anonymous,
                             subject=self.subject, status=self.status, version=self.version,
                             created_at=self.created_at, updated_at=self.updated_at, reply_count=len(self.replies))


@dataclass(frozen=True)
class Seen:
    """A letter (or its summary) as one viewer may see it: the writer only where they may know."""

    letter: Any  # Letter or LetterSummary
    writer: str | None
    writer_name: str | None
    authors_shown: bool  # which owner replied: the owners know, the writer sees "student affairs"


@dataclass(frozen=True)
class Page:
    items: list[Seen]
    next: str | None


# -- pure rules --------------------------------------------------------------------------------
def is_owner(actor: Actor) -> bool:
    return actor.has(Role.STUDENT_AFFAIRS)


def can_view(letter: Letter | LetterSummary, actor: Actor) -> bool:
    return actor.userid == letter.writer or is_owner(actor)


def writer_visible(letter: Letter | LetterSummary, viewer: Actor) -> bool:
    """Whether ``viewer`` may learn who wrote ``letter``: its writer and the owners always, anyone
    else (someone a letter might one day be forwarded to) only if it is not anonymous."""
    return viewer.userid == letter.writer or is_owner(viewer) or not letter.anonymous


def check_writer(actor: Actor) -> None:
    """Raises: Forbidden for people who may not write (third-party staff)."""
    if actor.person_type not in WRITER_TYPES:
        raise Forbidden("Only students and staff can write to the mailbox.")


def new_letter(actor: Actor, subject: str, body: str, anonymous: bool, now: datetime) -> Letter:
    check_writer(actor)
    at = _iso(now)
    return Letter(letter_id=uuid.uuid4().hex, writer=actor.userid, anonymous=anonymous, subject=subject, body=body,
                  status="new", version=1, created_at=at, updated_at=at)


def mark_read(letter: Letter, actor: Actor, now: datetime) -> Letter | None:
    """The letter after ``actor`` opened it: an owner's first read moves ``new`` to ``read``.
    ``None`` when nothing changes (the writer reading, or a letter read before)."""
    if letter.status != "new" or not is_owner(actor) or actor.userid == letter.writer:
        return None
    at = _iso(now)
    return replace(letter, status="read", read_at=at, updated_at=at, version=letter.version + 1)


def add_reply(letter: Letter, actor: Actor, body: str, now: datetime) -> Letter:
    """An owner's reply (the letter becomes ``replied``) or the writer's follow-up (status kept).

    Raises:
        NotFound: ``actor`` may not see the letter.
        Conflict: the letter is closed, or the conversation is as long as it may get.
    """
    if not can_view(letter, actor):
        raise NotFound("No such letter.")
    if letter.status == "closed":
        raise Conflict("This letter is closed; please write a new one.")
    if len(letter.replies) >= MAX_REPLIES:
        raise Conflict("This conversation is as long as it can get; please write a new letter.")
    by_owner = actor.userid != letter.writer  # a writer who is also an owner follows up on their own letter
    at = _iso(now)
    return replace(letter, replies=(*letter.replies, Reply(at=at, author=actor.userid, by_owner=by_owner, body=body)),
                   status="replied" if by_owner else letter.status, updated_at=at, version=letter.version + 1)


def close(letter: Letter, actor: Actor, now: datetime) -> Letter:
    """Raises: NotFound (not visible), Conflict (closed already)."""
    if not can_view(letter, actor):
        raise NotFound("No such letter.")
    if letter.status == "closed":
        raise Conflict("This letter is closed already.")
    at = _iso(now)
    return replace(letter, status="closed", closed_by="writer" if actor.userid == letter.writer else "owner",
                   updated_at=at, version=letter.version + 1)


def _iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds")


# -- collaborators -----------------------------------------------------------------------------
class LetterStore(Protocol):
    def get(self, letter_id: str) -> Letter | None: ...
    def save(self, letter: Letter, expected_version: int | None) -> None: ...
    def of_writer(self, writer: str, status: str | None, limit: int,
                  before: str | None) -> tuple[list[LetterSummary], str | None]: ...
    def in_box(self, status: str | None, limit: int, before: str | None) -> tuple[list[LetterSummary], str | None]: ...


class People(Protocol):
    def get_people(self, userids: Sequence[str]) -> Mapping[str, Any]: ...
    def holders(self, authority: str) -> list[str]: ...


@dataclass
class Mailbox:
    letters: LetterStore
    people: People
    notify: Callable[[Notification], int]
    clock: Callable[[], datetime]

    def write(self, actor: Actor, subject: str, body: str, anonymous: bool) -> Seen:
        """Post a letter; the owners are told (without the writer's name or the letter's text).

        Raises: Forbidden (not a student or staff member).
        """
        letter = new_letter(actor, subject, body, anonymous, self.clock())
        self.letters.save(letter, None)
        self._tell_owners(letter, f"mailbox:{letter.letter_id}:new", "学工部长信箱收到一封新来信，请在服务大厅查看。",
                          but=actor.userid)
        return self._seen(actor, [letter])[0]

    def list_letters(self, actor: Actor, status: str | None, limit: int, after: str | None) -> Page:
        """The owners: every letter; anyone else: their own. Newest first, optionally one status."""
        if is_owner(actor):
            items, position = self.letters.in_box(status, limit, after)
        else:
            items, position = self.letters.of_writer(actor.userid, status, limit, after)
        return Page(self._seen(actor, items), position)

    def read(self, actor: Actor, letter_id: str) -> Seen:
        """A letter for its writer or an owner; an owner's first read marks it ``read``.

        Raises: NotFound (unknown, or not visible: indistinguishable).
        """
        letter = self._visible(actor, letter_id)
        moved = mark_read(letter, actor, self.clock())
        if moved is not None:
            try:
                self.letters.save(moved, letter.version)
                letter = moved
            except Conflict:  # another owner opened or answered it meanwhile: show what is there now
                letter = self._visible(actor, letter_id)
        return self._seen(actor, [letter])[0]

    def reply(self, actor: Actor, letter_id: str, body: str) -> Seen:
        """An owner's reply (the writer is told) or the writer's follow-up (the owners are told).

        Raises: NotFound, Conflict (closed, too long, or changed meanwhile).
        """
        letter = self._visible(actor, letter_id)
        moved = add_reply(letter, actor, body, self.clock())
        self.letters.save(moved, letter.version)
        key = f"mailbox:{letter.letter_id}:reply:{len(moved.replies)}"
        if moved.replies[-1].by_owner:
            self.notify(Notification(key=key, recipients=(letter.writer,), title=TITLE,
                                     body="您写给学工部长信箱的信有了新的回复，请在服务大厅查看。"))
        else:
            self._tell_owners(letter, key, "学工部长信箱的一封来信有了新的补充，请在服务大厅查看。", but=actor.userid)
        return self._seen(actor, [moved])[0]

    def close(self, actor: Actor, letter_id: str) -> Seen:
        """Close a letter (its writer or an owner); an owner closing it tells the writer.

        Raises: NotFound, Conflict (closed already, or changed meanwhile).
        """
        letter = self._visible(actor, letter_id)
        moved = close(letter, actor, self.clock())
        self.letters.save(moved, letter.version)
        if moved.closed_by == "owner":
            self.notify(Notification(key=f"mailbox:{letter.letter_id}:closed", recipients=(letter.writer,),
                                     title=TITLE, body="您写给学工部长信箱的信已办结。"))
        return self._seen(actor, [moved])[0]

    # -- internals ------------------------------------------------------------------------------
    def _visible(self, actor: Actor, letter_id: str) -> Letter:
        letter = self.letters.get(letter_id)
        if letter is None or not can_view(letter, actor):
            raise NotFound("No such letter.")
        return letter

    def _seen(self, viewer: Actor, letters: Sequence[Letter | LetterSummary]) -> list[Seen]:
        shown = [writer_visible(letter, viewer) for letter in letters]
        people = self.people.get_people(sorted({letter.writer for letter, ok in zip(letters, shown) if ok}))
        return [Seen(letter=letter, writer=letter.writer if ok else None,
                     writer_name=getattr(people.get(letter.writer), "name", None) if ok else None,
                     authors_shown=is_owner(viewer))
                for letter, ok in zip(letters, shown)]

    def _tell_owners(self, letter: Letter, key: str, body: str, but: str) -> None:
        """Notify the owners: never the writer's name, for any letter (and no text of it either)."""
        owners = tuple(u for u in self.people.holders(OWNERS) if u != but)
        if owners:
            self.notify(Notification(key=key, recipients=owners, title=TITLE, body=body))
