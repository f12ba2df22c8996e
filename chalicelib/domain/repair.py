"""Dormitory repair (学生公寓报修): the repair order that follows an approved ``dorm-repair`` application.

A student files ``dorm-repair`` in the service hall; logistics approving it (the hall's single step)
opens a repair order, keyed by the application id. From there the order has its own life::

    accepted ──assign──> assigned ──done──> done ──confirm──> closed
                 ^  │ (reassign)            │
                 │  └──────<─────────────── reopen (the student: not fixed)
    accepted / assigned ──(the student cancels the approved application)──> cancelled

Logistics assigns, reassigns and marks done; the student who reported it confirms (with a rating)
or reopens. Every change appends to the history and bumps ``version``; storage writes it only if
the version read is still current, so two people acting at once give one success and one 409.

Pure rules plus :class:`RepairDesk`, which receives its collaborators (the store, the directory,
the notifier, the clock) and never builds a client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo
from typing import Any, Literal, Protocol

from chalicelib.domain.access import Actor, Role
from chalicelib.domain.notifications import Notification
from chalicelib.domain.workflow import Application, Transition, became_approved, was_cancelled
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound

RepairStatus = Literal["accepted", "assigned", "done", "closed", "cancelled"]
STATUSES: tuple[str, ...] = ("accepted", "assigned", "done", "closed", "cancelled")
OPEN: tuple[str, ...] = ("accepted", "assigned", "done")  # logistics' default list: not finished yet
RepairVerb = Literal["accept", "assign", "done", "confirm", "reopen", "cancel"]

# Where each verb may start from; anything else is an illegal transition (409).
_FROM: dict[str, frozenset[str]] = {
    "assign": frozenset({"accepted", "assigned"}),  # assigned -> assigned is a reassignment
    "done": frozenset({"assigned"}),
    "confirm": frozenset({"done"}),
    "reopen": frozenset({"done"}),
    "cancel": frozenset({"accepted", "assigned"}),
}
_TO: dict[str, RepairStatus] = {"assign": "assigned", "done": "done", "confirm": "closed", "reopen": "assigned",
                                "cancel": "cancelled"}
_VERB_NAMES = {"assign": "派单", "done": "完工", "confirm": "确认", "reopen": "返修", "cancel": "取消"}
_STATUS_NAMES = {"accepted": "已受理", "assigned": "已派单", "done": "已完工", "closed": "已关闭",
                 "cancelled": "已取消"}


@dataclass(frozen=True)
class RepairEvent:
    at: str  # UTC ISO-8601
    actor: str
    verb: RepairVerb
    from_status: str | None
    to_status: str
    note: str = ""


@dataclass(frozen=True)
class RepairOrder:
    """A repair order. ``order_id`` is the id of the application it came from."""

    order_id: str
    student: str
    building: str
    room: str
    kind: str
    description: str
    available_time: str
    status: RepairStatus
    version: int
    created_at: str
    updated_at: str
    mobile: str | None = None
    photos: tuple[str, ...] = ()
    worker: str | None = None
    planned_date: str | None = None  # campus date YYYY-MM-DD
    assigned_by: str | None = None
    done_note: str = ""
    rating: int | None = None
    comment: str = ""
    reopen_count: int = 0
    history: tuple[RepairEvent, ...] = ()

    @property
    def place(self) -> str:
        return f"{self.building} {self.room}"


# -- when the hall tells us -----------------------------------------------------------------------
def order_from(app: Application, transition: Transition) -> RepairOrder:
    """A new order for an approved application, ``accepted``; the form fields are copied in."""
    data, at = app.data, transition.at
    return RepairOrder(
        order_id=app.app_id, student=app.applicant.userid, building=str(data.get("building", "")),
        room=str(data.get("room", "")), kind=str(data.get("kind", "other")),
        description=str(data.get("description", "")), available_time=str(data.get("available_time", "anytime")),
        mobile=data.get("mobile"), photos=tuple(data.get("photos") or ()), status="accepted", version=1,
        created_at=at, updated_at=at,
        history=(RepairEvent(at=at, actor=transition.actor, verb="accept", from_status=None,
                             to_status="accepted"),),
    )


# -- who may do what ------------------------------------------------------------------------------
def is_logistics(actor: Actor) -> bool:
    return actor.has(Role.LOGISTICS)


def can_view(order: RepairOrder, actor: Actor) -> bool:
    """The student who reported it and logistics; nobody else learns it exists."""
    return actor.userid == order.student or is_logistics(actor)


def _move(order: RepairOrder, actor: str, verb: RepairVerb, now: datetime, note: str = "",
          **changes: Any) -> RepairOrder:
    if order.status not in _FROM[verb]:
        raise Conflict(f"A repair order that is {order.status} cannot be {_PAST[verb]}.")
    at = _iso(now)
    to = _TO[verb]
    event = RepairEvent(at=at, actor=actor, verb=verb, from_status=order.status, to_status=to, note=note)
    return replace(order, **changes, status=to, version=order.version + 1, updated_at=at,
                   history=(*order.history, event))


_PAST = {"assign": "assigned", "done": "marked done", "confirm": "confirmed", "reopen": "reopened",
         "cancel": "cancelled"}


def _require_logistics(actor: Actor) -> None:
    if not is_logistics(actor):
        raise Forbidden("Only logistics can do this.")


def _require_student(order: RepairOrder, actor: Actor) -> None:
    if actor.userid != order.student:
        raise Forbidden("Only the student who reported the repair can do this.")


def assign(order: RepairOrder, actor: Actor, worker: str, planned_date: date, now: datetime,
           today: date) -> RepairOrder:
    """Logistics sends a worker (again, when the order is already assigned or was reopened).

    Raises:
        Forbidden: not logistics.
        Invalid: the planned date is before today (campus calendar).
        Conflict: the order is done, closed or cancelled.
    """
    _require_logistics(actor)
    worker = worker.strip()
    if not worker:
        raise Invalid("Name the worker.", {"worker": "required"})
    if planned_date < today:
        raise Invalid("The planned date is in the past.", {"planned_date": f"must be {today.isoformat()} or later"})
    return _move(order, actor.userid, "assign", now, f"{worker} {planned_date.isoformat()}", worker=worker,
                 planned_date=planned_date.isoformat(), assigned_by=actor.userid)


def mark_done(order: RepairOrder, actor: Actor, note: str, now: datetime) -> RepairOrder:
    """Logistics reports the repair finished; the student is asked to confirm.

    Raises: Forbidden (not logistics), Conflict (not assigned).
    """
    _require_logistics(actor)
    return _move(order, actor.userid, "done", now, note, done_note=note)


def confirm(order: RepairOrder, actor: Actor, rating: int, comment: str, now: datetime) -> RepairOrder:
    """The student confirms the repair with a rating from 1 to 5; the order is closed.

    Raises: Forbidden (not the student), Invalid (rating), Conflict (not done).
    """
    _require_student(order, actor)
    if not 1 <= rating <= 5:
        raise Invalid("Rate the repair from 1 to 5.", {"rating": "must be 1 to 5"})
    return _move(order, actor.userid, "confirm", now, comment, rating=rating, comment=comment)


def reopen(order: RepairOrder, actor: Actor, reason: str, now: datetime) -> RepairOrder:
    """The student says it is not fixed: the order goes back to the worker it was assigned to.

    Raises: Forbidden (not the student), Invalid (no reason), Conflict (not done).
    """
    _require_student(order, actor)
    if not reason.strip():
        raise Invalid("Say what is still wrong.", {"reason": "required"})
    return _move(order, actor.userid, "reopen", now, reason, reopen_count=order.reopen_count + 1)


def cancel(order: RepairOrder, actor: str, now: datetime) -> RepairOrder | None:
    """The student cancelled the approved application: an order not yet repaired is cancelled.

    Returns ``None`` when there is nothing to cancel (already done, closed or cancelled).
    """
    if order.status not in _FROM["cancel"]:
        return None
    return _move(order, actor, "cancel", now)


# -- who hears about it ---------------------------------------------------------------------------
def logistics_recipients(order: RepairOrder, holders: Sequence[str]) -> tuple[str, ...]:
    """Whoever assigned the order, if they still hold the role; otherwise everyone in logistics."""
    if order.assigned_by and order.assigned_by in holders:
        return (order.assigned_by,)
    return tuple(holders)


def notification_for(order: RepairOrder, logistics: Sequence[str]) -> Notification | None:
    """The message the order's latest change calls for (``None`` for its creation: the hall's own
    "approved" message already tells the student the repair was accepted)."""
    last = order.history[-1]
    key = f"repair:{order.order_id}:v{order.version}:{last.verb}"
    title = "学生公寓报修"
    if last.verb == "assign":
        return Notification(key=key, recipients=(order.student,), title=title,
                            body=f"您的报修（{order.place}）已派单：维修人员{order.worker}，"
                                 f"计划{order.planned_date}上门。")
    if last.verb == "done":
        return Notification(key=key, recipients=(order.student,), title=title,
                            body=f"您的报修（{order.place}）已维修完成，请确认并评价；如仍未修好，可申请返修。")
    to = logistics_recipients(order, logistics)
    if not to:
        return None
    if last.verb == "reopen":
        return Notification(key=key, recipients=to, title=f"返修：{title}",
                            body=f"报修（{order.place}）学生反馈仍未修好，已退回维修：{last.note}")
    if last.verb == "confirm":
        return Notification(key=key, recipients=to, title=title,
                            body=f"报修（{order.place}）学生已确认完成，评分{order.rating}分。")
    if last.verb == "cancel":
        return Notification(key=key, recipients=to, title=title, body=f"报修（{order.place}）已被学生取消。")
    return None


def status_name(status: str) -> str:
    return _STATUS_NAMES.get(status, status)


# -- the desk: rules wired to their collaborators --------------------------------------------------
class RepairStore(Protocol):
    def get(self, order_id: str) -> RepairOrder | None: ...
    def create(self, order: RepairOrder) -> bool: ...
    def save(self, order: RepairOrder, expected_version: int) -> None: ...
    def of_student(self, student: str, status: str | None, limit: int,
                   after: str | None) -> tuple[list[RepairOrder], str | None]: ...
    def in_statuses(self, statuses: Iterable[str], limit: int,
                    after: str | None) -> tuple[list[RepairOrder], str | None]: ...


class Holders(Protocol):
    def holders(self, authority: str) -> list[str]: ...


LOGISTICS = f"role:{Role.LOGISTICS.value}"


@dataclass
class RepairDesk:
    store: RepairStore
    people: Holders
    notify: Callable[[Notification], int]
    clock: Callable[[], datetime]
    tz: tzinfo

    # -- from the service hall --------------------------------------------------------------------
    def on_transition(self, app: Application, transition: Transition) -> RepairOrder | None:
        """React to a ``dorm-repair`` transition; returns the order it opened or cancelled, if any.

        Idempotent: a repeated approval finds the order there (the conditional put refuses to
        overwrite it), a repeated cancellation finds it cancelled.
        """
        if became_approved(app, transition):
            order = order_from(app, transition)
            return order if self.store.create(order) else None
        if was_cancelled(app, transition):
            return self._cancel(app.app_id, transition.actor)
        return None

    def _cancel(self, order_id: str, actor: str) -> RepairOrder | None:
        for _ in range(3):  # a logistics change may race the cancellation: reread and retry
            order = self.store.get(order_id)
            moved = cancel(order, actor, self.clock()) if order is not None else None
            if order is None or moved is None:
                return None
            try:
                self.store.save(moved, order.version)
            except Conflict:
                continue
            self._tell(moved)
            return moved
        raise Conflict("The repair order kept changing; the cancellation was not applied.")

    # -- reading ----------------------------------------------------------------------------------
    def read(self, actor: Actor, order_id: str) -> RepairOrder:
        """Raises: NotFound (no such order, or not the actor's to see: indistinguishable)."""
        order = self.store.get(order_id)
        if order is None or not can_view(order, actor):
            raise NotFound("No such repair order.")
        return order

    def list_orders(self, actor: Actor, status: str | None, limit: int,
                    after: str | None) -> tuple[list[RepairOrder], str | None]:
        """Logistics: every order in ``status`` (default: the open ones), oldest first.
        Anyone else: their own orders, newest first, optionally in one status."""
        if is_logistics(actor):
            return self.store.in_statuses([status] if status else OPEN, limit, after)
        return self.store.of_student(actor.userid, status, limit, after)

    # -- changing ---------------------------------------------------------------------------------
    def assign(self, actor: Actor, order_id: str, worker: str, planned_date: date) -> RepairOrder:
        now = self.clock()
        return self._apply(actor, order_id, lambda o: assign(o, actor, worker, planned_date, now, self._today(now)))

    def mark_done(self, actor: Actor, order_id: str, note: str) -> RepairOrder:
        return self._apply(actor, order_id, lambda o: mark_done(o, actor, note, self.clock()))

    def confirm(self, actor: Actor, order_id: str, rating: int, comment: str) -> RepairOrder:
        return self._apply(actor, order_id, lambda o: confirm(o, actor, rating, comment, self.clock()))

    def reopen(self, actor: Actor, order_id: str, reason: str) -> RepairOrder:
        return self._apply(actor, order_id, lambda o: reopen(o, actor, reason, self.clock()))

    def _apply(self, actor: Actor, order_id: str, change: Callable[[RepairOrder], RepairOrder]) -> RepairOrder:
        """Read (in scope), change by the rules, write if nobody changed it meanwhile, tell people.

        Raises: NotFound, Forbidden, Invalid, Conflict (illegal transition or lost race).
        """
        order = self.read(actor, order_id)
        moved = change(order)
        self.store.save(moved, order.version)
        self._tell(moved)
        return moved

    def _tell(self, order: RepairOrder) -> None:
        needs_logistics = order.history[-1].verb in ("reopen", "confirm", "cancel")
        notification = notification_for(order, self.people.holders(LOGISTICS) if needs_logistics else ())
        if notification is not None:
            self.notify(notification)

    def _today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="milliseconds")
