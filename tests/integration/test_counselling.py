"""Counselling appointments over HTTP and against moto: slots, exclusive bookings under real
concurrency, who sees a booking, the cutoff, the quota, notifications and the audit of topic reads."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import counselling as counselling_api
from chalicelib.db.audit import AuditRepository
from chalicelib.db.counselling import BookerModel, SlotModel
from chalicelib.domain.access import Actor
from chalicelib.domain.counselling import Booking, Holdings, Slot
from chalicelib.errors import Conflict
from chalicelib.resources import QUEUES
from infra.local.aws import create_queues
from tests.support.hall import queued_notifications
from tests.support.identity import call, load_cast, login

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)  # 10:00 on campus
SLOT = {"start": "2026-12-01T14:00:00+08:00", "end": "2026-12-01T15:00:00+08:00", "counsellor": "张老师",
        "place": "心理中心 201", "mode": "in_person"}
START = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)
PEOPLE = ("xl01", "s001", "s002", "s003", "fdy01", "admin", "xg01", "t001", "w001")


@pytest.fixture
def clock() -> Iterator[Any]:
    """The campus clock, stopped at NOW; tests move it (never sleep)."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def tokens(client: Client, clock: Any) -> dict[str, str]:
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    return {userid: login(client, userid) for userid in PEOPLE}


def move(client: Client, tokens: dict[str, str], clock: Any, when: datetime) -> None:
    """Move the clock; sessions last two hours, so everyone logs in again at the new time."""
    clock.move_to(when)
    tokens.update({userid: login(client, userid) for userid in tokens})


def publish(client: Client, tokens: dict[str, str], **changes: str) -> dict[str, Any]:
    status, slot = call(client, "POST", "/counselling/slots", tokens["xl01"], {**SLOT, **changes})
    assert status == 201, slot
    return slot


def book(client: Client, tokens: dict[str, str], userid: str, slot_id: str, **body: str) -> tuple[int, Any]:
    return call(client, "POST", f"/counselling/slots/{slot_id}/booking", tokens[userid], body)


def slot_ids(client: Client, token: str, query: str = "") -> list[str]:
    status, page = call(client, "GET", f"/counselling/slots{query}", token)
    assert status == 200, page
    return [s["id"] for s in page["items"]]


# -- publishing and listing --------------------------------------------------------------------------
def test_the_centre_publishes_and_people_see_only_open_future_slots(client: Client, tokens: dict[str, str]) -> None:
    # Given three slots: one stays open, one is booked by s002, one is withdrawn
    open_slot = publish(client, tokens)
    booked = publish(client, tokens, start="2026-12-02T14:00:00+08:00", end="2026-12-02T15:00:00+08:00")
    withdrawn = publish(client, tokens, start="2026-12-03T09:00:00+08:00", end="2026-12-03T12:00:00+08:00")
    assert open_slot["start"] == "2026-12-01T06:00:00+00:00" and open_slot["status"] == "open"
    assert book(client, tokens, "s002", booked["id"], topic="学习压力")[0] == 201
    assert call(client, "POST", f"/counselling/slots/{withdrawn['id']}/withdraw", tokens["xl01"])[0] == 200

    # When students and staff list the slots, Then they see only the open one, and nothing about bookers
    for userid in ("s001", "s002", "t001", "fdy01"):
        status, page = call(client, "GET", "/counselling/slots", tokens[userid])
        assert status == 200 and page == {"items": [open_slot], "next": None}
    # When the centre lists them, Then it sees all three with their status, soonest first
    status, page = call(client, "GET", "/counselling/slots", tokens["xl01"])
    assert [(s["id"], s["status"]) for s in page["items"]] == [
        (open_slot["id"], "open"), (booked["id"], "booked"), (withdrawn["id"], "withdrawn")]
    assert "s002" not in json.dumps(page) and "学习压力" not in json.dumps(page)


