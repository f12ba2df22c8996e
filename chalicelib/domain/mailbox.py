"""The mailbox to the head of student affairs (学工部长信箱): private letters, their replies, and
their forwarding to the offices that can act on them.

The rules, in plain Python with the clock passed in:

* Students and staff write letters. The mailbox's owners are the people holding the
  ``student_affairs`` role (the head of student affairs and their office).
* An owner may **forward** a letter to an office or college for handling: an authority of the form
  ``role:<role>`` (the offices in :data:`FORWARD_ROLES`) or ``dept_head:<department>``, held by
  somebody now. A letter may be forwarded to several offices, to each once.
* Who sees a letter, in one of three capacities (:func:`capacity`):

  - its **writer** (always the writer, whatever else they hold): the letter and the conversation
    with the owners;
  - an **owner**: everything, the writer included;
  - a **handler**, holding an authority the letter was forwarded to: the letter, the forwardings to
    their offices, and their offices' internal threads with the owners. Never the conversation with
    the writer (the owners' answers are addressed to someone they know by name).

  To anyone else the letter does not exist (:class:`NotFound`, the same answer as for an unknown id).
* ``anonymous`` hides the writer from everyone but the owners (and the writer): a handler of an
  anonymous letter never learns who wrote it (no userid, no name), in the letter, a list or a
  notification; :func:`writer_visible` decides. A handler of a signed letter sees the writer.
  Notifications never name the writer, anonymous or not: they show on lock screens.
* Replies: an owner's reply goes to the writer; the writer's follow-up to the owners. A handler's
  reply is an internal note in their office's thread, for the owners (and that office), never the
  writer; an owner may add a note to an office's thread too (``to``). Notes do not move the status.
* Status: ``new`` -> ``read`` (an owner's first read, or a forwarding) -> ``replied`` (an owner's
  reply to the writer; more replies keep it there) -> ``closed`` (by the writer or an owner). A reply
  may come before any read (``new`` -> ``replied``); the writer's follow-ups add to the conversation
  without moving the status (the owners are told). Nothing happens to a closed letter: that, and
  any other change that makes no sense, is a :class:`Conflict`.
* Every change is written only if the letter's ``version`` is still the one read (optimistic
  locking): of two owners replying at once, one succeeds and the other reloads.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from chalicelib.domain.access import Actor, Role, authorities
from chalicelib.domain.notifications import Notification
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound

LetterStatus = Literal["new", "read", "replied", "closed"]
Capacity = Literal["writer", "owner", "handler"]
STATUSES: tuple[str, ...] = ("new", "read", "replied", "closed")
OWNERS = f"role:{Role.STUDENT_AFFAIRS.value}"
WRITER_TYPES = frozenset({"student", "staff"})
# The offices a letter may be handed to by role. Not the owners themselves, not leaders (they see
# aggregates only), and not counselors or department heads as a whole: a college is reached through
# its own head (``dept_head:<department>``), never through every head on campus.
FORWARD_ROLES = frozenset(role.value for role in (Role.HR, Role.HOSPITAL, Role.SECURITY, Role.LOGISTICS,
                                                   Role.PSYCH_CENTER, Role.IT_ADMIN))
_ROLE_TARGET = re.compile(r"^role:([a-z_]+)$")
_DEPT_TARGET = re.compile(r"^dept_head:[A-Za-z0-9_.-]{1,32}$")
# Replies and forwardings live inside the letter's item (DynamoDB items stop at 400 KB): a
# conversation longer than this belongs in a new letter.
MAX_REPLIES = 40
MAX_FORWARDS = 10
TITLE = "学工部长信箱"


@dataclass(frozen=True)
class Reply:
    """One message on a letter. ``office`` unset: the conversation between the writer and the
    owners; set: an internal note in the thread between the owners and that office."""

    at: str
    author: str
    by_owner: bool
    body: str
    office: str | None = None

    @property
    def internal(self) -> bool:
        return self.office is not None


@dataclass(frozen=True)
class Forward:
    """A letter handed to an office (``to``, an authority) by an owner, with an optional note."""

    to: str
    by: str
    at: str
    note: str | None = None


@dataclass(frozen=True)
class LetterSummary:
    """What a list shows of a letter. ``reply_count``: the conversation with the writer."""

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
    forwards: tuple[Forward, ...] = ()

    @property
    def offices(self) -> frozenset[str]:
        """The authorities the letter was forwarded to."""
        return frozenset(f.to for f in self.forwards)

    def summary(self) -> LetterSummary:
        return LetterSummary(letter_id=self.letter_id, writer=self.writer, anonymous=self.anonymous,
                             subject=self.subject, status=self.status, version=self.version,
                             created_at=self.created_at, updated_at=self.updated_at,
                             reply_count=sum(1 for r in self.replies if not r.internal))


@dataclass(frozen=True)
class Seen:
    """A letter (or its summary) as one viewer may see it. Views read the writer, the replies and
    the forwardings from here, never from ``letter``: only these are filtered for the viewer."""

    letter: Any  # Letter or LetterSummary: only the fields both have are read from it
    capacity: Capacity
    writer: str | None
    writer_name: str | None
    authors_shown: bool  # which owner or handler wrote: staff know, the writer sees "student affairs"
    reply_count: int  # the replies this viewer may see (a summary: the conversation with the writer)
    replies: tuple[Reply, ...] = ()  # of a whole letter: the ones this viewer may see
    forwards: tuple[Forward, ...] = ()


@dataclass(frozen=True)
class Page:
    items: list[Seen]
    next: str | None


# -- pure rules --------------------------------------------------------------------------------
def is_owner(actor: Actor) -> bool:
    return actor.has(Role.STUDENT_AFFAIRS)


def is_office(authority: str) -> bool:
    """Whether ``authority`` has the form of an office a letter may be forwarded to."""
    role = _ROLE_TARGET.match(authority)
    return role.group(1) in FORWARD_ROLES if role else bool(_DEPT_TARGET.match(authority))


def check_office(authority: str) -> None:
    """Raises: Invalid (field ``to``) unless ``authority`` is ``role:<office role>`` or ``dept_head:<dept>``."""
    if not is_office(authority):
        offices = ", ".join(f"role:{r}" for r in sorted(FORWARD_ROLES))
        raise Invalid("Letters are forwarded to an office or a college.",
                      {"to": f"one of {offices}, or dept_head:<department>"})


def offices_held(actor: Actor) -> frozenset[str]:
    """The authorities ``actor`` holds that letters can be forwarded to (what they handle)."""
    return frozenset(a for a in authorities(actor) if is_office(a))


def capacity(letter: Letter, actor: Actor) -> Capacity | None:
    """In what capacity ``actor`` sees ``letter`` (``None``: not at all). The writer is the writer
    first, whatever else they hold; an owner sees the whole letter; a handler what was forwarded."""
    if actor.userid == letter.writer:
        return "writer"
    if is_owner(actor):
        return "owner"
    if letter.offices & offices_held(actor):
        return "handler"
    return None


def can_view(letter: Letter, actor: Actor) -> bool:
    return capacity(letter, actor) is not None


def writer_visible(letter: Letter | LetterSummary, viewer: Actor) -> bool:
    """Whether ``viewer`` may learn who wrote ``letter``: its writer and the owners always, anyone
    else (a handler it was forwarded to) only if it is not anonymous."""
    return viewer.userid == letter.writer or is_owner(viewer) or not letter.anonymous


def visible_replies(letter: Letter, viewer: Actor) -> tuple[Reply, ...]:
    """The owners: every reply and note. A handler: the threads of their offices. Anyone else (the
    writer): the conversation with the owners, no internal note."""
    seen_as = capacity(letter, viewer)
    if seen_as == "owner":
        return letter.replies
    if seen_as == "handler":
        mine = letter.offices & offices_held(viewer)
        return tuple(r for r in letter.replies if r.office in mine)
    return tuple(r for r in letter.replies if not r.internal)


def visible_forwards(letter: Letter, viewer: Actor) -> tuple[Forward, ...]:
    """The owners: every forwarding. A handler: those to their offices (not where else it went).
    The writer: none (internal handling)."""
    seen_as = capacity(letter, viewer)
    if seen_as == "owner":
        return letter.forwards
    if seen_as == "handler":
        mine = offices_held(viewer)
        return tuple(f for f in letter.forwards if f.to in mine)
    return ()


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
    ``None`` when nothing changes (the writer or a handler reading, or a letter read before)."""
    if letter.status != "new" or capacity(letter, actor) != "owner":
        return None
    at = _iso(now)
    return replace(letter, status="read", read_at=at, updated_at=at, version=letter.version + 1)


