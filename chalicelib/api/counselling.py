"""Counselling appointments (心理咨询预约): the psych centre publishes slots, people book them.

A booking is seen by its booker and the psych centre only: to anyone else (counselors and the IT
centre included) it answers 404, like a slot that never existed. The rules live in
:mod:`chalicelib.domain.counselling`; the views parse, call the desk once and shape the answer.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.schemas import PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.db.counselling import Sealer, SlotRepository
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.counselling import BookingDetail, CounsellingDesk, CounsellingRules, Slot
from chalicelib.domain.counselling import Mode as SlotMode
from chalicelib.domain.identity import InvalidIdentity, normalise_mobile
from chalicelib.errors import Conflict, NotFound
from chalicelib.settings import get_settings

area = Area("counselling")
ANYONE = authenticated()
CENTRE = authenticated(Role.PSYCH_CENTER)


# -- wiring -------------------------------------------------------------------------------------
def desk() -> CounsellingDesk:
    """The counselling desk, wired to its store, the directory, the notifications queue and the clock."""
    settings = get_settings()
    rules = CounsellingRules(cancel_cutoff=timedelta(hours=settings.counselling_cancel_cutoff_hours),
                             max_future_bookings=settings.counselling_max_future_bookings,
                             horizon=timedelta(days=settings.counselling_horizon_days), tz=settings.tz)
    return CounsellingDesk(slots=slot_repository(deps.protector()), people=deps.directory(), notify=deps.notifier(),
                           audit=deps.audit(), rules=rules, clock=utc_now)


@functools.lru_cache(maxsize=4)
def slot_repository(sealer: Sealer) -> SlotRepository:
    return SlotRepository(sealer)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- shapes -------------------------------------------------------------------------------------
def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


class SlotView(BaseModel):
    id: str
    start: str
    end: str
    counsellor: str
    place: str
    mode: SlotMode
    status: Literal["open", "booked", "withdrawn"] = Field(description="Others than the centre only see open slots")

    @classmethod
    def of(cls, slot: Slot) -> SlotView:
        return cls(id=slot.slot_id, start=_iso(slot.start), end=_iso(slot.end), counsellor=slot.counsellor,
                   place=slot.place, mode=slot.mode, status=slot.status)


class SlotPage(BaseModel):
    items: list[SlotView]
    next: str | None


class BookingView(BaseModel):
    slot: SlotView
    booking_id: str
    status: Literal["booked", "cancelled"]
    booker: str
    booker_name: str | None
    topic: str | None
    contact: str | None
    booked_at: str
    cancel_until: str = Field(description="The booker may cancel until then; the psych centre until the start")

    @classmethod
    def of(cls, detail: BookingDetail) -> BookingView:
        booking = detail.booking
        return cls(slot=SlotView.of(detail.slot), booking_id=booking.booking_id, status=detail.status,
                   booker=booking.booker, booker_name=detail.booker_name, topic=booking.topic,
                   contact=booking.contact, booked_at=booking.booked_at, cancel_until=_iso(detail.cancel_until))


class BookingPage(BaseModel):
    items: list[BookingView]
    next: str | None


class SlotQuery(PageQuery):
    from_: AwareDatetime | None = Field(None, alias="from", description="Slots starting at or after (default: now)")
    to: AwareDatetime | None = Field(None, description="Slots starting before (default: 31 days after from; "
                                                       "at most 92)")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _restore_plus(cls, value: Any) -> Any:
        """A ``+08:00`` offset left unencoded in a query string arrives as `` 08:00``."""
        if isinstance(value, str) and len(value) > 19 and value[-6] == " ":
            return value[:-6] + "+" + value[-5:]
        return value


class SlotBody(RequestModel):
    start: AwareDatetime = Field(description="ISO-8601 with offset; in the future")
    end: AwareDatetime = Field(description="After the start, at most 3 hours later")
    counsellor: str = Field(min_length=1, max_length=40, description="The counsellor's name as shown to bookers")
    place: str = Field(min_length=1, max_length=100, description="Room, or the meeting link for online sessions")
    mode: SlotMode


class BookingBody(RequestModel):
    topic: str | None = Field(None, max_length=200, description="What you would like to talk about (optional; "
                              "only the counselling centre sees it)")
    contact: str | None = Field(None, max_length=20, description="Mainland mobile number (optional)")

    @field_validator("contact")
    @classmethod
    def _mobile(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalise_mobile(value)
        except InvalidIdentity:
            raise ValueError("not a mainland mobile number") from None


# -- slots --------------------------------------------------------------------------------------
@area.route("/counselling/slots", "POST", summary="Publish a counselling slot (psych centre)", policy=CENTRE,
            body=SlotBody, response=SlotView, status=201, errors=(Conflict,))
def publish_counselling_slot(body: SlotBody, actor: Actor) -> SlotView:
    return SlotView.of(desk().publish(actor, body.start, body.end, body.counsellor, body.place, body.mode))


@area.route("/counselling/slots", "GET", summary="Counselling slots of a period, soonest first (open ones; the "
            "psych centre: all, with their status)", policy=ANYONE, query=SlotQuery, response=SlotPage)
def list_counselling_slots(query: SlotQuery, actor: Actor) -> SlotPage:
    page = desk().list_slots(actor, query.from_, query.to, query.limit, query.position())
    return SlotPage(items=[SlotView.of(s) for s in page.items], next=cursor(page.next))


@area.route("/counselling/slots/{slot_id}/withdraw", "POST", summary="Withdraw a slot, cancelling its booking "
            "(psych centre)", policy=CENTRE, response=SlotView, errors=(NotFound, Conflict))
def withdraw_counselling_slot(slot_id: str, actor: Actor) -> SlotView:
    """The booker, if any, is told. 409 once the slot has started (or when withdrawn already)."""
    return SlotView.of(desk().withdraw(actor, slot_id))


# -- bookings -----------------------------------------------------------------------------------
@area.route("/counselling/slots/{slot_id}/booking", "POST", summary="Book a counselling slot", policy=ANYONE,
            body=BookingBody, response=BookingView, status=201, errors=(NotFound, Conflict))
def book_counselling_slot(slot_id: str, body: BookingBody, actor: Actor) -> BookingView:
    """Students and staff. 409 when the slot is taken (also when someone else was a moment faster),
    withdrawn or started, or when you already hold as many upcoming bookings as allowed."""
    return BookingView.of(desk().book(actor, slot_id, body.topic, body.contact))


@area.route("/counselling/slots/{slot_id}/booking", "GET", summary="The booking on a slot (its booker or the "
            "psych centre)", policy=ANYONE, response=BookingView, errors=(NotFound,))
def get_counselling_booking(slot_id: str, actor: Actor) -> BookingView:
    """The psych centre's reads of a booker's topic are audited."""
    return BookingView.of(desk().read_booking(actor, slot_id))


@area.route("/counselling/slots/{slot_id}/booking/cancel", "POST", summary="Cancel a booking (its booker up to "
            "the cutoff; the psych centre up to the start)", policy=ANYONE, response=BookingView,
            errors=(NotFound, Conflict))
def cancel_counselling_booking(slot_id: str, actor: Actor) -> BookingView:
    """409 once the session has started, for everyone. The psych centre being shown the booker's
    topic in the answer is audited, like its other reads."""
    return BookingView.of(desk().cancel(actor, slot_id))


@area.route("/counselling/bookings", "GET", summary="My counselling bookings, latest first (the psych centre: "
            "every upcoming booking, soonest first)", policy=ANYONE, query=PageQuery, response=BookingPage)
def list_counselling_bookings(query: PageQuery, actor: Actor) -> BookingPage:
    page = desk().bookings(actor, query.limit, query.position())
    return BookingPage(items=[BookingView.of(d) for d in page.items], next=cursor(page.next))