def test_slot_lists_cover_a_period_and_page_through_months(client: Client, tokens: dict[str, str]) -> None:
    # Given slots on 30 Nov, 1 Dec (both campus time) and 2 Jan
    ids = [publish(client, tokens, start=f"{day}T14:00:00+08:00", end=f"{day}T15:00:00+08:00")["id"]
           for day in ("2026-11-30", "2026-12-01", "2027-01-02")]
    # When a student pages through the coming 92 days one at a time
    period = f"?from={quote('2026-11-20T00:00:00+08:00')}&to={quote('2027-02-20T00:00:00+08:00')}&limit=1"
    seen, position = [], ""
    for _ in range(4):
        status, page = call(client, "GET", f"/counselling/slots{period}{position}", tokens["s001"])
        assert status == 200, page
        seen += [s["id"] for s in page["items"]]
        if not page["next"]:
            break
        position = f"&next={page['next']}"
    # Then every slot comes once, in order, across the month partitions
    assert seen == ids
    # and the period bounds are [from, to): an unencoded '+' in the offset is understood too
    assert slot_ids(client, tokens["s001"], "?from=2026-12-01T14:00:00+08:00&to=2027-01-02T14:00:00+08:00") == ids[1:2]
    status, body = call(client, "GET", "/counselling/slots?to=2027-06-01T00:00:00%2B08:00", tokens["s001"])
    assert (status, body["fields"]) == (422, {"to": "at most 92 days after from"})


@pytest.mark.parametrize(("change", "field"), [
    ({"start": "2026-11-20T09:00:00+08:00"}, "start"),  # an hour ago
    ({"end": "2026-12-01T13:00:00+08:00"}, "end"),  # before the start
    ({"end": "2026-12-01T17:00:01+08:00"}, "end"),  # three hours and a second
    ({"start": "2026-12-01T14:00:00"}, "start"),  # no offset
    ({"mode": "phone"}, "mode"),
    ({"counsellor": ""}, "counsellor"),
    ({"booked_by": "s001"}, "booked_by"),  # no mass assignment
])
def test_publishing_refuses_bad_slots_with_a_reason(client: Client, tokens: dict[str, str], change: dict[str, str],
                                                    field: str) -> None:
    status, body = call(client, "POST", "/counselling/slots", tokens["xl01"], {**SLOT, **change})
    assert status == 422 and body["code"] == "invalid" and field in body["fields"], body


@pytest.mark.parametrize("userid", ["s001", "fdy01", "admin", "xg01"])
def test_only_the_centre_publishes_and_withdraws(client: Client, tokens: dict[str, str], userid: str) -> None:
    slot = publish(client, tokens)
    assert call(client, "POST", "/counselling/slots", tokens[userid], SLOT)[1]["code"] == "forbidden"
    assert call(client, "POST", f"/counselling/slots/{slot['id']}/withdraw", tokens[userid])[0] == 403


# -- who sees a booking ---------------------------------------------------------------------------------
# 1 = sees it (200), 0 = it does not exist for them (404). Written out from the brief, not computed.
VISIBILITY = {"s001": 1, "xl01": 1, "s002": 0, "fdy01": 0, "admin": 0, "xg01": 0, "t001": 0}