def add_reply(letter: Letter, actor: Actor, body: str, now: datetime, to: str | None = None) -> Letter:
    """A reply, by capacity:

    * an owner: to the writer (the letter becomes ``replied``), or with ``to`` a note to that office's
      thread (status kept);
    * the writer: a follow-up to the owners (status kept); ``to`` is not theirs to use;
    * a handler: a note to the owners in their office's thread (``to`` picks the office when they
      hold several the letter went to; status kept).

    Raises:
        NotFound: ``actor`` may not see the letter.
        Forbidden: the writer naming an office.
        Invalid: ``to`` (field ``to``) is not an office the letter was forwarded to (of the handler's).
        Conflict: the letter is closed, or the conversation is as long as it may get.
    """
    seen_as = capacity(letter, actor)
    if seen_as is None:
        raise NotFound("No such letter.")
    if seen_as == "writer" and to is not None:
        raise Forbidden("Only student affairs writes to the offices handling a letter.")
    office = None
    if seen_as == "handler":
        mine = sorted(letter.offices & offices_held(actor))
        office = to if to is not None else mine[0]
        if office not in mine:
            raise Invalid("This letter was not forwarded to that office of yours.", {"to": "not one of your offices "
                                                                                     "this letter was forwarded to"})
    elif seen_as == "owner" and to is not None:
        if to not in letter.offices:
            raise Invalid("This letter was not forwarded there.", {"to": "not an office this letter was forwarded to"})
        office = to
    if letter.status == "closed":
        raise Conflict("This letter is closed; please write a new one.")
    if len(letter.replies) >= MAX_REPLIES:
        raise Conflict("This conversation is as long as it can get; please write a new letter.")
    by_owner = seen_as == "owner"  # a writer who is also an owner follows up on their own letter
    answered = by_owner and office is None
    at = _iso(now)
    reply = Reply(at=at, author=actor.userid, by_owner=by_owner, body=body, office=office)
    return replace(letter, replies=(*letter.replies, reply), status="replied" if answered else letter.status,
                   updated_at=at, version=letter.version + 1)


