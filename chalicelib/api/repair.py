"""Dormitory repair (学生公寓报修): the repair orders that approved ``dorm-repair`` applications open.

* the hall hook opens an order when logistics approves the application (and cancels it when the
  student cancels the approved application);
* ``GET /repairs``: a student's own orders, or logistics' list of open ones, oldest first;
* logistics assigns and marks done; the student confirms with a rating or reopens.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timezone

from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.schemas import PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.db.repair import RepairRepository
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.hall import on_transition
from chalicelib.domain.identity import mask_mobile
from chalicelib.domain.repair import RepairDesk, RepairOrder, RepairStatus, status_name
from chalicelib.domain.workflow import Application, Transition
from chalicelib.errors import Conflict, Forbidden, NotFound
from chalicelib.settings import get_settings

area = Area("repair")
ANYONE = authenticated()
LOGISTICS = authenticated(Role.LOGISTICS)


# -- shapes -------------------------------------------------------------------------------------
class RepairEventView(BaseModel):
    at: str
    actor: str
    verb: str
    from_status: str | None
    to_status: str
    note: str


class RepairView(BaseModel):
    id: str = Field(description="The id of the dorm-repair application the order came from")
    student: str
    building: str
    room: str
    kind: str
    description: str
    available_time: str
    mobile: str | None = Field(description="In full on the order itself, masked in lists")
    photos: list[str]
    status: RepairStatus
    status_name: str
    version: int
    created_at: str
    updated_at: str
    worker: str | None
    planned_date: str | None
    done_note: str
    rating: int | None
    comment: str
    reopen_count: int
    history: list[RepairEventView]

    @classmethod
    def of(cls, order: RepairOrder, *, listed: bool = False) -> RepairView:
        mobile = mask_mobile(order.mobile) if listed and order.mobile else order.mobile
        return cls(id=order.order_id, student=order.student, building=order.building, room=order.room,
                   kind=order.kind, description=order.description, available_time=order.available_time,
                   mobile=mobile, photos=list(order.photos), status=order.status,
                   status_name=status_name(order.status), version=order.version, created_at=order.created_at,
                   updated_at=order.updated_at, worker=order.worker, planned_date=order.planned_date,
                   done_note=order.done_note, rating=order.rating, comment=order.comment,
                   reopen_count=order.reopen_count, history=[RepairEventView(**vars(e)) for e in order.history])


class RepairPage(BaseModel):
    items: list[RepairView]
    next: str | None


class RepairQuery(PageQuery):
    status: RepairStatus | None = Field(None, description="Only orders in this status (logistics' default: "
                                                          "accepted, assigned and done)")


class AssignBody(RequestModel):
    worker: str = Field(min_length=1, max_length=32, description="The worker's name")
    planned_date: date = Field(description="Campus date of the visit, today or later")


class DoneBody(RequestModel):
    note: str = Field("", max_length=500)


class ConfirmBody(RequestModel):
    rating: int = Field(ge=1, le=5)
    comment: str = Field("", max_length=500)


class ReopenBody(RequestModel):
    reason: str = Field(min_length=1, max_length=500)


# -- collaborators ------------------------------------------------------------------------------
@functools.cache
def _orders() -> RepairRepository:
    return RepairRepository()


def desk() -> RepairDesk:
    return RepairDesk(store=_orders(), people=deps.directory(), notify=deps.notifier(), clock=_utc_now,
                      tz=get_settings().tz)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@on_transition("repair")
def follow_repair_application(app: Application, transition: Transition) -> None:
    """Approved: open the order (once). Cancelled by the student: cancel an unfinished order."""
    desk().on_transition(app, transition)


# -- routes -------------------------------------------------------------------------------------
@area.route("/repairs", "GET", summary="My repair orders (newest first); for logistics the open ones, oldest "
            "first", policy=ANYONE, query=RepairQuery, response=RepairPage)
def list_repairs(query: RepairQuery, actor: Actor) -> RepairPage:
    items, position = desk().list_orders(actor, query.status, query.limit, query.position())
    return RepairPage(items=[RepairView.of(o, listed=True) for o in items], next=cursor(position))


@area.route("/repairs/{order_id}", "GET", summary="A repair order (its student and logistics)", policy=ANYONE,
            response=RepairView, errors=(NotFound,))
def get_repair(order_id: str, actor: Actor) -> RepairView:
    return RepairView.of(desk().read(actor, order_id))


@area.route("/repairs/{order_id}/assign", "POST", summary="Send a worker (logistics; again to reassign)",
            policy=LOGISTICS, body=AssignBody, response=RepairView, errors=(NotFound, Conflict))
def assign_repair(order_id: str, body: AssignBody, actor: Actor) -> RepairView:
    """The student is told who comes and when. Done, closed or cancelled orders answer 409."""
    return RepairView.of(desk().assign(actor, order_id, body.worker, body.planned_date))


@area.route("/repairs/{order_id}/done", "POST", summary="Report the repair finished (logistics)",
            policy=LOGISTICS, body=DoneBody, response=RepairView, errors=(NotFound, Conflict))
def finish_repair(order_id: str, body: DoneBody, actor: Actor) -> RepairView:
    """Only an assigned order can be done; the student is asked to confirm."""
    return RepairView.of(desk().mark_done(actor, order_id, body.note))


@area.route("/repairs/{order_id}/confirm", "POST", summary="Confirm the repair with a rating (the student)",
            policy=ANYONE, body=ConfirmBody, response=RepairView, errors=(NotFound, Forbidden, Conflict))
def confirm_repair(order_id: str, body: ConfirmBody, actor: Actor) -> RepairView:
    return RepairView.of(desk().confirm(actor, order_id, body.rating, body.comment))


@area.route("/repairs/{order_id}/reopen", "POST", summary="Say it is not fixed: back to the worker (the student)",
            policy=ANYONE, body=ReopenBody, response=RepairView, errors=(NotFound, Forbidden, Conflict))
def reopen_repair(order_id: str, body: ReopenBody, actor: Actor) -> RepairView:
    return RepairView.of(desk().reopen(actor, order_id, body.reason))
