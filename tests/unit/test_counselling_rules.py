"""Counselling rules without AWS: slot times, who sees a booking, the quota, the cancellation cutoff,
and what the desk tells and records (with in-memory collaborators and an injected clock)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.access import Actor
from chalicelib.domain.counselling import (
    Booking,
    CounsellingDesk,
    CounsellingRules,
    Holdings,
    Slot,
    cancel_deadline,
    check_bookable,
    check_client,
    check_cancel,
    check_quota,
    check_slot_times,
    check_withdrawable,
    future_keys,
    may_see_booking,
    month_of,
    months_covering,
    slot_key,
    slot_period,
    visible_slots,
)
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)  # 10:00 on campus
START = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)  # 14:00 on campus
HOUR = timedelta(hours=1)
CUTOFF = timedelta(hours=24)

BOOKER = Actor("s001", "student", "cs", class_id="cs2001")
OTHER_STUDENT = Actor("s002", "student", "cs", class_id="cs2001")
CENTRE = Actor("xl01", "staff", "xlzx", roles=frozenset({"psych_center"}))
COUNSELOR = Actor("fdy01", "staff", "cs", roles=frozenset({"counselor"}), counselor_of=frozenset({"cs2001"}))
IT_ADMIN = Actor("admin", "staff", "nic", roles=frozenset({"it_admin"}))
STUDENT_AFFAIRS = Actor("xg01", "staff", "xgb", roles=frozenset({"student_affairs"}))


def slot(start: datetime = START, booker: str | None = None, status: str | None = None,
         topic: str | None = "考试焦虑") -> Slot:
    booking = Booking("b1", booker, "2026-11-20T02:00:00+00:00", topic=topic) if booker else None
    return Slot(slot_id="s1", start=start, end=start + HOUR, counsellor="张老师", place="心理中心 201",
                mode="in_person", month=month_of(start, SHANGHAI), status=status or ("booked" if booker else "open"),
                version=1, published_by="xl01", published_at="2026-11-20T02:00:00+00:00", booking=booking)


# -- slot times ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("start", "length", "bad"), [
    (NOW + HOUR, 3 * HOUR, {}),  # exactly three hours is allowed
    (NOW + HOUR, 3 * HOUR + timedelta(seconds=1), {"end": "a slot lasts at most 3 hours"}),
    (NOW, HOUR, {"start": "must be in the future"}),  # starting now is already too late
    (NOW - HOUR, HOUR, {"start": "must be in the future"}),
    (NOW + HOUR, timedelta(0), {"end": "must be after the start"}),
    (NOW + HOUR, -HOUR, {"end": "must be after the start"}),
    (NOW + timedelta(days=90), HOUR, {}),  # the horizon's last second
    (NOW + timedelta(days=90, seconds=1), HOUR, {"start": "at most 90 days ahead"}),
])
def test_slot_times(start: datetime, length: timedelta, bad: dict[str, str]) -> None:
    # Given a slot of this start and length, When it is checked at NOW with a 90-day horizon
    if not bad:
        check_slot_times(start, start + length, NOW, timedelta(days=90))
        return
    with pytest.raises(Invalid) as refused:
        check_slot_times(start, start + length, NOW, timedelta(days=90))
    # Then exactly the bad fields are named
    assert refused.value.fields == bad


def test_slot_times_without_offset_are_refused() -> None:
    with pytest.raises(Invalid) as refused:
        check_slot_times(datetime(2026, 12, 1, 14), START + HOUR, NOW, timedelta(days=90))
    assert set(refused.value.fields) == {"start"}


# -- who sees a booking -----------------------------------------------------------------------------
@pytest.mark.parametrize(("viewer", "sees"), [
    (BOOKER, True), (CENTRE, True), (OTHER_STUDENT, False), (COUNSELOR, False), (IT_ADMIN, False),
    (STUDENT_AFFAIRS, False),
])
def test_only_the_booker_and_the_centre_see_a_booking(viewer: Actor, sees: bool) -> None:
    assert may_see_booking(viewer, slot(booker="s001")) is sees
    # and an unbooked slot has no booking for anyone to see
    assert may_see_booking(viewer, slot()) is False


def test_people_other_than_the_centre_see_open_future_slots_only() -> None:
    # Given an open, a booked, a withdrawn and a started slot
    slots = [replace(slot(), slot_id="open"), replace(slot(booker="s002"), slot_id="booked"),
             replace(slot(status="withdrawn"), slot_id="withdrawn"), replace(slot(start=NOW), slot_id="started")]
    # Then a student (even the one who booked) sees only the open one; the centre all four
    assert [s.slot_id for s in visible_slots(BOOKER, slots, NOW)] == ["open"]
    assert [s.slot_id for s in visible_slots(OTHER_STUDENT, slots, NOW)] == ["open"]
    assert [s.slot_id for s in visible_slots(CENTRE, slots, NOW)] == ["open", "booked", "withdrawn", "started"]


# -- booking ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("candidate", "reason"), [
    (slot(booker="s002"), "already been booked"),
    (slot(status="withdrawn"), "withdrawn"),
    (slot(start=NOW), "already started"),
])
def test_slots_that_cannot_be_booked(candidate: Slot, reason: str) -> None:
    with pytest.raises(Conflict, match=reason):
        check_bookable(candidate, NOW)


def test_students_and_staff_book_third_party_staff_do_not() -> None:
    for client in (BOOKER, COUNSELOR, CENTRE):
        check_client(client)
    with pytest.raises(Forbidden):
        check_client(Actor("w001", "third_party", "hq"))


def test_only_future_bookings_count_against_the_quota() -> None:
    # Given one booking that has taken place and one to come
    past, coming = slot_key(NOW - HOUR, "a"), slot_key(NOW + HOUR, "b")
    # When the future ones are counted, then only the coming one is
    assert future_keys({past, coming}, NOW) == {coming}
    # and with a quota of one, it fills it; with two, there is room
    with pytest.raises(Conflict, match="at most 1"):
        check_quota(future_keys({past, coming}, NOW), 1)
    check_quota(future_keys({past, coming}, NOW), 2)
    check_quota(future_keys({past}, NOW), 1)


# -- cancelling -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("before_deadline", "allowed"), [
    (timedelta(hours=1), True), (timedelta(0), True), (timedelta(seconds=-1), False),
    (-CUTOFF + timedelta(seconds=1), False),  # the last second before the start (from the start: started)
])
def test_the_booker_may_cancel_until_the_cutoff_inclusive(before_deadline: timedelta, allowed: bool) -> None:
    # Given a booking 24 hours of cutoff, and a clock at some distance from the deadline
    booked = slot(booker="s001")
    now = cancel_deadline(booked, CUTOFF) - before_deadline
    assert cancel_deadline(booked, CUTOFF) == START - CUTOFF
    # When the booker cancels, Then it is allowed up to the deadline itself
    if allowed:
        assert check_cancel(BOOKER, booked, now, CUTOFF).booker == "s001"
    else:
        with pytest.raises(Conflict, match="24 hours"):
            check_cancel(BOOKER, booked, now, CUTOFF)


def test_the_centre_may_cancel_until_the_start_and_others_find_nothing() -> None:
    booked = slot(booker="s001")
    # The centre, past the booker's cutoff, up to the last second before the start
    assert check_cancel(CENTRE, booked, START - timedelta(seconds=1), CUTOFF).booking_id == "b1"
    # Anyone else, and anyone on an unbooked slot: no such booking (even after the start: nothing to learn)
    for outsider in (OTHER_STUDENT, COUNSELOR, IT_ADMIN):
        for when in (NOW, START + HOUR):
            with pytest.raises(NotFound):
                check_cancel(outsider, booked, when, CUTOFF)
    with pytest.raises(NotFound):
        check_cancel(BOOKER, slot(), NOW, CUTOFF)


@pytest.mark.parametrize("who", [BOOKER, CENTRE])
@pytest.mark.parametrize("when", [START, START + timedelta(minutes=30), START + 2 * HOUR])
def test_nobody_cancels_a_session_that_has_started(who: Actor, when: datetime) -> None:
    with pytest.raises(Conflict, match="already started"):
        check_cancel(who, slot(booker="s001"), when, CUTOFF)


def test_only_future_slots_that_are_not_withdrawn_can_be_withdrawn() -> None:
    check_withdrawable(slot(booker="s001"), NOW)
    check_withdrawable(slot(booker="s001"), START - timedelta(seconds=1))
    with pytest.raises(Conflict, match="withdrawn already"):
        check_withdrawable(slot(status="withdrawn"), NOW)
    for booked in (slot(), slot(booker="s001")):
        with pytest.raises(Conflict, match="started"):
            check_withdrawable(booked, START)


# -- calendar partitions and periods -------------------------------------------------------------------
def test_months_follow_the_campus_calendar() -> None:
    # 2026-11-30 17:00 UTC is 1 December, 01:00 on campus
    assert month_of(datetime(2026, 11, 30, 17, tzinfo=timezone.utc), SHANGHAI) == "2026-12"
    assert months_covering(datetime(2026, 11, 20, tzinfo=timezone.utc), datetime(2027, 2, 1, tzinfo=timezone.utc),
                           SHANGHAI) == ["2026-11", "2026-12", "2027-01", "2027-02"]


def test_list_periods() -> None:
    # By default the coming 31 days; only the centre looks back
    assert slot_period(NOW, None, None, centre=False) == (NOW, NOW + timedelta(days=31))
    assert slot_period(NOW, NOW - timedelta(days=7), None, centre=False)[0] == NOW
    assert slot_period(NOW, NOW - timedelta(days=7), None, centre=True)[0] == NOW - timedelta(days=7)
    with pytest.raises(Invalid) as refused:
        slot_period(NOW, NOW, NOW + timedelta(days=92, seconds=1), centre=True)
    assert refused.value.fields == {"to": "at most 92 days after from"}
    with pytest.raises(Invalid):
        slot_period(NOW, NOW - timedelta(days=9), NOW - timedelta(days=8), centre=False)


@pytest.mark.parametrize(("since", "until", "field"), [
    (datetime(9999, 12, 31, tzinfo=timezone.utc), None, "from"),  # would overflow adding the default 31 days
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8))), None, "from"),
    (None, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8))), "to"),
])
def test_list_periods_far_from_today_are_refused_not_crashed(since: datetime | None, until: datetime | None,
                                                             field: str) -> None:
    with pytest.raises(Invalid) as refused:
        slot_period(NOW, since, until, centre=True)
    assert set(refused.value.fields) == {field}


# -- the desk, with in-memory collaborators ----------------------------------------------------------
@dataclass
class MemoryStore:
    slots: dict[str, Slot] = field(default_factory=dict)
    held: dict[str, Holdings] = field(default_factory=dict)

    def add(self, new: Slot) -> None:
        self.slots[new.slot_id] = new

    def get(self, slot_id: str) -> Slot | None:
        return self.slots.get(slot_id)

    def in_period(self, months: list[str], after: str, until: str, limit: int,
                  open_only: bool) -> tuple[list[Slot], str | None]:
        found = [s for s in self._sorted() if after < s.key < until and (s.status == "open" or not open_only)]
        return found[:limit], None

    def booked_from(self, months: list[str], after: str, limit: int) -> tuple[list[Slot], str | None]:
        return [s for s in self._sorted() if s.booking and s.key > after][:limit], None

    def of_booker(self, booker: str, limit: int, before: str | None) -> tuple[list[Slot], str | None]:
        return [s for s in self._sorted() if s.booking and s.booking.booker == booker][::-1][:limit], None

    def _sorted(self) -> list[Slot]:
        return sorted(self.slots.values(), key=lambda s: s.key)

    def holdings(self, booker: str) -> Holdings:
        return self.held.get(booker, Holdings(booker))

    def book(self, target: Slot, booking: Booking, holdings: Holdings, keys: frozenset[str]) -> None:
        self.slots[target.slot_id] = replace(target, status="booked", booking=booking, version=target.version + 1)
        self.held[booking.booker] = Holdings(booking.booker, keys, holdings.version + 1)

    def release(self, target: Slot, *, withdraw: bool) -> None:
        self.slots[target.slot_id] = replace(target, status="withdrawn" if withdraw else "open", booking=None,
                                             version=target.version + 1)
        if target.booking:
            old = self.holdings(target.booking.booker)
            self.held[target.booking.booker] = Holdings(old.booker, old.keys - {target.key}, old.version + 1)


@dataclass
class Recorder:
    sent: list[Any] = field(default_factory=list)
    audited: list[dict[str, Any]] = field(default_factory=list)

    def notify(self, notification: Any) -> int:
        self.sent.append(notification)
        return 1

    def record(self, **entry: Any) -> None:
        self.audited.append(entry)

    def record_many(self, actor: str, entries: list[Any]) -> None:
        self.audited += [dict(subject=e.subject, actor=actor, action=e.action, detail=e.detail) for e in entries]


class People:
    def get_people(self, userids: list[str]) -> dict[str, Any]:
        return {u: SimpleNamespace(name="王小明") for u in userids if u == "s001"}

    def holders(self, authority: str) -> list[str]:
        return ["xl01", "xl02"] if authority == "role:psych_center" else []


@pytest.fixture
def desk() -> tuple[CounsellingDesk, MemoryStore, Recorder, list[datetime]]:
    store, recorder, clock = MemoryStore(), Recorder(), [NOW]
    rules = CounsellingRules(cancel_cutoff=CUTOFF, max_future_bookings=1, horizon=timedelta(days=90), tz=SHANGHAI)
    desk = CounsellingDesk(slots=store, people=People(), notify=recorder.notify, audit=recorder,  # type: ignore[arg-type]
                           rules=rules, clock=lambda: clock[0])
    return desk, store, recorder, clock


def test_notifications_carry_neither_the_topic_nor_who_booked(desk: Any) -> None:
    # Given a published slot
    counselling, store, recorder, _ = desk
    published = counselling.publish(CENTRE, START, START + HOUR, "张老师", "心理中心 201", "in_person")
    # When s001 books it with a topic and then cancels
    detail = counselling.book(BOOKER, published.slot_id, "考试焦虑，睡不着", "13800138000")
    counselling.cancel(BOOKER, published.slot_id)
    # Then the centre's staff heard of both, keyed by the booking id, with the time but no personal data
    assert [(n.key, n.recipients) for n in recorder.sent] == [
        (f"counselling:{detail.booking.booking_id}:booked", ("xl01", "xl02")),
        (f"counselling:{detail.booking.booking_id}:cancelled", ("xl01", "xl02"))]
    for note in recorder.sent:
        text = note.title + note.body + note.key
        assert "12月01日 14:00-15:00" in note.body
        assert all(secret not in text for secret in ("考试焦虑", "13800138000", "s001", "王小明"))
    # and the slot is open again, the booker's holdings empty
    assert store.slots[published.slot_id].status == "open" and store.held["s001"].keys == frozenset()


def test_the_centre_cancelling_tells_the_booker_and_the_other_staff(desk: Any) -> None:
    counselling, _, recorder, clock = desk
    published = counselling.publish(CENTRE, START, START + HOUR, "张老师", "心理中心 201", "online")
    booking = counselling.book(BOOKER, published.slot_id, None, None).booking
    recorder.sent.clear()
    # When the centre cancels after the booker's cutoff
    clock[0] = START - HOUR
    cancelled = counselling.cancel(CENTRE, published.slot_id)
    # Then it is cancelled, the booker and the other staff member are told
    assert cancelled.status == "cancelled"
    assert {(n.key, n.recipients) for n in recorder.sent} == {
        (f"counselling:{booking.booking_id}:cancelled", ("xl02",)),
        (f"counselling:{booking.booking_id}:cancelled:booker", ("s001",))}
    # and with no topic there was nothing to read, so nothing to audit
    assert recorder.audited == []


def test_the_centre_cancelling_is_shown_the_topic_and_that_is_audited(desk: Any) -> None:
    counselling, store, recorder, clock = desk
    published = counselling.publish(CENTRE, START, START + HOUR, "张老师", "心理中心 201", "online")
    booking = counselling.book(BOOKER, published.slot_id, "家庭关系", "13800138000").booking
    # When the booker cancels their own, nothing is audited (it is theirs)
    counselling.cancel(BOOKER, published.slot_id)
    assert recorder.audited == []
    again = counselling.book(BOOKER, published.slot_id, "家庭关系", None).booking
    # When the centre cancels, the answer shows the topic, and who was shown whose is on record
    clock[0] = START - HOUR
    cancelled = counselling.cancel(CENTRE, published.slot_id)
    assert (cancelled.status, cancelled.booking.topic) == ("cancelled", "家庭关系")
    assert recorder.audited == [{"subject": "person#s001", "actor": "xl01", "action": "counselling.topic.read",
                                 "detail": {"slot_id": published.slot_id, "booking_id": again.booking_id}}]
    assert booking.booking_id != again.booking_id and "家庭关系" not in repr(recorder.audited)


def test_a_cancel_that_fails_is_not_audited(desk: Any) -> None:
    # Given a booking whose session has started
    counselling, store, recorder, clock = desk
    published = counselling.publish(CENTRE, START, START + HOUR, "张老师", "201", "in_person")
    counselling.book(BOOKER, published.slot_id, "家庭关系", None)
    recorder.sent.clear()
    clock[0] = START
    # When the centre (or the booker) tries to cancel it, Then 409, nothing changes, nobody is told or audited
    for who in (CENTRE, BOOKER):
        with pytest.raises(Conflict, match="already started"):
            counselling.cancel(who, published.slot_id)
    with pytest.raises(Conflict, match="started"):
        counselling.withdraw(CENTRE, published.slot_id)
    assert store.slots[published.slot_id].status == "booked" and store.held["s001"].keys
    assert (recorder.sent, recorder.audited) == ([], [])


def test_the_centre_reading_a_topic_is_audited_without_the_topic(desk: Any) -> None:
    counselling, _, recorder, _ = desk
    with_topic = counselling.publish(CENTRE, START, START + HOUR, "张老师", "201", "in_person")
    counselling.book(BOOKER, with_topic.slot_id, "家庭关系", None)
    # When the booker reads their booking, nothing is audited
    assert counselling.read_booking(BOOKER, with_topic.slot_id).booking.topic == "家庭关系"
    assert recorder.audited == []
    assert [d.booking.topic for d in counselling.bookings(BOOKER, 10, None).items] == ["家庭关系"]
    assert recorder.audited == []
    # When the centre reads it (alone, then in the list of upcoming bookings)
    detail = counselling.read_booking(CENTRE, with_topic.slot_id)
    assert (detail.booking.topic, detail.booker_name) == ("家庭关系", "王小明")
    assert [d.booking.topic for d in counselling.bookings(CENTRE, 10, None).items] == ["家庭关系"]
    # Then each read is audited: who read whose topic, not the topic
    entry = {"subject": "person#s001", "actor": "xl01", "action": "counselling.topic.read",
             "detail": {"slot_id": with_topic.slot_id, "booking_id": detail.booking.booking_id}}
    assert recorder.audited == [entry, entry]
    assert "家庭关系" not in repr(recorder.audited)


def test_withdrawing_a_booked_slot_tells_the_booker(desk: Any) -> None:
    counselling, store, recorder, _ = desk
    published = counselling.publish(CENTRE, START, START + HOUR, "张老师", "201", "in_person")
    booking = counselling.book(BOOKER, published.slot_id, "x", None).booking
    withdrawn = counselling.withdraw(CENTRE, published.slot_id)
    assert withdrawn.status == "withdrawn" and withdrawn.booking is None
    assert (recorder.sent[-1].key, recorder.sent[-1].recipients) == (f"counselling:{booking.booking_id}:withdrawn",
                                                                     ("s001",))
    assert store.held["s001"].keys == frozenset()
