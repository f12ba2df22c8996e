"""Leaving-Jinan registration (离济备案): a filing recorded at once, trip checks, return, overdue
reminders; who is away (leave and travel overviews) in each role's scope, and the exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import pytest
import time_machine
from chalice.test import Client
from openpyxl import load_workbook

from chalicelib.api.exports import XLSX
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.identity import call
from tests.support.leave import approve_all, file_leave, file_travel, leave_form, scheduled, travel_form

MORNING = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 on campus
MONDAY = date(2026, 12, 7)


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


# -- filing ---------------------------------------------------------------------------------------
def test_a_registration_is_recorded_at_once_and_the_head_and_hr_are_told(client: Client, tokens: Tokens) -> None:
    queued_notifications()
    status, app = file_travel(client, tokens["t001"], travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=3)))
    assert status == 201, app
    assert app["status"] == "approved" and app["chain"] == []
    told = sorted(r for n in queued_notifications() for r in n["recipients"])
    assert told == ["dean01", "hr01"]
    status, record = call(client, "GET", f"/travel/{app['id']}", tokens["t001"])
    assert status == 200
    assert record["destination"] == {"province": "北京市", "city": "北京市"} and record["trip_number"] == "G178"
    assert record["leaves_jinan"] is True and record["status"] == "approved"
    # The end is the midnight after the return date, on campus.
    assert record["end"] == "2026-12-10T16:00:00.000+00:00"  # return date 12-10
    for reader, expected in (("dean01", 200), ("hr01", 200), ("t002", 404), ("fdy01", 404), ("leader01", 404)):
        assert call(client, "GET", f"/travel/{app['id']}", tokens[reader])[0] == expected, reader


@pytest.mark.parametrize(("changes", "field", "reason"), [
    ({"destination": {"province": "北京", "city": "北京"}}, "data.destination", "province"),
    ({"destination": {"province": "台北", "city": "台北"}}, "data.destination", "province"),
    ({"transport": "train", "train_or_flight": "CA1234"}, "data.train_or_flight", "train number"),
    ({"transport": "train", "train_or_flight": None}, "data.train_or_flight", "required"),
    ({"transport": "plane", "train_or_flight": "CA12345"}, "data.train_or_flight", "flight number"),
    ({"transport": "plane", "train_or_flight": "1234"}, "data.train_or_flight", "flight number"),
    ({"transport": "spaceship"}, "data.transport", "option"),
])
def test_destination_transport_and_trip_number_are_checked(client: Client, tokens: Tokens, changes: dict,
                                                           field: str, reason: str) -> None:
    form = travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2), **changes)
    if changes.get("train_or_flight", "") is None:
        form.pop("train_or_flight", None)
    status, body = file_travel(client, tokens["t001"], form)
    assert status == 422, body
    assert reason in body["fields"][field], body["fields"]


@pytest.mark.parametrize(("transport", "number"), [("train", "G1234"), ("train", "k51"), ("train", "1461"),
                                                   ("plane", "CA1234"), ("plane", "3U8888"), ("plane", "MU5101A"),
                                                   ("coach", None), ("car", None)])
def test_well_formed_trips_are_accepted(client: Client, tokens: Tokens, transport: str, number: str | None) -> None:
    form = travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2), transport=transport,
                       train_or_flight=number)
    if number is None:
        form.pop("train_or_flight", None)
    status, body = file_travel(client, tokens["t002"], form)
    assert status == 201, body


def test_dates_must_be_in_order_not_past_and_not_overlapping(client: Client, tokens: Tokens) -> None:
    status, body = file_travel(client, tokens["t001"], travel_form(MONDAY + timedelta(days=3), MONDAY + timedelta(days=1)))
    assert status == 422 and "data.return_date" in body["fields"]
    status, body = file_travel(client, tokens["t001"], travel_form(MONDAY - timedelta(days=3), MONDAY))
    assert status == 422 and body["fields"] == {"data.departure_date": "is in the past"}
    assert file_travel(client, tokens["t001"], travel_form(MONDAY, MONDAY))[0] == 201  # a day trip today
    status, body = file_travel(client, tokens["t001"], travel_form(MONDAY, MONDAY + timedelta(days=2)))
    assert status == 422 and "overlaps" in body["fields"]["data.departure_date"]
    assert file_travel(client, tokens["t001"], travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)))[0] \
        == 201


def test_return_before_departure_is_refused_and_overdue_is_reminded_once(client: Client, tokens: Tokens) -> None:
    _, trip = file_travel(client, tokens["t001"], travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)))
    status, body = call(client, "POST", f"/travel/{trip['id']}/return", tokens["t001"])
    assert status == 409, body
    _, other = file_travel(client, tokens["t002"], travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)))
    with time_machine.travel(MORNING + timedelta(days=2), tick=True):
        assert call(client, "POST", f"/travel/{other['id']}/return", Tokens(client)["t002"])[0] == 200
    queued_notifications()
    end = datetime(2026, 12, 9, 16, 0, tzinfo=timezone.utc)  # midnight after the return date
    def run(minutes: int) -> dict:
        return client.lambda_.invoke("remind_overdue_returns",
                                     scheduled("remind_overdue_returns", end + timedelta(minutes=minutes))).payload

    # Due at midnight: the night's runs hold it, the first run after 08:00 sends it, later ones nothing.
    assert [run(m)["held"] for m in (-10, 20, 50)] == [0, 1, 1]
    assert queued_notifications() == []
    assert run(8 * 60 + 5)["reminded"] == 1
    assert run(8 * 60 + 35)["reminded"] == 0 and run(24 * 60)["held"] == 0
    told = queued_notifications()
    assert sorted(tuple(n["recipients"]) for n in told) == [("dean01",), ("t001",)]
    with time_machine.travel(end + timedelta(days=1), tick=True):
        status, back = call(client, "POST", f"/travel/{trip['id']}/return", Tokens(client)["t001"])
    assert status == 200 and back["returned_at"] and back["overdue"] is False


def test_an_approved_registration_can_be_cancelled_before_departure_only(client: Client, tokens: Tokens) -> None:
    _, later = file_travel(client, tokens["t001"], travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)))
    assert call(client, "POST", f"/applications/{later['id']}/cancel", tokens["t001"])[0] == 200
    _, today = file_travel(client, tokens["t002"], travel_form(MONDAY, MONDAY + timedelta(days=1)))
    assert call(client, "POST", f"/applications/{today['id']}/cancel", tokens["t002"])[0] == 409


def test_the_health_prefill_of_staff_away_is_the_destination(client: Client, tokens: Tokens) -> None:
    form = travel_form(MONDAY, MONDAY + timedelta(days=2), destination={"province": "上海市", "city": "上海市"})
    file_travel(client, tokens["t001"], form)
    body = call(client, "GET", "/health/reports/prefill", tokens["t001"])[1]
    assert body["answers"] == {"whereabouts": "other_city", "current_city": {"province": "上海市", "city": "上海市"}}
    assert body["away"]["kind"] == "travel"


# -- who is away --------------------------------------------------------------------------------
@pytest.fixture
def away(client: Client, tokens: Tokens) -> dict[str, str]:
    """On Tuesday: s001 and s011 (cs) away, s016 (fl) away inside Jinan; t001 (cs) and hr01 (rsc)
    travelling; s002's leave is only pending."""
    tuesday = MORNING + timedelta(days=1)
    ids = {}
    for student, destination, leaves in (("s001", ("江苏省", "南京市"), True), ("s011", ("江苏省", "苏州市"), True),
                                        ("s016", ("山东省", "济南市"), False)):
        _, app = file_leave(client, tokens[student], leave_form(
            tuesday, tuesday + timedelta(days=1), destination={"province": destination[0], "city": destination[1]},
            leaves_jinan=leaves))
        approve_all(client, tokens, app)
        ids[student] = app["id"]
    file_leave(client, tokens["s002"], leave_form(tuesday, tuesday + timedelta(days=1)))
    for member, transport, number in (("t001", "plane", "CA1234"), ("hr01", "train", "G178")):
        _, app = file_travel(client, tokens[member], travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=4),
                                                                  transport=transport, train_or_flight=number))
        ids[member] = app["id"]
    return ids


