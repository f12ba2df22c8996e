"""Figures, missing lists, abnormal lists and exports, each within the caller's scope; the audit trail."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import time_machine
from chalice.test import Client
from openpyxl import load_workbook

from chalicelib.api.exports import XLSX
from chalicelib.db.audit import AuditModel
from tests.support.hall import Tokens, open_campus
from tests.support.health import FEVER, NORMAL, consent, file_report
from tests.support.identity import call

MORNING = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)
DAY = "2026-11-30"
CS_STUDENTS = {f"s{n:03d}" for n in range(1, 16)}
FL_STUDENTS = {f"s{n:03d}" for n in range(16, 21)}
STAFF = {"admin", "hr01", "doc01", "xg01", "bw01", "hq01", "xl01", "leader01", "dean01", "fdy01", "fdy02", "t001",
         "t002"}


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    """The cast, with a morning's reports: s001 s011 s016 normal; s002 and t001 abnormal."""
    with time_machine.travel(MORNING, tick=True):
        tokens = open_campus(client)
        for userid, answers in (("s001", NORMAL), ("s002", FEVER), ("s011", NORMAL), ("s016", NORMAL),
                                ("t001", {**NORMAL, "close_contact": True})):
            consent(client, tokens[userid])
            assert file_report(client, tokens[userid], answers)[0] == 201
        yield tokens


def get(client: Client, tokens: Tokens, userid: str, path: str) -> tuple[int, dict]:
    return call(client, "GET", path, tokens[userid])


def figures(body: dict) -> tuple[int, int, int]:
    return body["expected"], body["reported"], body["abnormal"]


def test_a_counselor_sees_their_classes_only(client: Client, tokens: Tokens) -> None:
    status, body = get(client, tokens, "fdy01", "/health/overview")
    assert status == 200
    assert figures(body["total"]) == (15, 3, 1)
    assert set(body["classes"]) == {"cs2001", "cs2002"} and set(body["departments"]) == {"cs"}
    assert figures(body["classes"]["cs2001"]) == (10, 2, 1)
    assert body["total"]["completion_rate"] == 0.2

    status, body = get(client, tokens, "fdy02", "/health/overview")
    assert figures(body["total"]) == (5, 1, 0) and set(body["classes"]) == {"fl2001"}
    # narrowing inside the scope works; outside it is refused
    assert figures(get(client, tokens, "fdy01", "/health/overview?class=cs2002")[1]["total"]) == (5, 1, 0)
    assert get(client, tokens, "fdy01", "/health/overview?class=fl2001")[0] == 403
    assert get(client, tokens, "fdy01", "/health/overview?department=fl")[1]["total"]["expected"] == 0


@pytest.mark.parametrize(("userid", "expected"), [
    ("leader01", (34, 5, 2)),  # the campus: 13 staff, 20 students, 1 third-party
    ("doc01", (34, 5, 2)),
    ("dean01", (18, 4, 2)),  # cs: 3 staff and 15 students
    ("hr01", (13, 1, 1)),  # staff
    ("xg01", (20, 4, 1)),  # students
])
def test_overview_totals_follow_the_scope(client: Client, tokens: Tokens, userid: str, expected: tuple) -> None:
    status, body = get(client, tokens, userid, "/health/overview")
    assert status == 200 and figures(body["total"]) == expected


@pytest.mark.parametrize("userid", ["admin", "s001", "t002"])
def test_no_health_scope_no_figures(client: Client, tokens: Tokens, userid: str) -> None:
    assert get(client, tokens, userid, "/health/overview")[0] == 403


def test_overview_counters_are_kept_by_filings_and_read_back_after_the_roster_is_taken(client: Client,
                                                                                       tokens: Tokens) -> None:
    # When the reminder job takes the day's roster (expected counts are then stored)
    with time_machine.travel(datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc), tick=False):
        client.lambda_.invoke("send_report_reminders", _scheduled())
        status, body = get(client, tokens, "leader01", "/health/overview?date=" + DAY)
    assert figures(body["total"]) == (34, 5, 2)


def test_missing_lists_names_in_scope_and_never_beyond(client: Client, tokens: Tokens) -> None:
    status, body = get(client, tokens, "fdy01", "/health/missing")
    assert status == 200
    names = {p["userid"] for p in body["items"]}
    assert names == CS_STUDENTS - {"s001", "s002", "s011"} and body["count"] == 12
    assert not names & FL_STUDENTS
    status, body = get(client, tokens, "fdy01", "/health/missing?class=cs2002")
    assert {p["userid"] for p in body["items"]} == {"s012", "s013", "s014", "s015"}
    assert get(client, tokens, "fdy01", "/health/missing?class=fl2001")[0] == 403
    assert get(client, tokens, "leader01", "/health/missing")[0] == 403  # figures only
    # pages
    status, first = get(client, tokens, "doc01", "/health/missing?limit=10")
    status, second = get(client, tokens, "doc01", f"/health/missing?limit=10&next={first['next']}")
    status, third = get(client, tokens, "doc01", f"/health/missing?limit=10&next={second['next']}")
    paged = [p["userid"] for p in first["items"] + second["items"] + third["items"]]
    assert len(paged) == len(set(paged)) == first["count"] == 29 and third["next"] is None


