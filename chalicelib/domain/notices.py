"""Notices (通知公告) and the teaching release column (教学发布专栏): who may publish to whom, who
receives a notice, read receipts.

Publishing rules (a notice's audience is the union of departments, person types and roles):

* the IT centre and school leaders publish to anyone;
* a department head publishes to their own department only;
* student affairs publishes to the students (``types: [student]``);
* HR publishes to the staff (``types: [staff]``).

A person with several roles may combine what each allows. Anything else is ``Forbidden``.

Recipients are resolved without a Scan: department members through the directory's department
index, person types through its type index (then checked active), roles through the authority
holders; only active people, each once, and never the publisher. They are stored per notice (one
row per recipient), so "notices addressed to me" is a Query and a receipt is one conditional update.

An approved ``teaching-release`` application (area ``notices``) publishes a teaching-column notice
for its applicant. Its form's ``audience`` picks who in the applicant's department receives it
(students, staff, or everyone); the notice never leaves that department, because the approver is
the department head, whose own publishing reaches no further (``all`` therefore means the whole
department too).

Publishing is two steps, so a request never does the slow part: :meth:`NoticeBoard.publish` (and
the teaching-release hook) checks the notice, stores it ``publishing`` and queues its fan-out;
:meth:`NoticeBoard.fan_out` (the ``fan_out_notice`` consumer) resolves the recipients, writes the
rows that are missing, sends the WeCom card and marks the notice ``published`` with the total. Every
step of the fan-out is safe to repeat, so a run that dies part-way is finished by the next delivery
of its message.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from chalicelib.domain.access import PERSON_TYPES, ROLES, Actor, Role
from chalicelib.domain.idempotency import Claims, create_once
from chalicelib.domain.notifications import Notification
from chalicelib.domain.workflow import Application, Transition, became_approved
from chalicelib.errors import Forbidden, Invalid, NotFound
from chalicelib.observability import logger

Column = Literal["notice", "teaching"]
COLUMNS: tuple[str, ...] = ("notice", "teaching")
COLUMN_NAMES = {"notice": "通知公告", "teaching": "教学发布专栏"}
MAX_TITLE = 64
MAX_BODY = 2000
CARD_SUMMARY = 120  # characters of the body on the WeCom card (its description is short)
PUBLISHERS = frozenset({Role.DEPT_HEAD, Role.STUDENT_AFFAIRS, Role.HR, Role.IT_ADMIN, Role.LEADER})
_ANYONE = (Role.IT_ADMIN, Role.LEADER)
# A role that may publish to a whole person type.
_TYPE_PUBLISHERS = {"student": Role.STUDENT_AFFAIRS, "staff": Role.HR}
# teaching-release's "audience" option -> the person types of the department who receive it (empty: all).
TEACHING_AUDIENCE: dict[str, tuple[str, ...]] = {"students": ("student",), "staff": ("staff",),
                                                 "department": (), "all": ()}


@dataclass(frozen=True)
class Audience:
    """Who a notice is for: the union of these departments, person types and role holders.

    ``member_types`` narrows the departments' members to these types (the teaching column's
    "students of my department"); it is not offered to ``POST /notices``.
    """

    departments: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    member_types: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.departments or self.types or self.roles)

    def as_dict(self) -> dict[str, list[str]]:
        return {"departments": list(self.departments), "types": list(self.types), "roles": list(self.roles),
                "member_types": list(self.member_types)}

    @classmethod
    def of(cls, values: Mapping[str, Iterable[str]]) -> Audience:
        return cls(**{name: tuple(dict.fromkeys(values.get(name) or ())) for name in
                      ("departments", "types", "roles", "member_types")})


@dataclass(frozen=True)
class Draft:
    """What a publisher sends."""

    title: str
    body: str
    column: Column
    audience: Audience
    url: str | None = None


@dataclass(frozen=True)
class Notice:
    notice_id: str
    column: Column
    title: str
    body: str
    publisher: str
    publisher_department: str
    audience: Audience
    published_at: str  # UTC ISO-8601
    url: str | None = None
    attachments: tuple[str, ...] = ()
    recipients: int = 0
    read: int = 0
    state: Literal["publishing", "published"] = "publishing"
    source: str | None = None  # the teaching-release application it came from
    approved_by: str | None = None

    @property
    def key(self) -> str:
        """The recipients' sort key: newest first is descending order of it."""
        return f"{self.published_at}#{self.notice_id}"


