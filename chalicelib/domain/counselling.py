"""Counselling appointments (心理咨询预约): slots published by the psych centre, one booking each.

The rules, in plain Python with the clock passed in:

* Only the psych centre publishes and withdraws slots. A slot lasts at most three hours, starts in
  the future and no further ahead than the publication horizon.
* Students and staff book (third-party staff are not the centre's clients). Everybody but the
  centre sees open slots only (unbooked, not started): never who booked the others.
* A slot holds at most one booking. Exclusivity is the store's job (one conditional write on the
  slot); the rules here only refuse what is visibly impossible before trying.
* One person holds at most ``max_future_bookings`` bookings that have not started yet.
* A booker may cancel until ``cancel_cutoff`` before the start (inclusive); the centre until the
  start. Once a session has started nobody cancels it, nor withdraws its slot: it took place (or
  was missed), and either is on record.
* A booking is seen by its booker and by the psych centre, nobody else: to anyone else it does not
  exist (:class:`NotFound`, the same answer as for a slot that was never published).
* The topic is counselling data: it is never logged, stored sealed, and each time the centre is
  shown a booker's topic (reading a booking, listing them, or in the answer to its cancelling one)
  an audit record says who read whose (without the topic).

:class:`CounsellingDesk` ties the rules to the collaborators it receives (the slot store, the
directory, the notifier, the audit log, the clock); it builds none of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from chalicelib.domain.access import Actor, Role
from chalicelib.domain.directory import AuditEntry
from chalicelib.domain.notifications import Notification
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound

Mode = Literal["in_person", "online"]
SlotStatus = Literal["open", "booked", "withdrawn"]
MAX_SLOT_LENGTH = timedelta(hours=3)
CLIENT_TYPES = frozenset({"student", "staff"})  # the centre counsels students and staff
CENTRE = f"role:{Role.PSYCH_CENTER.value}"
MODE_NAMES = {"in_person": "面谈", "online": "线上"}
# Reading lists never looks further ahead than this (the horizon setting is capped below it).
LOOKAHEAD = timedelta(days=366)
MAX_LIST_SPAN = timedelta(days=92)


@dataclass(frozen=True)
class Booking:
    """Who holds a slot. ``booking_id`` is new for every booking, so a slot booked again after a
    cancellation is a different booking (and its notifications are not mistaken for repeats)."""

    booking_id: str
    booker: str
    booked_at: str
    topic: str | None = None
    contact: str | None = None


@dataclass(frozen=True)
class Slot:
    slot_id: str
    start: datetime  # aware, UTC
    end: datetime
    counsellor: str
    place: str
    mode: str
    month: str  # campus calendar month of the start (``2026-12``): the partition lists read
    status: str  # open | booked | withdrawn
    version: int
    published_by: str
    published_at: str
    booking: Booking | None = None

    @property
    def key(self) -> str:
        """The sort key of the slot in every list: start time, then id."""
        return slot_key(self.start, self.slot_id)


@dataclass(frozen=True)
class Holdings:
    """The slots one person has booked (their keys), with the version this read saw (0: none yet).

    The store writes a person's holdings in the same transaction as the slot they book, and only if
    the version is unchanged, so two bookings by one person at once cannot both pass the quota.
    """

    booker: str
    keys: frozenset[str] = frozenset()
    version: int = 0


@dataclass(frozen=True)
class CounsellingRules:
    cancel_cutoff: timedelta
    max_future_bookings: int
    horizon: timedelta
    tz: ZoneInfo


@dataclass(frozen=True)
class BookingDetail:
    """A booking as its booker or the centre sees it."""

    slot: Slot
    booking: Booking
    booker_name: str | None
    status: Literal["booked", "cancelled"]
    cancel_until: datetime  # the booker may cancel until then (inclusive); the centre any time


@dataclass(frozen=True)
class Page:
    """One page of a list and the position of the next page (``None``: the last page)."""

    items: list[Any]
    next: str | None


# -- pure rules --------------------------------------------------------------------------------
def is_centre(actor: Actor) -> bool:
    return actor.has(Role.PSYCH_CENTER)


def slot_key(start: datetime, slot_id: str) -> str:
    return f"{utc_iso(start)}#{slot_id}"


def start_of_key(key: str) -> datetime:
    return datetime.fromisoformat(key.split("#", 1)[0])


def utc_iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def _utc_seconds(when: datetime) -> datetime:
    return when.astimezone(timezone.utc).replace(microsecond=0)


def month_of(when: datetime, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m")


def months_covering(since: datetime, until: datetime, tz: ZoneInfo) -> list[str]:
    """The campus months from the one holding ``since`` to the one holding ``until``, in order."""
    first, last = since.astimezone(tz), until.astimezone(tz)
    year, month = first.year, first.month
    months = []
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def check_slot_times(start: datetime, end: datetime, now: datetime, horizon: timedelta) -> None:
    """Raises: Invalid naming ``start``/``end`` when the times break a rule."""
    fields: dict[str, str] = {}
    if start.tzinfo is None or end.tzinfo is None:
        raise Invalid("Times need an offset.", {name: "needs an offset, e.g. +08:00"
                                               for name, value in (("start", start), ("end", end))
                                               if value.tzinfo is None})
    if start <= now:
        fields["start"] = "must be in the future"
    elif start > now + horizon:
        fields["start"] = f"at most {horizon.days} days ahead"
    if end <= start:
        fields["end"] = "must be after the start"
    elif end - start > MAX_SLOT_LENGTH:
        fields["end"] = "a slot lasts at most 3 hours"
    if fields:
        raise Invalid("The slot's times are not acceptable.", fields)


def may_see_booking(actor: Actor, slot: Slot) -> bool:
    return slot.booking is not None and (slot.booking.booker == actor.userid or is_centre(actor))


def check_client(actor: Actor) -> None:
    """Raises: Forbidden for people the centre does not serve (third-party staff)."""
    if actor.person_type not in CLIENT_TYPES:
        raise Forbidden("Counselling appointments are for students and staff.")


def check_bookable(slot: Slot, now: datetime) -> None:
    """Raises: Conflict when the slot cannot be booked now (taken, withdrawn or started)."""
    if slot.status == "withdrawn":
        raise Conflict("This slot was withdrawn by the counselling centre.")
    if slot.booking is not None:
        raise Conflict("This slot has already been booked; please choose another.")
    if slot.start <= now:
        raise Conflict("This slot has already started.")


def future_keys(keys: Iterable[str], now: datetime) -> frozenset[str]:
    """The holdings that have not started yet (those count against the quota)."""
    return frozenset(key for key in keys if start_of_key(key) > now)


def check_quota(future: frozenset[str], limit: int) -> None:
    """Raises: Conflict when ``future`` already fills the quota."""
    if len(future) >= limit:
        raise Conflict(f"You already have {len(future)} upcoming counselling booking(s); at most {limit} "
                       "at a time. Cancel one or wait until it has taken place.")


def cancel_deadline(slot: Slot, cutoff: timedelta) -> datetime:
    """The last moment a booker may cancel (inclusive)."""
    return slot.start - cutoff


def check_cancel(actor: Actor, slot: Slot, now: datetime, cutoff: timedelta) -> Booking:
    """The booking ``actor`` may cancel now.

    Raises:
        NotFound: no booking on the slot, or not one ``actor`` may see.
        Conflict: the session has started (for anyone), or the booker is past the cutoff.
    """
    if not may_see_booking(actor, slot):
        raise NotFound("No such booking.")
    assert slot.booking is not None
    if slot.start <= now:
        raise Conflict("This session has already started and can no longer be cancelled.")
    if not is_centre(actor) and now > cancel_deadline(slot, cutoff):
        hours = int(cutoff.total_seconds() // 3600)
        raise Conflict(f"Bookings can only be cancelled up to {hours} hours before the start; "
                       "please contact the counselling centre.")
    return slot.booking


def check_withdrawable(slot: Slot, now: datetime) -> None:
    """Raises: Conflict when the slot was withdrawn already or has started."""
    if slot.status == "withdrawn":
        raise Conflict("This slot was withdrawn already.")
    if slot.start <= now:
        raise Conflict("This slot has already started.")


def visible_slots(actor: Actor, slots: Iterable[Slot], now: datetime) -> list[Slot]:
    """What ``actor`` may see of a list: the centre every slot; anyone else open, future ones."""
    if is_centre(actor):
        return list(slots)
    return [slot for slot in slots if slot.status == "open" and slot.booking is None and slot.start > now]


def slot_period(now: datetime, since: datetime | None, until: datetime | None,
                centre: bool) -> tuple[datetime, datetime]:
    """The period a slot list covers: ``[since, until)``, by default the coming 31 days.

    Only the centre looks back (people book the future).

    Raises: Invalid when the period is empty, longer than 92 days, or not within a year of now.
    """
    for name, value in (("from", since), ("to", until)):
        # Aware subtraction cannot overflow; adding days to year 9999 could.
        if value is not None and abs(value - now) > LOOKAHEAD:
            raise Invalid("The period is too far from today.", {name: "within a year of today"})
    start = since or now
    if not centre:
        start = max(start, now)
    end = until or (start + timedelta(days=31))
    if end <= start:
        raise Invalid("The period is empty.", {"to": "must be after from (and after now)"})
    if end - start > MAX_LIST_SPAN:
        raise Invalid("The period is too long.", {"to": "at most 92 days after from"})
    return start, end


def describe(slot: Slot, tz: ZoneInfo) -> str:
    """``12月01日 14:00-15:00，张老师，心理中心 201（面谈）`` in campus time; no personal data."""
    start, end = slot.start.astimezone(tz), slot.end.astimezone(tz)
    return (f"{start.month:02d}月{start.day:02d}日 {start:%H:%M}-{end:%H:%M}，{slot.counsellor}，"
            f"{slot.place}（{MODE_NAMES.get(slot.mode, slot.mode)}）")


# -- collaborators -----------------------------------------------------------------------------
class SlotStore(Protocol):
    def add(self, slot: Slot) -> None: ...
    def get(self, slot_id: str) -> Slot | None: ...
    def in_period(self, months: Sequence[str], after: str, until: str, limit: int,
                  open_only: bool) -> tuple[list[Slot], str | None]: ...
    def booked_from(self, months: Sequence[str], after: str, limit: int) -> tuple[list[Slot], str | None]: ...
    def of_booker(self, booker: str, limit: int, before: str | None) -> tuple[list[Slot], str | None]: ...
    def holdings(self, booker: str) -> Holdings: ...
    def book(self, slot: Slot, booking: Booking, holdings: Holdings, keys: frozenset[str]) -> None: ...
    def release(self, slot: Slot, *, withdraw: bool) -> None: ...


class People(Protocol):
    def get_people(self, userids: Sequence[str]) -> Mapping[str, Any]: ...
    def holders(self, authority: str) -> list[str]: ...


class AuditLog(Protocol):
    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None: ...
    def record_many(self, actor: str, entries: Sequence[AuditEntry]) -> None: ...


@dataclass
class CounsellingDesk:
    slots: SlotStore
    people: People
    notify: Callable[[Notification], int]
    audit: AuditLog
    rules: CounsellingRules
    clock: Callable[[], datetime]

    # -- the centre -----------------------------------------------------------------------------
    def publish(self, actor: Actor, start: datetime, end: datetime, counsellor: str, place: str,
                mode: str) -> Slot:
        """Publish an open slot.

        Raises: Invalid (times), Conflict (id collision, practically never).
        """
        now = self.clock()
        check_slot_times(start, end, now, self.rules.horizon)
        slot = Slot(slot_id=uuid.uuid4().hex, start=_utc_seconds(start), end=_utc_seconds(end),
                    counsellor=counsellor, place=place, mode=mode, month=month_of(start, self.rules.tz),
                    status="open", version=1, published_by=actor.userid, published_at=utc_iso(now))
        self.slots.add(slot)
        return slot

    def withdraw(self, actor: Actor, slot_id: str) -> Slot:
        """Withdraw a future slot; a booking on it is cancelled and its booker told.

        Raises: NotFound, Conflict (withdrawn already, started, or changed meanwhile).
        """
        slot = self._slot(slot_id)
        check_withdrawable(slot, self.clock())
        self.slots.release(slot, withdraw=True)
        if slot.booking is not None:
            self.notify(Notification(
                key=f"counselling:{slot.booking.booking_id}:withdrawn", recipients=(slot.booking.booker,),
                title="心理咨询预约已取消",
                body=f"很抱歉，您预约的心理咨询（{describe(slot, self.rules.tz)}）因故取消，请重新选择时段。"))
        return replace(slot, status="withdrawn", booking=None, version=slot.version + 1)

    # -- everyone -------------------------------------------------------------------------------
    def list_slots(self, actor: Actor, since: datetime | None, until: datetime | None, limit: int,
                   after: str | None) -> Page:
        """Slots starting in ``[since, until)``, soonest first: the centre sees all of them with
        their status, anyone else only open, future ones (nothing about who booked the others)."""
        now = self.clock()
        centre = is_centre(actor)
        start, end = slot_period(now, since, until, centre)
        lower = max(after or "", utc_iso(start))
        items, position = self.slots.in_period(months_covering(start, end, self.rules.tz), lower, utc_iso(end),
                                               limit, open_only=not centre)
        return Page(visible_slots(actor, items, now), position)

    def book(self, actor: Actor, slot_id: str, topic: str | None, contact: str | None) -> BookingDetail:
        """Book a slot for ``actor``.

        Raises:
            Forbidden: not a student or staff member.
            NotFound: no such slot.
            Conflict: taken (also when someone else won a race for it), withdrawn, started, or the
                quota of future bookings is full.
        """
        check_client(actor)
        now = self.clock()
        slot = self._slot(slot_id)
        check_bookable(slot, now)
        holdings = self.slots.holdings(actor.userid)
        future = future_keys(holdings.keys, now)
        check_quota(future, self.rules.max_future_bookings)
        booking = Booking(booking_id=uuid.uuid4().hex, booker=actor.userid, booked_at=utc_iso(now),
                          topic=topic or None, contact=contact or None)
        # Past holdings are dropped as we go, so the record stays as small as the quota.
        self.slots.book(slot, booking, holdings, future | {slot.key})
        booked = replace(slot, status="booked", booking=booking, version=slot.version + 1)
        self._tell_centre(booking, "booked", f"新的心理咨询预约：{describe(slot, self.rules.tz)}。")
        return self._details([booked])[0]

    def cancel(self, actor: Actor, slot_id: str) -> BookingDetail:
        """Cancel the booking on a slot (its booker before the cutoff, the centre before the start);
        the slot opens again. Returns the cancelled booking, topic included: the centre being shown
        a booker's topic is audited, as on any other read.

        Raises: NotFound (no booking visible to ``actor``), Conflict (too late, or changed meanwhile).
        """
        slot = self.slots.get(slot_id)
        if slot is None:  # the same answer as for a booking that is not yours: nothing to learn
            raise NotFound("No such booking.")
        booking = check_cancel(actor, slot, self.clock(), self.rules.cancel_cutoff)
        self.slots.release(slot, withdraw=False)
        self._audit_topics(actor, [slot])
        when = describe(slot, self.rules.tz)
        self._tell_centre(booking, "cancelled", f"心理咨询预约已取消：{when}，该时段已重新开放。",
                          but=actor.userid)
        if actor.userid != booking.booker:
            self.notify(Notification(key=f"counselling:{booking.booking_id}:cancelled:booker",
                                     recipients=(booking.booker,), title="心理咨询预约已取消",
                                     body=f"心理中心取消了您的心理咨询预约（{when}），如有需要请重新预约。"))
        return replace(self._details([slot])[0], status="cancelled")

    def read_booking(self, actor: Actor, slot_id: str) -> BookingDetail:
        """The booking on a slot, for its booker or the centre (the centre's read is audited).

        Raises: NotFound (no booking, or not visible: indistinguishable).
        """
        slot = self.slots.get(slot_id)
        if slot is None or not may_see_booking(actor, slot):
            raise NotFound("No such booking.")
        self._audit_topics(actor, [slot])
        return self._details([slot])[0]

    def bookings(self, actor: Actor, limit: int, after: str | None) -> Page:
        """The centre: every upcoming booking, soonest first. Anyone else: their own, latest first.

        Returns a page of :class:`BookingDetail`.
        """
        if is_centre(actor):
            now = self.clock()
            months = months_covering(now, now + LOOKAHEAD, self.rules.tz)
            items, position = self.slots.booked_from(months, max(after or "", utc_iso(now)), limit)
            self._audit_topics(actor, items)
        else:
            items, position = self.slots.of_booker(actor.userid, limit, after)
        return Page(self._details(items), position)

    # -- internals ------------------------------------------------------------------------------
    def _slot(self, slot_id: str) -> Slot:
        slot = self.slots.get(slot_id)
        if slot is None:
            raise NotFound("No such slot.")
        return slot

    def _details(self, slots: Sequence[Slot]) -> list[BookingDetail]:
        """The booked ones of ``slots``, with their bookers' names from the directory."""
        booked = [(slot, slot.booking) for slot in slots if slot.booking is not None]
        people = self.people.get_people([booking.booker for _, booking in booked])
        return [BookingDetail(slot=slot, booking=booking, status="booked",
                              booker_name=getattr(people.get(booking.booker), "name", None),
                              cancel_until=cancel_deadline(slot, self.rules.cancel_cutoff))
                for slot, booking in booked]

    def _audit_topics(self, actor: Actor, slots: Sequence[Slot]) -> None:
        """One audit record per booker's topic the centre is shown (not the topic itself)."""
        entries = [AuditEntry(subject=f"person#{s.booking.booker}", action="counselling.topic.read",
                              detail={"slot_id": s.slot_id, "booking_id": s.booking.booking_id})
                   for s in slots
                   if s.booking is not None and s.booking.topic and s.booking.booker != actor.userid]
        if len(entries) == 1:
            entry = entries[0]
            self.audit.record(subject=entry.subject, actor=actor.userid, action=entry.action, detail=entry.detail)
        elif entries:
            self.audit.record_many(actor.userid, entries)

    def _tell_centre(self, booking: Booking, event: str, body: str, but: str | None = None) -> None:
        """Notify the centre's staff (no booker name, no topic: the message shows on lock screens)."""
        staff = tuple(u for u in self.people.holders(CENTRE) if u not in (but, booking.booker))
        if staff:
            self.notify(Notification(key=f"counselling:{booking.booking_id}:{event}", recipients=staff,
                                     title="心理咨询预约", body=body + "详情请在服务大厅查看。"))