def close(letter: Letter, actor: Actor, now: datetime) -> Letter:
    """Raises: NotFound (not visible), Forbidden (a handler: the writer and the owners close),
    Conflict (closed already)."""
    seen_as = capacity(letter, actor)
    if seen_as is None:
        raise NotFound("No such letter.")
    if seen_as == "handler":
        raise Forbidden("Only the writer or student affairs close a letter; reply to student affairs instead.")
    if letter.status == "closed":
        raise Conflict("This letter is closed already.")
    at = _iso(now)
    return replace(letter, status="closed", closed_by="writer" if seen_as == "writer" else "owner",
                   updated_at=at, version=letter.version + 1)


def forward(letter: Letter, actor: Actor, to: str, note: str | None, now: datetime) -> Letter:
    """The letter handed to office ``to`` by an owner; a ``new`` letter becomes ``read`` (whoever
    forwards it has read it).

    Raises:
        NotFound: ``actor`` may not see the letter.
        Forbidden: ``actor`` sees it but is not an owner (its writer, a handler).
        Invalid: ``to`` (field ``to``) is not an office's authority.
        Conflict: the letter is closed, was forwarded there already, or to as many offices as it may.
    """
    seen_as = capacity(letter, actor)
    if seen_as is None:
        raise NotFound("No such letter.")
    if seen_as != "owner":
        raise Forbidden("Only student affairs forwards letters.")
    check_office(to)
    if letter.status == "closed":
        raise Conflict("This letter is closed.")
    if to in letter.offices:
        raise Conflict("This letter was forwarded there already.")
    if len(letter.forwards) >= MAX_FORWARDS:
        raise Conflict(f"A letter goes to at most {MAX_FORWARDS} offices.")
    at = _iso(now)
    return replace(letter, forwards=(*letter.forwards, Forward(to=to, by=actor.userid, at=at, note=note or None)),
                   status="read" if letter.status == "new" else letter.status,
                   read_at=letter.read_at or (at if letter.status == "new" else None),
                   updated_at=at, version=letter.version + 1)