@pytest.mark.parametrize(("userid", "sees"), VISIBILITY.items())
def test_a_booking_is_seen_by_its_booker_and_the_centre_only(client: Client, tokens: dict[str, str], userid: str,
                                                            sees: int) -> None:
    # Given s001 booked a slot with a topic and a phone number
    slot = publish(client, tokens)
    status, booking = book(client, tokens, "s001", slot["id"], topic="考试焦虑", contact="138 0013 8000")
    assert status == 201 and (booking["topic"], booking["contact"]) == ("考试焦虑", "13800138000")

    # When each person reads it, lists their bookings, and tries to cancel it
    read = call(client, "GET", f"/counselling/slots/{slot['id']}/booking", tokens[userid])
    listed = call(client, "GET", "/counselling/bookings", tokens[userid])[1]["items"]
    unknown = call(client, "GET", "/counselling/slots/no-such-slot/booking", tokens[userid])
    assert call(client, "GET", "/counselling/slots/" + "a" * 3000 + "/booking", tokens[userid]) == unknown

    # Then the booker and the centre see it all; for anyone else it does not exist
    if sees:
        assert read[0] == 200 and read[1]["booker"] == "s001" and read[1]["topic"] == "考试焦虑"
        assert read[1]["booker_name"] and read[1]["slot"]["id"] == slot["id"]
        assert [b["booking_id"] for b in listed] == [booking["booking_id"]]
    else:
        assert read == unknown and read[0] == 404 and read[1]["code"] == "not_found"
        assert listed == []
        cancel = call(client, "POST", f"/counselling/slots/{slot['id']}/booking/cancel", tokens[userid])
        assert cancel == call(client, "POST", "/counselling/slots/no-such-slot/booking/cancel", tokens[userid])
        assert cancel[0] == 404
        # and the booking is untouched
        assert call(client, "GET", f"/counselling/slots/{slot['id']}/booking", tokens["s001"])[0] == 200


def test_the_centres_reads_of_a_topic_are_audited_without_the_topic(client: Client, tokens: dict[str, str]) -> None:
    # Given s001's booking with a topic and s003's without
    with_topic, without = publish(client, tokens), publish(client, tokens, start="2026-12-02T14:00:00+08:00",
                                                           end="2026-12-02T15:00:00+08:00")
    booking = book(client, tokens, "s001", with_topic["id"], topic="家庭关系")[1]
    book(client, tokens, "s003", without["id"])
    # When the booker reads their own, nothing is audited
    call(client, "GET", f"/counselling/slots/{with_topic['id']}/booking", tokens["s001"])
    assert AuditRepository().by_actor("s001") == []
    # When the centre reads it, then lists the upcoming bookings
    call(client, "GET", f"/counselling/slots/{with_topic['id']}/booking", tokens["xl01"])
    status, page = call(client, "GET", "/counselling/bookings", tokens["xl01"])
    assert [(b["booker"], b["topic"]) for b in page["items"]] == [("s001", "家庭关系"), ("s003", None)]
    # Then each read of s001's topic is on record (who, whose, which booking), never the topic itself
    events = AuditRepository().for_subject("person#s001")
    assert [(e.actor, e.action, e.detail) for e in events] == [
        ("xl01", "counselling.topic.read", {"slot_id": with_topic["id"], "booking_id": booking["booking_id"]})] * 2
    assert AuditRepository().for_subject("person#s003") == []  # nothing to read, nothing recorded
    assert "家庭关系" not in repr(AuditRepository().by_actor("xl01"))


def test_topic_and_contact_are_sealed_at_rest(client: Client, tokens: dict[str, str]) -> None:
    slot = publish(client, tokens)
    book(client, tokens, "s001", slot["id"], topic="睡眠问题", contact="13800138000")
    raw = SlotModel.get(slot["id"])
    assert raw.topic.startswith("v1:") and "睡眠" not in raw.topic
    assert raw.contact.startswith("v1:") and "13800138000" not in raw.contact


# -- the quota and the cutoff ---------------------------------------------------------------------------
def test_one_future_booking_at_a_time(client: Client, tokens: dict[str, str], clock: Any) -> None:
    # Given s001 holds a booking on 1 December
    first = publish(client, tokens)
    second = publish(client, tokens, start="2026-12-02T14:00:00+08:00", end="2026-12-02T15:00:00+08:00")
    assert book(client, tokens, "s001", first["id"])[0] == 201
    # When they book a second slot, Then they are refused with a reason, and the slot stays open
    status, body = book(client, tokens, "s001", second["id"])
    assert (status, body["code"]) == (409, "conflict") and "at most 1" in body["message"]
    assert second["id"] in slot_ids(client, tokens["s002"])
    # When the first has taken place, Then they may book again (past bookings do not count)
    move(client, tokens, clock, START + timedelta(hours=1))
    assert book(client, tokens, "s001", second["id"])[0] == 201
    # and their list shows both, latest first
    status, page = call(client, "GET", "/counselling/bookings", tokens["s001"])
    assert [b["slot"]["id"] for b in page["items"]] == [second["id"], first["id"]]