def overview(client: Client, token: str, query: str) -> tuple[int, dict]:
    return call(client, "GET", f"/leave/overview?{query}", token)


@pytest.mark.parametrize(("who", "people"), [("xg01", {"s001", "s011", "s016"}), ("dean01", {"s001", "s011"}),
                                              ("fdy01", {"s001", "s011"}), ("fdy02", {"s016"})])
def test_the_leave_overview_shows_my_scope(client: Client, tokens: Tokens, away: dict, who: str,
                                           people: set[str]) -> None:
    status, body = overview(client, tokens[who], "date=2026-12-08")
    assert status == 200, body
    assert {p["userid"] for p in body["people"]} == people
    assert body["away"] == len(people)
    assert body["leaving_jinan"] == len(people - {"s016"})
    assert sum(u["away"] for u in body["by_unit"]) == len(people)
    assert sum(d["away"] for d in body["by_destination"]) == len(people)


def test_the_leave_overview_by_class_and_its_limits(client: Client, tokens: Tokens, away: dict) -> None:
    status, body = overview(client, tokens["fdy01"], "date=2026-12-08&class=cs2002")
    assert status == 200 and [p["userid"] for p in body["people"]] == ["s011"]
    assert body["by_unit"] == [{"department": "cs", "class_id": "cs2002", "away": 1, "leaving_jinan": 1}]
    assert overview(client, tokens["fdy01"], "date=2026-12-08&class=fl2001")[0] == 403
    assert overview(client, tokens["dean01"], "date=2026-12-08&department=fl")[0] == 403
    # Monday: nobody yet; a page of one, then the next.
    assert overview(client, tokens["xg01"], "date=2026-12-07")[1]["away"] == 0
    first = overview(client, tokens["xg01"], "date=2026-12-08&limit=2")[1]
    second = overview(client, tokens["xg01"], f"date=2026-12-08&limit=2&next={first['next']}")[1]
    assert [p["userid"] for p in first["people"] + second["people"]] == ["s001", "s011", "s016"]
    assert second["next"] is None