def test_abnormal_lists_reasons_in_scope_and_audits_each_person(client: Client, tokens: Tokens) -> None:
    status, body = get(client, tokens, "fdy01", "/health/abnormal")
    assert status == 200
    assert [(i["userid"], [r["code"] for r in i["reasons"]]) for i in body["items"]] == [
        ("s002", ["temperature", "symptoms"])]
    assert body["items"][0]["temperature"] == 38.1
    assert {i["userid"] for i in get(client, tokens, "doc01", "/health/abnormal")[1]["items"]} == {"s002", "t001"}
    assert {i["userid"] for i in get(client, tokens, "hr01", "/health/abnormal")[1]["items"]} == {"t001"}
    assert get(client, tokens, "fdy02", "/health/abnormal")[1]["items"] == []
    assert get(client, tokens, "leader01", "/health/abnormal")[0] == 403
    reads = {(a.actor, a.subject) for a in AuditModel.scan() if a.action == "health.report.read"}
    assert reads == {("fdy01", "person#s002"), ("doc01", "person#s002"), ("doc01", "person#t001"),
                     ("hr01", "person#t001")}


def test_a_counselors_export_has_their_students_only(client: Client, tokens: Tokens) -> None:
    response = client.http.get("/health/export?format=csv", headers={"Authorization": f"Bearer {tokens['fdy01']}"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    text = response.body.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header, rows = rows[0], rows[1:]
    assert {r[1] for r in rows} == CS_STUDENTS
    by_user = {r[1]: dict(zip(header, r, strict=True)) for r in rows}
    assert by_user["s002"]["已报"] == "是" and by_user["s002"]["异常"] == "是" and by_user["s003"]["已报"] == "否"
    # Each student whose report was exported has an audit record of the read
    exported = {a.subject for a in AuditModel.scan() if a.actor == "fdy01" and '"export": true' in a.detail}
    assert exported == {"person#s001", "person#s002", "person#s011"}


def test_the_xlsx_export_opens_in_a_spreadsheet(client: Client, tokens: Tokens) -> None:
    path = "/health/export?format=xlsx&class=fl2001"
    status, body = get(client, tokens, "doc01", path)
    assert status == 400 and "Accept" in body["message"]  # bytes only to a client that accepts them
    response = client.http.get(path, headers={"Authorization": f"Bearer {tokens['doc01']}", "Accept": XLSX})
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.body)).active
    values = list(sheet.values)
    assert values[0][1] == "工号/学号" and {row[1] for row in values[1:]} == FL_STUDENTS


def test_a_leaders_export_has_figures_and_no_individual(client: Client, tokens: Tokens) -> None:
    response = client.http.get("/health/export?format=csv", headers={"Authorization": f"Bearer {tokens['leader01']}"})
    assert response.status_code == 200
    text = response.body.decode("utf-8-sig")
    assert "s002" not in text and "t001" not in text and "38.1" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["日期", "院系", "班级", "应报"] and any(r[1] == "cs" for r in rows[1:])


def test_trend_is_a_daily_series_in_scope(client: Client, tokens: Tokens) -> None:
    status, body = get(client, tokens, "fdy01", "/health/trend?from=2026-11-29&to=2026-11-30")
    assert status == 200
    points = [(p["date"], p["expected"], p["reported"], p["abnormal"]) for p in body["items"]]
    assert points == [("2026-11-29", 15, 0, 0), ("2026-11-30", 15, 3, 1)]
    assert get(client, tokens, "fdy01", "/health/trend?from=2026-01-01&to=2026-11-30")[0] == 422


def test_the_it_centre_reviews_the_audit_trail(client: Client, tokens: Tokens) -> None:
    get(client, tokens, "doc01", "/health/abnormal")
    status, body = get(client, tokens, "admin", "/health/overview")
    assert status == 403  # the IT centre sees no health data by default
    status, body = get(client, tokens, "admin", "/admin/audit?actor=doc01")
    assert status == 200
    assert {(i["subject"], i["action"]) for i in body["items"]} == {("person#s002", "health.report.read"),
                                                                    ("person#t001", "health.report.read")}
    status, day = get(client, tokens, "admin", f"/admin/audit?date={DAY}&limit=2")
    assert status == 200 and len(day["items"]) == 2 and day["next"]
    status, following = get(client, tokens, "admin", f"/admin/audit?date={DAY}&limit=2&next={day['next']}")
    assert status == 200 and following["items"] and following["items"][0] != day["items"][-1]
    assert get(client, tokens, "admin", "/admin/audit?next=bm9wZQ")[0] == 422
    assert get(client, tokens, "doc01", "/admin/audit")[0] == 403


def _scheduled() -> dict:
    from tests.support.health import scheduled_event

    return scheduled_event("send_report_reminders")


def test_leaders_do_not_see_abnormal_counts_of_tiny_groups(client: Client, tokens: Tokens) -> None:
    status, body = get(client, tokens, "leader01", "/health/overview")
    assert body["departments"]["cs"]["abnormal"] == 2  # 18 people
    assert body["departments"]["xyy"]["abnormal"] is None  # the hospital's one member
    assert body["total"]["abnormal"] == 2
    # people with individual scope see every count
    assert get(client, tokens, "doc01", "/health/overview")[1]["departments"]["xyy"]["abnormal"] == 0


def test_bad_dates_and_cursors_are_4xx(client: Client, tokens: Tokens) -> None:
    assert get(client, tokens, "leader01", "/health/trend?from=9999-12-31&to=9999-12-31")[0] == 422
    assert get(client, tokens, "leader01", "/health/overview?date=1900-01-01")[0] == 422
    assert get(client, tokens, "doc01", "/health/missing?next=%%%")[0] == 422
    assert get(client, tokens, "doc01", "/health/missing?next=bm9wZQ")[0] == 200  # a position, just past "nope"
    from chalicelib.api.schemas import cursor

    forged = cursor('{"subject":{"S":"a"}}')
    assert get(client, tokens, "admin", f"/admin/audit?next={forged}")[0] == 422
    status, page = get(client, tokens, "admin", f"/admin/audit?date={DAY}&limit=1")
    assert get(client, tokens, "admin", f"/admin/audit?actor=nobody&next={page['next']}")[0] == 200