def test_the_quota_is_a_setting(client: Client, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNSELLING_MAX_FUTURE_BOOKINGS", "2")
    slots = [publish(client, tokens, start=f"2026-12-0{d}T14:00:00+08:00", end=f"2026-12-0{d}T15:00:00+08:00")
             for d in (1, 2, 3)]
    assert [book(client, tokens, "s001", s["id"])[0] for s in slots] == [201, 201, 409]


@pytest.mark.parametrize(("before_start", "status"), [
    (timedelta(hours=24), 200),  # the cutoff itself: still allowed
    (timedelta(hours=24) - timedelta(seconds=1), 409),  # a second later: too late
    (timedelta(hours=48), 200),
])
def test_the_booker_may_cancel_up_to_the_cutoff(client: Client, tokens: dict[str, str], clock: Any,
                                                before_start: timedelta, status: int) -> None:
    # Given s001 booked the slot starting at START
    slot = publish(client, tokens)
    booking = book(client, tokens, "s001", slot["id"])[1]
    assert booking["cancel_until"] == (START - timedelta(hours=24)).isoformat()
    # When they cancel at this distance from the start
    move(client, tokens, clock, START - before_start)
    answer, body = call(client, "POST", f"/counselling/slots/{slot['id']}/booking/cancel", tokens["s001"])
    # Then it is allowed until the cutoff; afterwards 409 with the reason, and the booking stands
    assert answer == status, body
    if status == 200:
        assert body["status"] == "cancelled" and slot["id"] in slot_ids(client, tokens["s002"])
        assert book(client, tokens, "s002", slot["id"])[0] == 201  # free for someone else
    else:
        assert "24 hours" in body["message"]
        assert call(client, "GET", f"/counselling/slots/{slot['id']}/booking", tokens["s001"])[0] == 200


def test_the_centre_cancels_until_the_start_the_booker_is_told_and_the_topic_shown_is_audited(
        client: Client, tokens: dict[str, str], clock: Any) -> None:
    slot = publish(client, tokens)
    booking = book(client, tokens, "s001", slot["id"], topic="失眠", contact="13800138000")[1]
    queued_notifications()  # the booking's own notice
    # When the centre cancels an hour before the start (long past the booker's cutoff)
    move(client, tokens, clock, START - timedelta(hours=1))
    status, body = call(client, "POST", f"/counselling/slots/{slot['id']}/booking/cancel", tokens["xl01"])
    # Then it is cancelled, and the booker is told
    assert (status, body["status"]) == (200, "cancelled")
    sent = {(n["key"], tuple(n["recipients"])) for n in queued_notifications()}
    assert (f"counselling:{booking['booking_id']}:cancelled:booker", ("s001",)) in sent
    # and the answer showed the centre the booker's topic: that read is on record, without the topic
    assert (body["topic"], body["contact"]) == ("失眠", "13800138000")
    events = AuditRepository().for_subject("person#s001")
    assert [(e.actor, e.action, e.detail) for e in events] == [
        ("xl01", "counselling.topic.read", {"slot_id": slot["id"], "booking_id": booking["booking_id"]})]
    assert "失眠" not in repr(events)
    # and cancelling again finds nothing to cancel
    assert call(client, "POST", f"/counselling/slots/{slot['id']}/booking/cancel", tokens["xl01"])[0] == 404


@pytest.mark.parametrize("after_start", [timedelta(0), timedelta(minutes=30), timedelta(hours=2)])
def test_a_session_that_has_started_is_neither_cancelled_nor_withdrawn(client: Client, tokens: dict[str, str],
                                                                     clock: Any, after_start: timedelta) -> None:
    # Given s001's booking, and the clock at (or after) the start
    slot = publish(client, tokens)
    booking = book(client, tokens, "s001", slot["id"], topic="考试焦虑")[1]
    queued_notifications()
    move(client, tokens, clock, START + after_start)
    # When the booker or the centre cancels it, or the centre withdraws the slot
    attempts = [call(client, "POST", f"/counselling/slots/{slot['id']}/booking/cancel", tokens[userid])
                for userid in ("s001", "xl01")]
    attempts.append(call(client, "POST", f"/counselling/slots/{slot['id']}/withdraw", tokens["xl01"]))
    # Then each is refused with 409 and the reason
    assert [(status, body["code"]) for status, body in attempts] == [(409, "conflict")] * 3
    assert all("started" in body["message"] for _, body in attempts)
    # and the booking stands, nobody was told, and nothing was read that needs an audit record
    status, stands = call(client, "GET", f"/counselling/slots/{slot['id']}/booking", tokens["s001"])
    assert (status, stands["booking_id"], stands["status"]) == (200, booking["booking_id"], "booked")
    stored = SlotModel.get(slot["id"])
    assert stored.status == "booked" and BookerModel.get("s001").holdings == {stored.start_key}
    assert queued_notifications() == []
    assert AuditRepository().for_subject("person#s001") == []


# -- withdrawal and notifications ---------------------------------------------------------------------------
def test_withdrawing_a_booked_slot_cancels_the_booking_and_tells_the_booker(client: Client,
                                                                            tokens: dict[str, str]) -> None:
    # Given s001 booked a slot (the centre was told, without who or why)
    slot = publish(client, tokens)
    booking = book(client, tokens, "s001", slot["id"], topic="人际关系")[1]
    told = queued_notifications()
    assert [(n["key"], n["recipients"]) for n in told] == [(f"counselling:{booking['booking_id']}:booked", ["xl01"])]
    assert all(secret not in json.dumps(told, ensure_ascii=False) for secret in ("人际关系", "s001"))

    # When the centre withdraws the slot
    status, withdrawn = call(client, "POST", f"/counselling/slots/{slot['id']}/withdraw", tokens["xl01"])

    # Then it is withdrawn, the booking gone, the booker told, and nobody can book it
    assert (status, withdrawn["status"]) == (200, "withdrawn")
    told = queued_notifications()
    assert [(n["key"], n["recipients"]) for n in told] == [(f"counselling:{booking['booking_id']}:withdrawn",
                                                             ["s001"])]
    assert "12月01日 14:00-15:00" in told[0]["body"]
    assert call(client, "GET", "/counselling/bookings", tokens["s001"])[1]["items"] == []
    assert BookerModel.get("s001").holdings is None
    status, body = book(client, tokens, "s002", slot["id"])
    assert status == 409 and "withdrawn" in body["message"]
    assert call(client, "POST", f"/counselling/slots/{slot['id']}/withdraw", tokens["xl01"])[0] == 409


def test_a_booker_cancelling_tells_the_centre_and_opens_the_slot(client: Client, tokens: dict[str, str]) -> None:
    slot = publish(client, tokens)
    booking = book(client, tokens, "s001", slot["id"])[1]
    queued_notifications()
    assert call(client, "POST", f"/counselling/slots/{slot['id']}/booking/cancel", tokens["s001"])[0] == 200
    assert [(n["key"], n["recipients"]) for n in queued_notifications()] == [
        (f"counselling:{booking['booking_id']}:cancelled", ["xl01"])]
    # When s001 books the same slot again, it is a new booking (and a new notice, not a repeat)
    again = book(client, tokens, "s001", slot["id"])[1]
    assert again["booking_id"] != booking["booking_id"]
    assert [n["key"] for n in queued_notifications()] == [f"counselling:{again['booking_id']}:booked"]


def test_booking_refusals(client: Client, tokens: dict[str, str], clock: Any) -> None:
    slot = publish(client, tokens)
    assert book(client, tokens, "s001", "no-such-slot")[0] == 404
    assert book(client, tokens, "w001", slot["id"])[1]["code"] == "forbidden"  # a contractor: not a client
    status, body = book(client, tokens, "s001", slot["id"], contact="12345")
    assert (status, body["fields"]) == (422, {"contact": "Value error, not a mainland mobile number"})
    assert book(client, tokens, "s001", slot["id"], status="booked")[0] == 422
    move(client, tokens, clock, START)
    status, body = book(client, tokens, "s001", slot["id"])
    assert status == 409 and "started" in body["message"]


# -- real concurrency -----------------------------------------------------------------------------------------
@dataclass
class Lockstep:
    """The real slot store, except that every booker waits until all have read the slot as free."""

    inner: Any
    barrier: threading.Barrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def book(self, slot: Slot, booking: Booking, holdings: Holdings, keys: frozenset[str]) -> None:
        self.barrier.wait(timeout=30)
        self.inner.book(slot, booking, holdings, keys)


def race(desk: Any, attempts: list[tuple[Actor, str]]) -> tuple[Counter[str], list[str]]:
    outcomes: Counter[str] = Counter()
    winners: list[str] = []
    lock = threading.Lock()

    def attempt(actor: Actor, slot_id: str) -> None:
        try:
            desk.book(actor, slot_id, "topic", None)
            with lock:
                outcomes["booked"] += 1
                winners.append(actor.userid)
        except Conflict:
            with lock:
                outcomes["conflict"] += 1

    threads = [threading.Thread(target=attempt, args=pair) for pair in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes, winners


def racing_desk(size: int) -> Any:
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    desk = counselling_api.desk()
    desk.clock = lambda: NOW
    desk.slots = Lockstep(desk.slots, threading.Barrier(size))
    return desk


def test_fifty_simultaneous_bookers_get_one_booking_and_forty_nine_conflicts() -> None:
    # Given one open slot and 50 people who all read it as free, then write at the same instant
    desk = racing_desk(50)
    centre = Actor("xl01", "staff", "xlzx", roles=frozenset({"psych_center"}))
    slot = desk.publish(centre, START, START + timedelta(hours=1), "张老师", "201", "in_person")
    bookers = [Actor(f"u{n:03d}", "student", "cs") for n in range(50)]

    # When all 50 book it from 50 threads
    outcomes, winners = race(desk, [(actor, slot.slot_id) for actor in bookers])

    # Then exactly one booking is stored, the winner's, and the 49 others were told 409
    assert outcomes == Counter({"booked": 1, "conflict": 49})
    stored = desk.slots.get(slot.slot_id)
    assert stored.status == "booked" and stored.booking.booker == winners[0] and stored.version == 2
    # and only the winner holds it: the losers' transactions wrote nothing at all
    assert desk.slots.holdings(winners[0]).keys == {stored.key}
    assert [desk.slots.holdings(b.userid).version for b in bookers].count(0) == 49
    # and the centre was told once
    assert [n["key"] for n in queued_notifications()] == [f"counselling:{stored.booking.booking_id}:booked"]


def test_one_person_booking_two_slots_at_once_gets_one(client: Client) -> None:
    # Given two open slots and one person (quota 1) booking both at the same instant
    desk = racing_desk(2)
    centre = Actor("xl01", "staff", "xlzx", roles=frozenset({"psych_center"}))
    slots = [desk.publish(centre, START + timedelta(days=d), START + timedelta(days=d, hours=1), "张老师", "201",
                          "online") for d in (0, 1)]
    student = Actor("s001", "student", "cs", class_id="cs2001")
    # When both bookings race
    outcomes, _ = race(desk, [(student, s.slot_id) for s in slots])
    # Then the holdings' version lets one through: the quota cannot be beaten by parallel requests
    assert outcomes == Counter({"booked": 1, "conflict": 1})
    assert [desk.slots.get(s.slot_id).status for s in slots].count("booked") == 1
    assert len(desk.slots.holdings("s001").keys) == 1