def _iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds")


# -- collaborators -----------------------------------------------------------------------------
class LetterStore(Protocol):
    def get(self, letter_id: str) -> Letter | None: ...
    def save(self, letter: Letter, expected_version: int | None, forwarded: Forward | None = None) -> None: ...
    def of_writer(self, writer: str, status: str | None, limit: int,
                  before: str | None) -> tuple[list[LetterSummary], str | None]: ...
    def in_box(self, status: str | None, limit: int, before: str | None) -> tuple[list[LetterSummary], str | None]: ...
    def forwarded_to(self, offices: Sequence[str], status: str | None, limit: int,
                     before: str | None) -> tuple[list[Letter], str | None]: ...


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

    def list_letters(self, actor: Actor, status: str | None, limit: int, after: str | None,
                     forwarded: bool = False) -> Page:
        """Newest first, optionally of one status. ``forwarded``: the letters forwarded to an office
        ``actor`` holds (their handling list). Otherwise the owners: every letter; anyone else:
        their own."""
        if forwarded:
            offices = sorted(offices_held(actor))
            if not offices:
                return Page([], None)
            letters, position = self.letters.forwarded_to(offices, status, limit, after)
            return Page(self._seen(actor, [x for x in letters if can_view(x, actor)]), position)
        if is_owner(actor):
            items, position = self.letters.in_box(status, limit, after)
        else:
            items, position = self.letters.of_writer(actor.userid, status, limit, after)
        return Page(self._seen(actor, items), position)

    def read(self, actor: Actor, letter_id: str) -> Seen:
        """A letter for its writer, an owner or a handler; an owner's first read marks it ``read``.

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

    def reply(self, actor: Actor, letter_id: str, body: str, to: str | None = None) -> Seen:
        """Reply (see :func:`add_reply`). Who is told: an owner's reply, the writer; the writer's
        follow-up and a handler's note, the owners; an owner's note, the office it is for.

        Raises: NotFound, Forbidden, Invalid, Conflict (closed, too long, or changed meanwhile).
        """
        letter = self._visible(actor, letter_id)
        moved = add_reply(letter, actor, body, self.clock(), to)
        self.letters.save(moved, letter.version)
        reply = moved.replies[-1]
        key = f"mailbox:{letter.letter_id}:reply:{len(moved.replies)}"
        if reply.by_owner and reply.office is None:
            self.notify(Notification(key=key, recipients=(letter.writer,), title=TITLE,
                                     body="您写给学工部长信箱的信有了新的回复，请在服务大厅查看。"))
        elif reply.by_owner and reply.office is not None:
            self._tell_office(letter, reply.office, key, "学工部长信箱转办的一封来信有了新的留言，请在服务大厅查看。",
                              but=actor.userid)
        elif reply.office is not None:
            self._tell_owners(letter, key, "学工部长信箱转办的一封来信有了办理回复，请在服务大厅查看。", but=actor.userid)
        else:
            self._tell_owners(letter, key, "学工部长信箱的一封来信有了新的补充，请在服务大厅查看。", but=actor.userid)
        return self._seen(actor, [moved])[0]

    def close(self, actor: Actor, letter_id: str) -> Seen:
        """Close a letter (its writer or an owner); an owner closing it tells the writer.

        Raises: NotFound, Forbidden (a handler), Conflict (closed already, or changed meanwhile).
        """
        letter = self._visible(actor, letter_id)
        moved = close(letter, actor, self.clock())
        self.letters.save(moved, letter.version)
        if moved.closed_by == "owner":
            self.notify(Notification(key=f"mailbox:{letter.letter_id}:closed", recipients=(letter.writer,),
                                     title=TITLE, body="您写给学工部长信箱的信已办结。"))
        return self._seen(actor, [moved])[0]

    def forward(self, actor: Actor, letter_id: str, to: str, note: str | None) -> Seen:
        """Forward a letter to an office (an owner); the office's holders are told, without who
        wrote it or what.

        Raises: NotFound, Forbidden (not an owner), Invalid (``to``: not an office's authority, or
            nobody holds it now), Conflict (closed, forwarded there already, or changed meanwhile).
        """
        letter = self._visible(actor, letter_id)
        moved = forward(letter, actor, to, note, self.clock())
        if not self.people.holders(to):
            raise Invalid("Nobody holds this authority now.", {"to": "nobody holds it at the moment"})
        self.letters.save(moved, letter.version, forwarded=moved.forwards[-1])
        self._tell_office(letter, to, f"mailbox:{letter.letter_id}:forward:{len(moved.forwards)}",
                          "学工部长信箱转来一封来信，请您在服务大厅查看办理。", but=actor.userid)
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
        return [self._one(viewer, letter, people.get(letter.writer) if ok else None, ok)
                for letter, ok in zip(letters, shown)]

    @staticmethod
    def _one(viewer: Actor, letter: Letter | LetterSummary, person: Any, writer_shown: bool) -> Seen:
        if isinstance(letter, Letter):
            seen_as = capacity(letter, viewer)
            replies = visible_replies(letter, viewer)
            forwards = visible_forwards(letter, viewer)
            count = len(replies)
        else:  # a summary comes from the writer's own list or the owners' box: no handler here
            seen_as = "writer" if viewer.userid == letter.writer else "owner"
            replies, forwards, count = (), (), letter.reply_count
        assert seen_as is not None  # stores only hand out letters the viewer may see
        return Seen(letter=letter, capacity=seen_as, writer=letter.writer if writer_shown else None,
                    writer_name=getattr(person, "name", None) if writer_shown else None,
                    authors_shown=seen_as != "writer", reply_count=count, replies=replies, forwards=forwards)

    def _tell_owners(self, letter: Letter, key: str, body: str, but: str) -> None:
        """Notify the owners: never the writer's name, for any letter (and no text of it either)."""
        self._tell(OWNERS, letter, key, body, but)

    def _tell_office(self, letter: Letter, office: str, key: str, body: str, but: str) -> None:
        """Notify the holders of ``office`` (never its writer, should they hold it: it is their letter)."""
        self._tell(office, letter, key, body, but)

    def _tell(self, authority: str, letter: Letter, key: str, body: str, but: str) -> None:
        recipients = _others(self.people.holders(authority), but, letter.writer if authority != OWNERS else None)
        if recipients:
            self.notify(Notification(key=key, recipients=recipients, title=TITLE, body=body))


def _others(holders: Iterable[str], *excluded: str | None) -> tuple[str, ...]:
    return tuple(u for u in holders if u not in excluded)
