"""Dormitory repair over HTTP: filed in the hall, approved by logistics, then the order's own life."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import repair as repair_area
from chalicelib.api.deps import hall as service_hall
from chalicelib.db.directory import DirectoryRepository
from chalicelib.db.repair import RepairOrderModel
from chalicelib.domain.repair import assign
from chalicelib.errors import Conflict
from tests.support.hall import open_campus, queued_notifications
from tests.support.identity import call

# 10:10 in Shanghai on 1 December 2026: clear of the :00/:30 marks, so nothing is delayed on the queue.
NOW = datetime(2026, 12, 1, 2, 10, tzinfo=timezone.utc)
REPAIR = {"data": {"building": "3号楼", "room": "512", "kind": "water", "description": "卫生间水龙头漏水",
                   "available_time": "afternoon", "mobile": "13800138000"}}


@pytest.fixture
def campus(client: Client) -> Iterator[dict[str, str]]:
    """The demo cast logged in, the queues created, the clock on a campus morning."""
    with time_machine.travel(NOW, tick=True):
        yield open_campus(client)


def repair_messages() -> list[tuple[str, tuple[str, ...]]]:
    """(event, recipients) of the repair area's own notifications, in the order they were queued."""
    return [(n["key"].split(":")[-1], tuple(n["recipients"])) for n in queued_notifications()
            if n["key"].startswith("repair:")]


def file_and_approve(client: Client, tokens: dict[str, str], student: str = "s001") -> str:
    status, app = call(client, "POST", "/services/dorm-repair/applications", tokens[student], REPAIR)
    assert status == 201, app
    assert app["waiting_for"] == "role:logistics"
    status, app = call(client, "POST", f"/applications/{app['id']}/decisions", tokens["hq01"],
                       {"decision": "approve", "comment": "已受理"})
    assert (status, app["status"]) == (200, "approved"), app
    return app["id"]


def test_full_lifecycle_from_filing_to_a_rated_close(client: Client, campus: dict[str, str]) -> None:
    # Given a student files a repair and logistics approves it in the hall
    order_id = file_and_approve(client, campus)

    # Then an order exists for the application, accepted, with the form copied in
    status, order = call(client, "GET", f"/repairs/{order_id}", campus["s001"])
    assert status == 200, order
    assert (order["status"], order["student"], order["building"], order["room"], order["kind"]) == (
        "accepted", "s001", "3号楼", "512", "water")
    assert order["history"][0]["actor"] == "hq01" and order["version"] == 1

    # When logistics assigns a worker for tomorrow
    status, order = call(client, "POST", f"/repairs/{order_id}/assign", campus["hq01"],
                         {"worker": "胡师傅", "planned_date": "2026-12-02"})
    assert (status, order["status"], order["worker"], order["planned_date"]) == (
        200, "assigned", "胡师傅", "2026-12-02")
    # and marks it done
    status, order = call(client, "POST", f"/repairs/{order_id}/done", campus["hq01"], {"note": "更换阀芯"})
    assert (status, order["status"], order["done_note"]) == (200, "done", "更换阀芯")
    # and the student reopens it, logistics finishes again, and the student confirms with a rating
    status, order = call(client, "POST", f"/repairs/{order_id}/reopen", campus["s001"], {"reason": "仍在滴水"})
    assert (status, order["status"], order["worker"], order["reopen_count"]) == (200, "assigned", "胡师傅", 1)
    assert call(client, "POST", f"/repairs/{order_id}/done", campus["hq01"], {})[1]["status"] == "done"
    status, order = call(client, "POST", f"/repairs/{order_id}/confirm", campus["s001"],
                         {"rating": 5, "comment": "很及时"})

    # Then it is closed with the rating, every step in its history
    assert (status, order["status"], order["rating"], order["comment"], order["version"]) == (
        200, "closed", 5, "很及时", 6)
    assert [(e["verb"], e["from_status"], e["to_status"]) for e in order["history"]] == [
        ("accept", None, "accepted"), ("assign", "accepted", "assigned"), ("done", "assigned", "done"),
        ("reopen", "done", "assigned"), ("done", "assigned", "done"), ("confirm", "done", "closed")]
    # and each step was announced: the student on assignment and completion, logistics on reopen and close
    assert [m for m in repair_messages()] == [
        ("assign", ("s001",)), ("done", ("s001",)), ("reopen", ("hq01",)), ("done", ("s001",)),
        ("confirm", ("hq01",))]