@dataclass(frozen=True)
class Delivery:
    """A notice as one recipient holds it: listed, and read or not."""

    userid: str
    notice_id: str
    published_at: str
    column: str
    title: str
    read_at: str | None = None

    @property
    def read(self) -> bool:
        return self.read_at is not None


@dataclass(frozen=True)
class Receipts:
    notice_id: str
    total: int
    read: int
    unread_userids: list[str] = field(default_factory=list)


# -- who may publish to whom -----------------------------------------------------------------------
def check_may_publish(actor: Actor, audience: Audience) -> None:
    """Raise :class:`Forbidden` unless every part of ``audience`` is within what one of the
    actor's roles may reach (see the module docstring)."""
    if not any(actor.has(role) for role in PUBLISHERS):
        raise Forbidden("Your roles do not allow publishing notices.")
    if any(actor.has(role) for role in _ANYONE):
        return
    own = actor.dept_head_of if actor.has(Role.DEPT_HEAD) else None
    others = [d for d in audience.departments if d != own]
    if others:
        raise Forbidden("You may publish to your own department only." if own else
                        "You may not publish to departments.")
    for person_type in audience.types:
        role = _TYPE_PUBLISHERS.get(person_type)
        if role is None or not actor.has(role):
            raise Forbidden(f"You may not publish to every {person_type.replace('_', ' ')}.")
    if audience.roles:
        raise Forbidden("Only the IT centre and school leaders publish to role holders.")


def check_audience(audience: Audience, known_departments: Iterable[str]) -> None:
    """Raises: Invalid (empty audience, unknown department, type or role; reasons per field)."""
    if audience.is_empty():
        raise Invalid("Name at least one department, person type or role.",
                      {"audience": "name at least one department, type or role"})
    problems = {}
    unknown = sorted(set(audience.departments) - set(known_departments))
    if unknown:
        problems["audience.departments"] = "no such department: " + ", ".join(unknown)
    if not set(audience.types) | set(audience.member_types) <= PERSON_TYPES:
        problems["audience.types"] = "unknown person type"
    if not set(audience.roles) <= ROLES:
        problems["audience.roles"] = "unknown role"
    if problems:
        raise Invalid("The audience names something that does not exist.", problems)


def check_draft(draft: Draft) -> None:
    """The limits of a notice published through the API (a teaching release brings its own
    form's limits: a title of up to 100 characters)."""
    problems = {}
    if not draft.title.strip() or len(draft.title) > MAX_TITLE or "\n" in draft.title:
        problems["title"] = f"one line of 1 to {MAX_TITLE} characters"
    if not draft.body.strip() or len(draft.body) > MAX_BODY:
        problems["body"] = f"1 to {MAX_BODY} characters"
    if draft.column not in COLUMNS:
        problems["column"] = "notice or teaching"
    if problems:
        raise Invalid("The notice has errors.", problems)


# -- who receives it -------------------------------------------------------------------------------
class PersonLike(Protocol):
    userid: str
    person_type: str
    status: str


class AudienceDirectory(Protocol):
    def members_of_department(self, dept_id: str) -> Iterator[PersonLike]: ...
    def userids_of_type(self, person_type: str) -> Iterator[str]: ...
    def get_people(self, userids: Sequence[str]) -> Mapping[str, PersonLike]: ...
    def holders(self, authority: str) -> list[str]: ...