@pytest.mark.parametrize("who", ["s001", "t001", "hr01", "doc01", "bw01", "admin"])
def test_people_without_a_view_of_students_away_are_refused(client: Client, tokens: Tokens, who: str) -> None:
    assert overview(client, tokens[who], "date=2026-12-08")[0] == 403


def test_a_leader_gets_figures_without_names(client: Client, tokens: Tokens, away: dict) -> None:
    body = overview(client, tokens["leader01"], "date=2026-12-08")[1]
    assert body["away"] == 3 and body["people"] == []
    body = call(client, "GET", "/travel/overview?from=2026-12-08&to=2026-12-10", tokens["leader01"])[1]
    assert body["away"] == 2 and body["people"] == []


def test_the_travel_overview_by_destination_and_transport(client: Client, tokens: Tokens, away: dict) -> None:
    status, body = call(client, "GET", "/travel/overview?from=2026-12-06&to=2026-12-20", tokens["hr01"])
    assert status == 200, body
    assert body["away"] == 2 and {p["userid"] for p in body["people"]} == {"t001", "hr01"}
    assert body["by_destination"] == [{"province": "北京市", "city": "北京市", "away": 2}]
    assert body["by_transport"] == [{"transport": "plane", "away": 1}, {"transport": "train", "away": 1}]
    body = call(client, "GET", "/travel/overview?from=2026-12-08", tokens["dean01"])[1]
    assert [p["userid"] for p in body["people"]] == ["t001"]
    assert call(client, "GET", "/travel/overview?from=2026-12-12&to=2026-12-20", tokens["hr01"])[1]["away"] == 0
    assert call(client, "GET", "/travel/overview?from=2026-12-08", tokens["fdy01"])[0] == 403
    assert call(client, "GET", "/travel/overview?from=2026-12-08", tokens["xg01"])[0] == 403
    status, body = call(client, "GET", "/travel/overview?from=2026-12-08&to=2026-12-01", tokens["hr01"])
    assert status == 422 and "to" in body["fields"]
    assert call(client, "GET", "/travel/overview?from=2026-01-01&to=2026-12-01", tokens["hr01"])[0] == 422


def test_an_overdue_student_counts_as_away_until_back(client: Client, tokens: Tokens, away: dict) -> None:
    with time_machine.travel(MORNING + timedelta(days=4), tick=True):  # Friday: the leaves ended Wednesday
        again = Tokens(client)
        assert call(client, "POST", f"/leave/{away['s011']}/return", again["s011"])[0] == 200
        body = overview(client, again["xg01"], "date=2026-12-11")[1]
        # s011 came back today: away part of the day (days count whole, like the end day), no longer overdue.
        assert {(p["userid"], p["overdue"]) for p in body["people"]} == {("s001", True), ("s011", False),
                                                                         ("s016", True)}
        assert body["overdue"] == 2
        assert overview(client, again["xg01"], "date=2026-12-12")[1]["away"] == 0  # the future holds only plans
    with time_machine.travel(MORNING + timedelta(days=5), tick=True):  # Saturday: s011 is not counted any more
        again = Tokens(client)
        body = overview(client, again["xg01"], "date=2026-12-12")[1]
        assert {p["userid"] for p in body["people"]} == {"s001", "s016"}


def test_the_leave_export_lists_my_scope(client: Client, tokens: Tokens, away: dict) -> None:
    response = client.http.get("/leave/export?date=2026-12-08&format=csv",
                               headers={"Authorization": f"Bearer {tokens['fdy01']}"})
    assert response.status_code == 200
    text = response.body.decode("utf-8") if isinstance(response.body, bytes) else response.body
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["申请编号", "工号/学号", "姓名"]
    assert sorted(r[1] for r in rows[1:]) == ["s001", "s011"]
    response = client.http.get("/travel/export?from=2026-12-08&to=2026-12-09",
                               headers={"Authorization": f"Bearer {tokens['hr01']}", "Accept": XLSX})
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.body)).active
    assert sorted(row[1] for row in sheet.iter_rows(min_row=2, values_only=True)) == ["hr01", "t001"]
    assert client.http.get("/travel/export?from=2026-12-08",
                           headers={"Authorization": f"Bearer {tokens['hr01']}"}).status_code == 400  # no Accept
    status, audit = call(client, "GET", "/admin/audit?actor=hr01", tokens["admin"])
    assert any(e["action"] == "travel.export" for e in audit["items"])


def test_a_leaders_export_has_figures_only(client: Client, tokens: Tokens, away: dict) -> None:
    response = client.http.get("/leave/export?date=2026-12-08&format=csv",
                               headers={"Authorization": f"Bearer {tokens['leader01']}"})
    text = response.body.decode("utf-8") if isinstance(response.body, bytes) else response.body
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows == [["部门", "班级", "人数", "离开济南人数"], ["cs", "cs2001", "1", "1"], ["cs", "cs2002", "1", "1"],
                    ["fl", "fl2001", "1", "0"]]
