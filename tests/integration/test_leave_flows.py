"""Student leave (请假): the chain by length, the filing rules, return and acknowledgement, overdue
reminders, and the health report's prefill while away."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from chalice.test import Client

from chalicelib.catalogue import shipped_definitions
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.identity import call
from tests.support.leave import approve_all, decide, file_leave, leave_form, scheduled

MORNING = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 on campus
START = MORNING + timedelta(days=1)  # Tuesday 09:00


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


def authorities(app: dict) -> list[str]:
    return [step["authority"] for step in app["chain"]]


# -- the chain --------------------------------------------------------------------------------
@pytest.mark.parametrize(("length", "chain"), [
    (timedelta(hours=4), ["counselor:cs2001"]),
    (timedelta(days=3), ["counselor:cs2001"]),
    (timedelta(days=3, minutes=1), ["counselor:cs2001", "dept_head:cs"]),
    (timedelta(days=7), ["counselor:cs2001", "dept_head:cs"]),
    (timedelta(days=7, minutes=1), ["counselor:cs2001", "dept_head:cs", "role:student_affairs"]),
    (timedelta(days=30), ["counselor:cs2001", "dept_head:cs", "role:student_affairs"]),
])
def test_the_chain_grows_exactly_past_3_and_7_days(client: Client, tokens: Tokens, length: timedelta,
                                                   chain: list[str]) -> None:
    status, app = file_leave(client, tokens["s001"], leave_form(START, START + length))
    assert status == 201, app
    assert authorities(app) == chain
    assert app["status"] == "pending" and app["waiting_for"] == "counselor:cs2001"


def test_the_thresholds_follow_the_catalogue_definition(client: Client, tokens: Tokens) -> None:
    """Given the IT centre moves the department head's threshold to 2 days,
    When a 2.5-day leave is filed, Then the department head is in its chain."""
    definition = shipped_definitions()["student-leave"].model_dump(mode="json", exclude_none=True)
    definition["steps"][1]["when"] = "days(start, end) > 2"
    status, body = call(client, "PUT", "/admin/services/student-leave", tokens["admin"], definition)
    assert status == 200, body
    status, app = file_leave(client, tokens["s001"], leave_form(START, START + timedelta(days=2, hours=12)))
    assert status == 201, app
    assert authorities(app) == ["counselor:cs2001", "dept_head:cs"]


def test_a_counselor_of_another_class_cannot_approve(client: Client, tokens: Tokens) -> None:
    _, app = file_leave(client, tokens["s001"], leave_form(START, START + timedelta(days=1)))
    status, _ = decide(client, tokens["fdy02"], app["id"])  # counselor of fl2001, not cs2001
    assert status in (403, 404)
    status, body = decide(client, tokens["fdy01"], app["id"])
    assert status == 200 and body["status"] == "approved"


def test_the_department_head_decides_after_the_counselor(client: Client, tokens: Tokens) -> None:
    _, app = file_leave(client, tokens["s001"], leave_form(START, START + timedelta(days=5)))
    assert decide(client, tokens["dean01"], app["id"])[0] == 403  # not their step yet
    assert decide(client, tokens["fdy01"], app["id"])[1]["status"] == "pending"
    assert decide(client, tokens["dean01"], app["id"])[1]["status"] == "approved"


# -- filing rules ---------------------------------------------------------------------------------
def test_end_before_start_and_a_start_long_past_are_refused(client: Client, tokens: Tokens) -> None:
    status, body = file_leave(client, tokens["s001"], leave_form(START, START - timedelta(hours=1)))
    assert status == 422 and "data.end" in body["fields"], body
    status, body = file_leave(client, tokens["s001"], leave_form(START, START))
    assert status == 422 and "data.end" in body["fields"], body
    status, body = file_leave(client, tokens["s001"], leave_form(MORNING - timedelta(hours=25), MORNING))
    assert status == 422 and body["fields"] == {"data.start": "is in the past"}
    status, body = file_leave(client, tokens["s001"], leave_form(MORNING - timedelta(hours=20), MORNING))
    assert status == 201, body  # within the grace period: a sick student files after the fact
    status, body = file_leave(client, tokens["s002"], leave_form(START, START + timedelta(days=121)))
    assert status == 422 and "data.end" in body["fields"]


def test_an_overlapping_leave_is_refused_until_the_first_ends_otherwise(client: Client, tokens: Tokens) -> None:
    student = tokens["s001"]
    status, first = file_leave(client, student, leave_form(START, START + timedelta(days=2)))
    assert status == 201
    status, body = file_leave(client, student, leave_form(START + timedelta(days=1), START + timedelta(days=4)))
    assert status == 422 and first["id"] in body["fields"]["data.start"]
    # Touching ends do not overlap.
    status, _ = file_leave(client, student, leave_form(START + timedelta(days=2), START + timedelta(days=3)))
    assert status == 201
    # Another student's leave is no obstacle.
    assert file_leave(client, tokens["s002"], leave_form(START, START + timedelta(days=2)))[0] == 201
    # Once the first is withdrawn, its days are free again.
    assert call(client, "POST", f"/applications/{first['id']}/withdraw", student)[0] == 200
    status, body = file_leave(client, student, leave_form(START + timedelta(hours=1), START + timedelta(days=1)))
    assert status == 201, body


def test_an_approved_leave_blocks_and_a_rejected_one_does_not(client: Client, tokens: Tokens) -> None:
    student = tokens["s003"]
    _, approved = file_leave(client, student, leave_form(START, START + timedelta(days=1)))
    approve_all(client, tokens, approved)
    assert file_leave(client, student, leave_form(START, START + timedelta(hours=2)))[0] == 422
    _, later = file_leave(client, student, leave_form(START + timedelta(days=3), START + timedelta(days=4)))
    assert decide(client, tokens["fdy01"], later["id"], "reject")[0] == 200
    assert file_leave(client, student, leave_form(START + timedelta(days=3), START + timedelta(days=4)))[0] == 201


def test_simultaneous_overlapping_filings_leave_one(client: Client, tokens: Tokens) -> None:
    student = tokens["s004"]

    def attempt(hours: int) -> int:
        return file_leave(client, student, leave_form(START + timedelta(hours=hours),
                                                      START + timedelta(days=1, hours=hours)))[0]

    with time_machine.travel(MORNING + timedelta(minutes=1), tick=True), ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(attempt, range(6)))
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 409, 422}
    status, page = call(client, "GET", "/applications", student)
    assert [a["status"] for a in page["items"] if a["service_id"] == "student-leave"] == ["pending"]


def test_a_returned_form_is_checked_again_when_resubmitted(client: Client, tokens: Tokens) -> None:
    student = tokens["s005"]
    _, first = file_leave(client, student, leave_form(START, START + timedelta(days=1)))
    assert decide(client, tokens["fdy01"], first["id"], "return")[0] == 200
    _, other = file_leave(client, student, leave_form(START + timedelta(days=2), START + timedelta(days=3)))
    status, body = call(client, "PUT", f"/applications/{first['id']}", student,
                        {"data": leave_form(START + timedelta(days=2), START + timedelta(days=2, hours=5))})
    assert status == 422 and other["id"] in body["fields"]["data.start"]
    status, body = call(client, "PUT", f"/applications/{first['id']}", student,
                        {"data": leave_form(START, START + timedelta(days=1, hours=5))})
    assert status == 200 and body["status"] == "pending"


# -- cancelling, returning ------------------------------------------------------------------------
def test_an_approved_leave_is_cancelled_only_before_it_starts(client: Client, tokens: Tokens) -> None:
    student = tokens["s006"]
    _, early = file_leave(client, student, leave_form(START, START + timedelta(days=1)))
    approve_all(client, tokens, early)
    status, body = call(client, "POST", f"/applications/{early['id']}/cancel", student)
    assert status == 200 and body["status"] == "cancelled"
    _, now_leave = file_leave(client, student, leave_form(MORNING + timedelta(minutes=30), START))
    approve_all(client, tokens, now_leave)
    with time_machine.travel(MORNING + timedelta(hours=1), tick=True):
        status, body = call(client, "POST", f"/applications/{now_leave['id']}/cancel", student)
    assert status == 409, body
    assert call(client, "GET", f"/applications/{now_leave['id']}", student)[1]["status"] == "approved"


def test_return_is_refused_before_departure_then_confirmed_and_acknowledged(client: Client, tokens: Tokens) -> None:
    student = tokens["s007"]
    _, app = file_leave(client, student, leave_form(START, START + timedelta(days=2)))
    status, body = call(client, "POST", f"/leave/{app['id']}/return", student)
    assert status == 409 and body["code"] == "conflict"  # pending
    approve_all(client, tokens, app)
    status, body = call(client, "POST", f"/leave/{app['id']}/return", student)
    assert status == 409 and "not started" in body["message"]
    queued_notifications()
    with time_machine.travel(START + timedelta(days=1), tick=True):
        again = Tokens(client)
        assert call(client, "POST", f"/leave/{app['id']}/acknowledge", again["fdy01"])[0] == 409  # not back yet
        assert call(client, "POST", f"/leave/{app['id']}/return", again["s002"])[0] == 404  # not theirs
        status, back = call(client, "POST", f"/leave/{app['id']}/return", again["s007"])
        assert status == 200 and back["returned_at"] and not back["overdue"]
        assert call(client, "POST", f"/leave/{app['id']}/return", again["s007"])[1] == back  # idempotent
        told = queued_notifications()
        assert [n["recipients"] for n in told] == [["fdy01"]] and "销假" in told[0]["body"]
        assert call(client, "POST", f"/leave/{app['id']}/acknowledge", again["fdy02"])[0] == 404
        status, acknowledged = call(client, "POST", f"/leave/{app['id']}/acknowledge", again["fdy01"])
        assert status == 200 and acknowledged["acknowledged_at"]
        # Who may read it: the student, their counselor, dean and student affairs; not another class's counselor.
        for reader, expected in (("s007", 200), ("fdy01", 200), ("dean01", 200), ("xg01", 200), ("fdy02", 404),
                                 ("s001", 404), ("doc01", 404)):
            assert call(client, "GET", f"/leave/{app['id']}", again[reader])[0] == expected, reader


def test_an_unknown_or_malformed_id_is_404(client: Client, tokens: Tokens) -> None:
    assert call(client, "GET", "/leave/20261207T010000-000000000000", tokens["s001"])[0] == 404
    assert call(client, "POST", "/leave/nonsense/return", tokens["s001"])[0] == 404


# -- overdue ------------------------------------------------------------------------------------
def test_the_overdue_reminder_reaches_the_student_and_counselor_once(client: Client, tokens: Tokens) -> None:
    _, late = file_leave(client, tokens["s008"], leave_form(START, START + timedelta(days=1)))
    approve_all(client, tokens, late)
    _, back = file_leave(client, tokens["s009"], leave_form(START, START + timedelta(days=1)))
    approve_all(client, tokens, back)
    _, later = file_leave(client, tokens["s010"], leave_form(START, START + timedelta(days=3)))
    approve_all(client, tokens, later)
    with time_machine.travel(START + timedelta(hours=2), tick=True):
        assert call(client, "POST", f"/leave/{back['id']}/return", Tokens(client)["s009"])[0] == 200
    queued_notifications()
    end = START + timedelta(days=1)
    # Before the end nothing is due.
    assert client.lambda_.invoke("remind_overdue_returns", scheduled("remind_overdue_returns",
                                                                     end - timedelta(minutes=1))).payload["reminded"] == 0
    assert queued_notifications() == []
    for minutes in (5, 35, 65):  # three runs after the end
        report = client.lambda_.invoke("remind_overdue_returns",
                                       scheduled("remind_overdue_returns", end + timedelta(minutes=minutes))).payload
        assert report["reminded"] == (1 if minutes == 5 else 0), report
    told = queued_notifications()
    assert sorted(tuple(n["recipients"]) for n in told) == [("fdy01",), ("s008",)]
    assert all(late["id"] not in n["body"] for n in told)
    with time_machine.travel(end + timedelta(hours=2), tick=True):
        view = call(client, "GET", f"/leave/{late['id']}", Tokens(client)["fdy01"])[1]
    assert view["overdue"] is True and view["reminded_at"]


# -- the health report knows -------------------------------------------------------------------
def test_the_health_prefill_defaults_to_the_leave_destination(client: Client, tokens: Tokens) -> None:
    _, app = file_leave(client, tokens["s001"], leave_form(START, START + timedelta(days=2),
                                                            destination={"province": "江苏省", "city": "南京市"}))
    approve_all(client, tokens, app)
    body = call(client, "GET", "/health/reports/prefill", tokens["s001"])[1]
    assert body["away"] is None and "whereabouts" not in body["answers"]  # not away yet
    with time_machine.travel(START + timedelta(hours=3), tick=True):
        body = call(client, "GET", "/health/reports/prefill", Tokens(client)["s001"])[1]
    assert body["answers"]["whereabouts"] == "other_city"
    assert body["answers"]["current_city"] == {"province": "江苏省", "city": "南京市"}
    assert body["away"]["id"] == app["id"] and body["away"]["kind"] == "leave"


def test_a_leave_inside_jinan_prefills_jinan(client: Client, tokens: Tokens) -> None:
    form = leave_form(START, START + timedelta(days=1), destination={"province": "山东省", "city": "济南市"},
                      leaves_jinan=False, transport="bus")
    _, app = file_leave(client, tokens["s002"], form)
    approve_all(client, tokens, app)
    with time_machine.travel(START + timedelta(hours=3), tick=True):
        body = call(client, "GET", "/health/reports/prefill", Tokens(client)["s002"])[1]
    assert body["answers"]["whereabouts"] == "jinan" and "current_city" not in body["answers"]


def test_a_destination_outside_the_province_list_is_refused(client: Client, tokens: Tokens) -> None:
    form = leave_form(START, START + timedelta(days=1), destination={"province": "山东", "city": "青岛"})
    status, body = file_leave(client, tokens["s001"], form)
    assert status == 422 and "province" in body["fields"]["data.destination"]