def resolve_recipients(audience: Audience, directory: AudienceDirectory) -> list[str]:
    """The active people the audience names, each once, in userid order."""
    found: set[str] = set()
    for dept_id in audience.departments:
        found |= {p.userid for p in directory.members_of_department(dept_id)
                  if p.status == "active" and (not audience.member_types or p.person_type in audience.member_types)}
    # The type index holds keys only: whether someone is still active needs their record.
    typed = [userid for person_type in audience.types for userid in directory.userids_of_type(person_type)
             if userid not in found]
    found |= {userid for userid, person in directory.get_people(typed).items() if person.status == "active"}
    for role in audience.roles:
        found |= set(directory.holders(f"role:{role}"))  # holders are active by definition
    return sorted(found)


def reaches_anyone(audience: Audience, directory: AudienceDirectory, excluding: str) -> bool:
    """Whether the audience names at least one active person other than ``excluding`` (the
    publisher), reading no more of the directory than it takes to find one: publishing checks this
    in the request, the fan-out resolves everyone later."""
    def wanted(person: PersonLike) -> bool:
        return (person.userid != excluding and person.status == "active"
                and (not audience.member_types or person.person_type in audience.member_types))

    for dept_id in audience.departments:
        if any(wanted(person) for person in directory.members_of_department(dept_id)):
            return True
    if any(userid != excluding for role in audience.roles for userid in directory.holders(f"role:{role}")):
        return True
    for person_type in audience.types:
        userids = iter(directory.userids_of_type(person_type))
        while batch := [userid for userid in itertools.islice(userids, 100) if userid != excluding]:
            if any(person.status == "active" for person in directory.get_people(batch).values()):
                return True
    return False


# -- the teaching release column -------------------------------------------------------------------
def teaching_notice(app: Application, transition: Transition) -> Notice:
    """The teaching-column notice an approved release becomes (its id derives from the application's)."""
    data = app.data
    choice = str(data.get("audience") or "students")
    audience = Audience(departments=(app.applicant.department,),
                        member_types=TEACHING_AUDIENCE.get(choice, ("student",)))
    return Notice(notice_id=f"app-{app.app_id}", column="teaching", title=str(data.get("title") or app.service_name),
                  body=str(data.get("body") or ""), publisher=app.applicant.userid,
                  publisher_department=app.applicant.department, audience=audience, published_at=transition.at,
                  attachments=tuple(data.get("attachments") or ()), source=app.app_id, approved_by=transition.actor)


# -- the WeCom card --------------------------------------------------------------------------------
def summary(text: str, limit: int = CARD_SUMMARY) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def card(notice: Notice, recipients: Sequence[str], link: str | None) -> Notification:
    """One mass textcard to every recipient (the notifier splits it into parts of 1000)."""
    return Notification(key=f"notice:{notice.notice_id}", recipients=tuple(recipients), kind="textcard",
                        title=f"【{COLUMN_NAMES[notice.column]}】{notice.title}"[:128],
                        body=summary(notice.body) or notice.title, url=link or notice.url, mass=True)


def new_notice_id(now: datetime) -> str:
    """Sortable by time and unguessable: ``20261201T101000-<12 hex>``."""
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


# -- the board: rules wired to their collaborators -------------------------------------------------
class NoticeStore(Protocol):
    def create(self, notice: Notice) -> bool: ...
    def get(self, notice_id: str) -> Notice | None: ...
    def discard(self, notice: Notice) -> None: ...
    def add_recipients(self, notice: Notice, userids: Sequence[str]) -> int: ...
    def mark_published(self, notice: Notice, recipients: int) -> Notice: ...
    def delivery(self, userid: str, notice: Notice) -> Delivery | None: ...
    def mark_read(self, delivery: Delivery, at: str) -> bool: ...
    def addressed_to(self, userid: str, column: str | None, limit: int,
                     after: str | None) -> tuple[list[Delivery], str | None]: ...
    def published_by(self, publisher: str, limit: int, after: str | None) -> tuple[list[Notice], str | None]: ...
    def unread(self, notice_id: str, limit: int, after: str | None) -> tuple[list[str], str | None]: ...