def test_illegal_transitions_are_conflicts_and_nothing_changes(client: Client, campus: dict[str, str]) -> None:
    # Given an accepted order
    order_id = file_and_approve(client, campus)
    # When it is marked done, confirmed or reopened before it was assigned: 409
    assert call(client, "POST", f"/repairs/{order_id}/done", campus["hq01"], {})[0] == 409
    assert call(client, "POST", f"/repairs/{order_id}/confirm", campus["s001"], {"rating": 4})[0] == 409
    assert call(client, "POST", f"/repairs/{order_id}/reopen", campus["s001"], {"reason": "x"})[0] == 409
    # and once closed, nothing moves it again
    call(client, "POST", f"/repairs/{order_id}/assign", campus["hq01"], {"worker": "胡师傅", "planned_date": "2026-12-01"})
    call(client, "POST", f"/repairs/{order_id}/done", campus["hq01"], {})
    call(client, "POST", f"/repairs/{order_id}/confirm", campus["s001"], {"rating": 3})
    for path, token, body in ((f"/repairs/{order_id}/assign", "hq01", {"worker": "王", "planned_date": "2026-12-03"}),
                              (f"/repairs/{order_id}/done", "hq01", {}),
                              (f"/repairs/{order_id}/confirm", "s001", {"rating": 5}),
                              (f"/repairs/{order_id}/reopen", "s001", {"reason": "again"})):
        status, error = call(client, "POST", path, campus[token], body)
        assert (status, error["code"]) == (409, "conflict"), path
    # Then the stored order is still the closed one
    stored = call(client, "GET", f"/repairs/{order_id}", campus["s001"])[1]
    assert (stored["status"], stored["rating"], stored["version"]) == ("closed", 3, 4)


def test_roles_and_scope_of_each_action(client: Client, campus: dict[str, str]) -> None:
    # Given an assigned order of s001
    order_id = file_and_approve(client, campus)
    # When a student tries logistics' actions: 403 (the route is logistics' only)
    assert call(client, "POST", f"/repairs/{order_id}/assign", campus["s001"],
                {"worker": "我", "planned_date": "2026-12-02"})[0] == 403
    assert call(client, "POST", f"/repairs/{order_id}/done", campus["s001"], {})[0] == 403
    call(client, "POST", f"/repairs/{order_id}/assign", campus["hq01"], {"worker": "胡师傅", "planned_date": "2026-12-02"})
    call(client, "POST", f"/repairs/{order_id}/done", campus["hq01"], {})
    # Then another student cannot confirm or reopen it and learns nothing (404); logistics may see it but
    # not confirm for the student (403)
    assert call(client, "POST", f"/repairs/{order_id}/confirm", campus["s002"], {"rating": 1})[0] == 404
    assert call(client, "POST", f"/repairs/{order_id}/reopen", campus["s002"], {"reason": "x"})[0] == 404
    assert call(client, "POST", f"/repairs/{order_id}/confirm", campus["hq01"], {"rating": 5})[0] == 403
    # and nobody assigns into the past (campus calendar) or sends a rating outside 1-5 or extra fields
    other = file_and_approve(client, campus, "s002")
    status, error = call(client, "POST", f"/repairs/{other}/assign", campus["hq01"],
                         {"worker": "胡师傅", "planned_date": "2026-11-30"})
    assert (status, set(error["fields"])) == (422, {"planned_date"})
    status, error = call(client, "POST", f"/repairs/{order_id}/confirm", campus["s001"], {"rating": 6})
    assert (status, set(error["fields"])) == (422, {"rating"})
    status, error = call(client, "POST", f"/repairs/{order_id}/confirm", campus["s001"],
                         {"rating": 5, "status": "closed"})
    assert (status, set(error["fields"])) == (422, {"status"})


@pytest.mark.parametrize(("userid", "expected"), [("s001", 200), ("hq01", 200), ("s002", 404), ("s016", 404),
                                                  ("dean01", 404), ("admin", 404), ("t001", 404)])
def test_an_order_is_visible_to_its_student_and_logistics_only(client: Client, campus: dict[str, str],
                                                               userid: str, expected: int) -> None:
    # Given s001's order
    order_id = file_and_approve(client, campus)
    # When each member of the cast reads it, then only the student and logistics see it
    status, body = call(client, "GET", f"/repairs/{order_id}", campus[userid])
    assert status == expected, body
    if expected == 404:
        assert body == {"code": "not_found", "message": "No such repair order."}
    # and an id that does not exist looks the same
    assert call(client, "GET", "/repairs/20261201T000000-000000000000", campus["hq01"])[0] == 404


