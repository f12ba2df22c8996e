"""Repair orders: the transition table, who may act, the campus calendar, messages, the hook's idempotency."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chalicelib.catalogue import shipped_definitions
from chalicelib.domain.access import Actor
from chalicelib.domain.notifications import Notification
from chalicelib.domain.repair import (
    STATUSES,
    RepairDesk,
    RepairOrder,
    assign,
    cancel,
    confirm,
    logistics_recipients,
    mark_done,
    notification_for,
    order_from,
    reopen,
)
from chalicelib.domain.workflow import Applicant, ChainStep, became_approved, decide, file_application
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
TODAY = date(2026, 12, 1)
STUDENT = Actor(userid="s001", person_type="student", department="cs", class_id="cs2001")
OTHER = Actor(userid="s002", person_type="student", department="cs", class_id="cs2001")
HQ = Actor(userid="hq01", person_type="staff", department="hq", roles=frozenset({"logistics"}))
FORM = {"building": "3号楼", "room": "512", "kind": "water", "description": "漏水", "available_time": "morning",
        "mobile": "13800138000"}


def approved_app():
    definition = shipped_definitions()["dorm-repair"]
    applicant = Applicant("s001", "student", "cs", "cs2001")
    app = file_application(definition, applicant, FORM, (ChainStep("后勤处维修", "role:logistics"),), NOW)
    return decide(app, HQ, "approve", "", NOW + timedelta(minutes=5))


def order(status: str = "accepted", **changes) -> RepairOrder:
    app = approved_app()
    return replace(order_from(app, app.history[-1]), status=status, **changes)


# -- the transition table ------------------------------------------------------------------------
LEGAL = {("assign", "accepted"): "assigned", ("assign", "assigned"): "assigned", ("done", "assigned"): "done",
         ("confirm", "done"): "closed", ("reopen", "done"): "assigned"}
ACTIONS = {
    "assign": lambda o: assign(o, HQ, "胡师傅", TODAY, NOW, TODAY),
    "done": lambda o: mark_done(o, HQ, "ok", NOW),
    "confirm": lambda o: confirm(o, STUDENT, 5, "", NOW),
    "reopen": lambda o: reopen(o, STUDENT, "still broken", NOW),
}


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("verb", sorted(ACTIONS))
def test_every_verb_from_every_status(verb: str, status: str) -> None:
    # Given an order in ``status``
    before = order(status)
    expected = LEGAL.get((verb, status))
    if expected is None:
        # Then an illegal move is a conflict
        with pytest.raises(Conflict):
            ACTIONS[verb](before)
        return
    # When the verb is legal, the order moves, its version and history grow by one
    after = ACTIONS[verb](before)
    assert (after.status, after.version, len(after.history)) == (expected, before.version + 1, len(before.history) + 1)
    assert (after.history[-1].verb, after.history[-1].from_status, after.history[-1].to_status) == (
        verb, status, expected)


def test_only_logistics_assigns_and_finishes_only_the_student_confirms_and_reopens() -> None:
    with pytest.raises(Forbidden):
        assign(order(), STUDENT, "我", TODAY, NOW, TODAY)
    with pytest.raises(Forbidden):
        mark_done(order("assigned"), STUDENT, "", NOW)
    for actor in (HQ, OTHER):
        with pytest.raises(Forbidden):
            confirm(order("done"), actor, 5, "", NOW)
        with pytest.raises(Forbidden):
            reopen(order("done"), actor, "x", NOW)


def test_field_rules() -> None:
    with pytest.raises(Invalid) as caught:
        confirm(order("done"), STUDENT, 0, "", NOW)
    assert caught.value.fields == {"rating": "must be 1 to 5"}
    with pytest.raises(Invalid) as caught:
        reopen(order("done"), STUDENT, "  ", NOW)
    assert set(caught.value.fields) == {"reason"}
    with pytest.raises(Invalid) as caught:
        assign(order(), HQ, "胡师傅", TODAY - timedelta(days=1), NOW, TODAY)
    assert set(caught.value.fields) == {"planned_date"}


def test_reopen_keeps_the_worker_and_counts() -> None:
    assigned = assign(order(), HQ, "胡师傅", TODAY, NOW, TODAY)
    back = reopen(mark_done(assigned, HQ, "", NOW), STUDENT, "仍漏水", NOW)
    assert (back.status, back.worker, back.assigned_by, back.reopen_count) == ("assigned", "胡师傅", "hq01", 1)


def test_cancel_applies_to_unfinished_orders_only() -> None:
    for status in ("accepted", "assigned"):
        assert cancel(order(status), "s001", NOW).status == "cancelled"  # type: ignore[union-attr]
    for status in ("done", "closed", "cancelled"):
        assert cancel(order(status), "s001", NOW) is None


def test_the_order_opens_only_when_the_application_becomes_approved() -> None:
    app = approved_app()
    assert became_approved(app, app.history[-1])
    filed = replace(app, status="pending", history=app.history[:1])
    assert not became_approved(filed, filed.history[-1])
    # The order copies the form and names the approver as who accepted it
    made = order_from(app, app.history[-1])
    assert (made.order_id, made.student, made.place, made.status, made.history[0].actor) == (
        app.app_id, "s001", "3号楼 512", "accepted", "hq01")


def test_messages_go_to_the_student_or_to_whoever_assigned() -> None:
    assigned = assign(order(), HQ, "胡师傅", TODAY, NOW, TODAY)
    note = notification_for(assigned, [])
    assert note is not None and note.recipients == ("s001",) and "胡师傅" in note.body
    assert note.key == f"repair:{assigned.order_id}:v2:assign"
    reopened = reopen(mark_done(assigned, HQ, "", NOW), STUDENT, "仍漏水", NOW)
    assert notification_for(reopened, ["hq01", "hq02"]).recipients == ("hq01",)  # type: ignore[union-attr]
    # the assigner has left logistics: everyone who holds the role hears
    assert logistics_recipients(reopened, ["hq02", "hq03"]) == ("hq02", "hq03")
    assert notification_for(order(), ["hq01"]) is None  # the hall already told the student it was accepted


class MemoryStore:
    def __init__(self) -> None:
        self.orders: dict[str, RepairOrder] = {}

    def get(self, order_id):
        return self.orders.get(order_id)

    def create(self, o):
        if o.order_id in self.orders:
            return False
        self.orders[o.order_id] = o
        return True

    def save(self, o, expected_version):
        if self.orders[o.order_id].version != expected_version:
            raise Conflict("changed")
        self.orders[o.order_id] = o

    def of_student(self, student, status, limit, after):
        return [o for o in self.orders.values() if o.student == student], None

    def in_statuses(self, statuses, limit, after):
        return [o for o in self.orders.values() if o.status in statuses], None


class Holders:
    def holders(self, authority: str) -> list[str]:
        return ["hq01"] if authority == "role:logistics" else []


def desk(clock=lambda: NOW) -> tuple[RepairDesk, MemoryStore, list[Notification]]:
    sent: list[Notification] = []
    store = MemoryStore()
    return RepairDesk(store=store, people=Holders(), notify=lambda n: sent.append(n) or 1, clock=clock,
                      tz=ZoneInfo("Asia/Shanghai")), store, sent


def test_the_hook_is_idempotent() -> None:
    board, store, sent = desk()
    app = approved_app()
    board.on_transition(app, app.history[-1])
    store.save(replace(store.orders[app.app_id], version=2, status="assigned"), 1)
    board.on_transition(app, app.history[-1])  # a retry does not reset the order
    assert [(o.status, o.version) for o in store.orders.values()] == [("assigned", 2)]
    assert sent == []


def test_the_planned_date_is_checked_against_the_campus_day() -> None:
    # Given 17:30 UTC on 1 December: already 01:30 on 2 December in Shanghai
    late = datetime(2026, 12, 1, 17, 30, tzinfo=timezone.utc)
    board, store, _ = desk(clock=lambda: late)
    app = approved_app()
    board.on_transition(app, app.history[-1])
    # Then the 1st is in the past, the 2nd is today
    with pytest.raises(Invalid):
        board.assign(HQ, app.app_id, "胡师傅", date(2026, 12, 1))
    assert board.assign(HQ, app.app_id, "胡师傅", date(2026, 12, 2)).planned_date == "2026-12-02"


def test_reads_and_lists_are_scoped() -> None:
    board, _, _ = desk()
    app = approved_app()
    board.on_transition(app, app.history[-1])
    assert board.read(STUDENT, app.app_id).order_id == app.app_id
    assert board.read(HQ, app.app_id).order_id == app.app_id
    with pytest.raises(NotFound):
        board.read(OTHER, app.app_id)
    with pytest.raises(NotFound):  # not visible: NotFound before any rule is checked
        board.confirm(OTHER, app.app_id, 5, "")
    assert [o.order_id for o in board.list_orders(HQ, None, 50, None)[0]] == [app.app_id]
    assert board.list_orders(OTHER, None, 50, None)[0] == []