class Directory(AudienceDirectory, Protocol):
    def known_departments(self, dept_ids: Iterable[str]) -> set[str]: ...


@dataclass
class NoticeBoard:
    store: NoticeStore
    directory: Directory
    notify: Callable[[Notification], int]
    clock: Callable[[], datetime]
    link: Callable[[str], str | None] = lambda notice_id: None
    claims: Claims | None = None  # idempotency keys of publications, and the fan-out lease
    queue_fan_out: Callable[[str], None] | None = None  # sends a notice's id to the fan-out consumer
    # How long one fan-out run holds a notice: longer than the consumer may run, shorter than the
    # queue's visibility timeout (a run that died frees the notice before its message comes back).
    lease_seconds: float = 300

    # -- publishing -----------------------------------------------------------------------------
    def publish(self, actor: Actor, draft: Draft, idempotency_key: str | None = None) -> tuple[Notice, bool]:
        """Accept a notice: check it, store it ``publishing`` and queue its fan-out (see
        :meth:`fan_out`, which writes the recipients, sends the card and marks it ``published``).

        With an ``idempotency_key``, a retry by the same publisher within a day answers with the
        notice the first request stored instead of publishing a second one (whatever its body);
        while that notice is still ``publishing`` its fan-out is queued again, in case the first
        message was lost (a repeated fan-out is harmless).

        Returns:
            The notice and whether an earlier request with the same key stored it.

        Raises:
            Forbidden: the audience is beyond what the actor may reach.
            Invalid: the draft or the audience is not valid, or names no active person.
            Conflict: the first request with this key is still being processed.
        """
        check_draft(draft)
        check_may_publish(actor, draft.audience)
        now = self.clock()
        if idempotency_key is None or self.claims is None:
            return self._accept(actor, draft, now), False
        notice, replayed = create_once(
            self.claims, f"notice#{actor.userid}#{idempotency_key}", new_notice_id(now),
            lambda notice_id: self._accept(actor, draft, now, notice_id), self.store.get,
            "The same notice is being published; try again in a moment.")
        if replayed and notice.state == "publishing":
            self._queue(notice)  # in case the first request's message was lost
        return notice, replayed

    def _accept(self, actor: Actor, draft: Draft, now: datetime, notice_id: str | None = None) -> Notice:
        """Check the audience against the directory, store the notice and queue its fan-out.
        Either both happen or neither: a notice whose fan-out could not be queued is taken back."""
        check_audience(draft.audience, self.directory.known_departments(draft.audience.departments))
        if not reaches_anyone(draft.audience, self.directory, excluding=actor.userid):
            raise Invalid("Nobody active is in this audience.", {"audience": "names no active person"})
        notice = Notice(notice_id=notice_id or new_notice_id(now), column=draft.column, title=draft.title.strip(),
                        body=draft.body.strip(), url=draft.url, publisher=actor.userid,
                        publisher_department=actor.department, audience=draft.audience,
                        published_at=now.isoformat(timespec="milliseconds"))
        self.store.create(notice)
        try:
            self._queue(notice)
        except Exception:
            self.store.discard(notice)  # never a notice nobody will finish: the request fails whole
            raise
        return notice

    def on_transition(self, app: Application, transition: Transition) -> Notice | None:
        """An approved teaching release becomes a teaching-column notice, fanned out like any other
        (once, however often called: its id derives from the application's)."""
        if not became_approved(app, transition):
            return None
        notice = teaching_notice(app, transition)
        existing = self.store.get(notice.notice_id)
        if existing is not None and existing.state == "published":
            return existing
        if existing is None:
            self.store.create(notice)
        self._queue(notice)
        return existing or notice

    def _queue(self, notice: Notice) -> None:
        if self.queue_fan_out is None:
            raise RuntimeError("the notice board has no fan-out queue")
        self.queue_fan_out(notice.notice_id)

    def fan_out(self, notice_id: str) -> Notice | None:
        """Finish publishing a notice: write its recipients' rows, send the WeCom card, then mark it
        ``published`` with the number of recipients.

        Safe to repeat at any point, so a run that dies part-way is finished by the next one: rows
        already written are left as they are (with any receipt recorded meanwhile), the card's key
        makes a second send a no-op, and a notice already published is not touched. One run at a
        time holds a notice (a lease); a run that finds it held does nothing, because the holder's
        own message comes back if the holder fails.

        Returns:
            The notice as it stands, or ``None`` when there is no such notice (taken back when its
            fan-out could not be queued) or another run holds it.

        Raises:
            Whatever the store, the directory or the notifier raise: the message is delivered again.
        """
        notice = self.store.get(notice_id)
        if notice is None:
            logger.warning("fan-out of a notice that does not exist", extra={"notice_id": notice_id})
            return None
        if notice.state == "published":
            return notice
        lease = f"notice-fanout#{notice_id}"
        if self.claims is not None and not self.claims.claim(lease, self.lease_seconds):
            logger.info("notice fan-out already running elsewhere", extra={"notice_id": notice_id})
            return None
        try:
            notice = self.store.get(notice_id) or notice  # a run that held the lease may have finished it
            if notice.state == "published":
                return notice
            recipients = _without(resolve_recipients(notice.audience, self.directory), notice.publisher)
            written = self.store.add_recipients(notice, recipients)
            if recipients:
                self.notify(card(notice, recipients, self.link(notice.notice_id)))
            else:
                logger.warning("notice reaches nobody", extra={"notice_id": notice_id})
            published = self.store.mark_published(notice, len(recipients))
        finally:
            if self.claims is not None:
                self.claims.release(lease)
        logger.info("notice published", extra={"notice_id": notice_id, "recipients": len(recipients),
                                               "rows_written": written})
        return published

    # -- reading --------------------------------------------------------------------------------
    def open(self, actor: Actor, notice_id: str) -> tuple[Notice, Delivery | None]:
        """A notice for one of its recipients (recording that they read it, once) or its publisher.

        Raises:
            NotFound: no such notice, or the actor is neither a recipient nor the publisher.
        """
        notice = self.store.get(notice_id)
        delivery = self.store.delivery(actor.userid, notice) if notice is not None else None
        if notice is None or (delivery is None and actor.userid != notice.publisher):
            raise NotFound("No such notice.")
        if delivery is not None and not delivery.read:
            at = self.clock().isoformat(timespec="milliseconds")
            if self.store.mark_read(delivery, at):
                delivery = replace(delivery, read_at=at)
            else:  # read meanwhile (another tab): the stored receipt stands
                delivery = self.store.delivery(actor.userid, notice) or delivery
        return notice, delivery

    def addressed_to(self, actor: Actor, column: str | None, limit: int,
                     after: str | None) -> tuple[list[Delivery], str | None]:
        """Notices addressed to the actor, newest first, with their read flag."""
        return self.store.addressed_to(actor.userid, column, limit, after)

    def published_by(self, actor: Actor, limit: int, after: str | None) -> tuple[list[Notice], str | None]:
        return self.store.published_by(actor.userid, limit, after)

    def receipts(self, actor: Actor, notice_id: str, limit: int, after: str | None) -> tuple[Receipts, str | None]:
        """Read counts and one page of who has not read it yet, for the publisher only.

        Raises: NotFound (no such notice, or not the actor's).
        """
        notice = self.store.get(notice_id)
        if notice is None or notice.publisher != actor.userid:
            raise NotFound("No such notice.")
        unread, position = self.store.unread(notice_id, limit, after)
        return Receipts(notice_id=notice_id, total=notice.recipients, read=notice.read, unread_userids=unread), position


def _without(recipients: list[str], publisher: str) -> list[str]:
    """The publisher is not sent their own notice (nor counted among its readers)."""
    return [userid for userid in recipients if userid != publisher]