def test_lists_mine_for_students_open_oldest_first_for_logistics(client: Client, campus: dict[str, str]) -> None:
    # Given three orders: s001's first, then s002's, then s001's second; the first is closed
    first = file_and_approve(client, campus, "s001")
    second = file_and_approve(client, campus, "s002")
    third = file_and_approve(client, campus, "s001")
    call(client, "POST", f"/repairs/{first}/assign", campus["hq01"], {"worker": "胡师傅", "planned_date": "2026-12-02"})
    call(client, "POST", f"/repairs/{first}/done", campus["hq01"], {})
    call(client, "POST", f"/repairs/{first}/confirm", campus["s001"], {"rating": 4})
    call(client, "POST", f"/repairs/{second}/assign", campus["hq01"], {"worker": "胡师傅", "planned_date": "2026-12-02"})

    # When each lists
    mine = call(client, "GET", "/repairs", campus["s001"])[1]
    theirs = call(client, "GET", "/repairs", campus["s002"])[1]
    # Then a student sees their own, newest first, whatever the status
    assert [o["id"] for o in mine["items"]] == [third, first] and mine["next"] is None
    # (lists mask the contact number; the order itself shows it to whoever handles it)
    assert mine["items"][0]["mobile"] == "138****8000"
    assert call(client, "GET", f"/repairs/{third}", campus["hq01"])[1]["mobile"] == "13800138000"
    assert [o["id"] for o in theirs["items"]] == [second]
    assert call(client, "GET", "/repairs?status=closed", campus["s001"])[1]["items"][0]["id"] == first
    # and logistics sees the open ones, oldest first, one page at a time across statuses
    page = call(client, "GET", "/repairs?limit=1", campus["hq01"])[1]
    assert [o["id"] for o in page["items"]] == [second] and page["next"]
    page2 = call(client, "GET", f"/repairs?limit=1&next={page['next']}", campus["hq01"])[1]
    assert [o["id"] for o in page2["items"]] == [third] and page2["next"] is None
    # and filters by status, closed included
    assert [o["id"] for o in call(client, "GET", "/repairs?status=accepted", campus["hq01"])[1]["items"]] == [third]
    assert [o["id"] for o in call(client, "GET", "/repairs?status=closed", campus["hq01"])[1]["items"]] == [first]
    assert call(client, "GET", "/repairs?status=lost", campus["hq01"])[0] == 422


def test_the_hook_opens_one_order_however_often_it_runs(client: Client, campus: dict[str, str]) -> None:
    # Given an approved dorm-repair application
    order_id = file_and_approve(client, campus)
    app = service_hall().applications.get(order_id)
    assert app is not None
    # When the hook runs again for the same approval (a retry), twice
    repair_area.follow_repair_application(app, app.history[-1])
    repair_area.follow_repair_application(app, app.history[-1])
    # Then there is still one order, untouched (version 1)
    rows = list(RepairOrderModel.by_student.query("s001"))
    assert [(r.order_id, r.status, r.version) for r in rows] == [(order_id, "accepted", 1)]


def test_the_hook_ignores_filing_rejection_and_returns(client: Client, campus: dict[str, str]) -> None:
    # Given one application rejected and one returned by logistics, and one still pending
    ids = []
    for decision in ("reject", "return", None):
        _, app = call(client, "POST", "/services/dorm-repair/applications", campus["s001"], REPAIR)
        if decision:
            call(client, "POST", f"/applications/{app['id']}/decisions", campus["hq01"], {"decision": decision})
        ids.append(app["id"])
    # Then no order was opened for any of them
    assert call(client, "GET", "/repairs", campus["s001"])[1]["items"] == []
    assert all(call(client, "GET", f"/repairs/{i}", campus["hq01"])[0] == 404 for i in ids)


def test_cancelling_the_approved_application_cancels_an_unfinished_order(client: Client,
                                                                         campus: dict[str, str]) -> None:
    # Given an assigned order
    order_id = file_and_approve(client, campus)
    call(client, "POST", f"/repairs/{order_id}/assign", campus["hq01"], {"worker": "胡师傅", "planned_date": "2026-12-02"})
    # When the student cancels the approved application in the hall
    status, app = call(client, "POST", f"/applications/{order_id}/cancel", campus["s001"])
    assert (status, app["status"]) == (200, "cancelled")
    # Then the order is cancelled, leaves logistics' open list, and the assigner is told
    order = call(client, "GET", f"/repairs/{order_id}", campus["s001"])[1]
    assert (order["status"], order["history"][-1]["actor"]) == ("cancelled", "s001")
    assert call(client, "GET", "/repairs", campus["hq01"])[1]["items"] == []
    assert ("cancel", ("hq01",)) in repair_messages()
    assert call(client, "POST", f"/repairs/{order_id}/done", campus["hq01"], {})[0] == 409


def test_a_stale_write_loses_to_the_first_one(client: Client, campus: dict[str, str]) -> None:
    # Given two logistics staff read the same accepted order
    order_id = file_and_approve(client, campus)
    store = repair_area._orders()
    read_by_one = store.get(order_id)
    read_by_other = store.get(order_id)
    assert read_by_one is not None and read_by_other is not None
    # When both assign from what they read
    hq = DirectoryRepository().get_person("hq01")
    assert hq is not None
    first = assign(read_by_one, hq.actor(), "胡师傅", NOW.date(), NOW, NOW.date())
    second = assign(read_by_other, hq.actor(), "王师傅", NOW.date(), NOW, NOW.date())
    store.save(first, read_by_one.version)
    # Then the second write is a conflict and the first assignment stands
    with pytest.raises(Conflict):
        store.save(second, read_by_other.version)
    assert call(client, "GET", f"/repairs/{order_id}", campus["hq01"])[1]["worker"] == "胡师傅"
