"""A generated semester of leave and travel: every day's overview equals a recount from the stored
records, in every scope, and every record agrees with its application."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import boto3
import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.domain.access import Actor
from chalicelib.domain.health import Filter
from chalicelib.domain.workflow import Application
from chalicelib.errors import Invalid
from chalicelib.settings import get_settings
from tests.support.hall import Tokens, open_campus
from tests.support.identity import call
from tests.support.leave import leave_form, travel_form

TZ = ZoneInfo("Asia/Shanghai")
FIRST_DAY = date(2026, 9, 1)
DAYS = 100
TODAY = FIRST_DAY + timedelta(days=DAYS + 2)
STUDENTS = [f"s{n:03d}" for n in range(1, 21)]
STAFF = ["t001", "t002", "admin", "hr01", "doc01", "xg01", "bw01", "hq01", "xl01", "fdy01", "fdy02"]
HOLDER = {"counselor:cs2001": "fdy01", "counselor:cs2002": "fdy01", "counselor:fl2001": "fdy02",
          "dept_head:cs": "dean01", "role:student_affairs": "xg01"}
SERVICE = {"leave": "student-leave", "travel": "leave-jinan"}
LENGTHS = [timedelta(hours=5), timedelta(days=1), timedelta(days=3), timedelta(days=3, minutes=1),
           timedelta(days=6), timedelta(days=7, minutes=1), timedelta(days=12)]


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), TZ).astimezone(timezone.utc)


def actor(userid: str) -> Actor:
    return deps.directory().get_person(userid).actor()


@pytest.fixture(scope="module")
def rng() -> random.Random:
    return random.Random(2026)


@pytest.fixture
def semester(client: Client, rng: random.Random) -> Iterator[dict[str, int]]:
    """Generate the semester day by day, the clock at each moment, through the hall and the desk:
    filings (some refused as overlaps), decisions, withdrawals, cancellations, returns early, late
    or never."""
    with time_machine.travel(at(FIRST_DAY, 8), tick=False):
        open_campus(client)
        actors = {u: actor(u) for u in {*STUDENTS, *STAFF, *HOLDER.values()}}
    counts = {"filed": 0, "refused": 0, "approved": 0, "rejected": 0, "withdrawn": 0, "cancelled": 0,
              "returned": 0, "travel": 0}
    live: dict[str, tuple[str, str, datetime, datetime, Application]] = {}  # app id -> who, kind, start, end, app
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        with time_machine.travel(at(day, 9), tick=False):
            hall = deps.hall()
            filings = [(s, "leave") for s in rng.sample(STUDENTS, 3)] + \
                      ([(rng.choice(STAFF), "travel")] if rng.random() < 0.6 else [])
            for who, kind in filings:
                if kind == "leave":
                    start = at(day, 8) + timedelta(days=rng.randint(0, 8), hours=rng.choice((0, 2, 10)))
                    end = start + rng.choice(LENGTHS[:3] if who >= "s016" else LENGTHS)
                    form = leave_form(start, end)
                else:
                    first = day + timedelta(days=rng.randint(0, 6))
                    last = first + timedelta(days=rng.randint(0, 9))
                    start, end = at(first, 0), at(last + timedelta(days=1), 0)
                    transport = rng.choice(("train", "plane", "car"))
                    form = travel_form(first, last, transport=transport,
                                       train_or_flight={"train": "G178", "plane": "MU5101"}.get(transport),
                                       destination={"province": rng.choice(("北京市", "上海市", "广东省", "山东省")),
                                                    "city": rng.choice(("北京市", "上海市", "广州市", "青岛市"))})
                try:
                    app, _ = hall.file(actors[who], SERVICE[kind], form)
                except Invalid:
                    counts["refused"] += 1  # overlaps one of their own
                    continue
                counts["filed" if kind == "leave" else "travel"] += 1
                live[app.app_id] = (who, kind, start, end, app)
        now = at(day, 15)
        with time_machine.travel(now, tick=False):
            hall, desk = deps.hall(), deps.absence_desk()
            for app_id, (who, kind, start, end, app) in list(live.items()):
                roll = rng.random()
                if app.status == "pending":
                    if roll < 0.08:
                        app = hall.withdraw_or_cancel(actors[who], app_id, "withdraw")
                    else:
                        decision = "reject" if roll < 0.15 else "approve"
                        app = hall.decide(actors[HOLDER[app.current_authority]], app_id, decision, "")
                        counts["approved"] += app.status == "approved"
                elif app.status == "approved" and now < start and roll < 0.05:
                    app = hall.withdraw_or_cancel(actors[who], app_id, "cancel")
                elif app.status == "approved" and start <= now:
                    if roll < 0.25:  # some back early, some late
                        desk.confirm_return(actors[who], kind, app_id)
                        counts["returned"] += 1
                    if roll < 0.25 or now > end + timedelta(days=20):  # a few never confirm
                        del live[app_id]
                        continue
                if app.status in ("rejected", "withdrawn", "cancelled"):
                    counts[app.status] += 1
                    del live[app_id]
                else:
                    live[app_id] = (who, kind, start, end, app)
    yield counts


def stored_absences() -> list[dict]:
    """Every absence record, read straight from the table (a test may scan; the app never does)."""
    table = boto3.resource("dynamodb").Table(get_settings().table_name("absences"))
    items, kwargs = [], {}
    while True:
        page = table.scan(ConsistentRead=True, **kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def recount(records: list[dict], day: date, today: date, keep=lambda r: True) -> dict[str, bool]:
    """``{app id: overdue}`` of the absences away on ``day``, from the records alone: approved and
    started by that day; until the return day once returned, else until today (overdue after the end day)."""
    away = {}
    for r in records:
        if r["status"] != "approved" or not keep(r):
            continue
        first = datetime.fromisoformat(r["start"]).astimezone(TZ).date()
        end_day = (datetime.fromisoformat(r["end"]) - timedelta(milliseconds=1)).astimezone(TZ).date()
        if r.get("returned_at"):
            last = max(first, datetime.fromisoformat(r["returned_at"]).astimezone(TZ).date())
            if first <= day <= last:
                away[r["app_id"]] = False
        elif first <= day <= max(end_day, today):
            away[r["app_id"]] = day > end_day
    return away


def test_overviews_agree_with_a_recount_over_a_generated_semester(client: Client, semester: dict[str, int]) -> None:
    counts = semester
    assert counts["filed"] > 150 and counts["refused"] > 0 and counts["returned"] > 30 and counts["travel"] > 40
    assert counts["approved"] and counts["rejected"] and counts["withdrawn"] and counts["cancelled"]
    with time_machine.travel(at(TODAY, 10), tick=False):
        records = stored_absences()
        desk = deps.absence_desk()
        # Every record mirrors its application.
        for r in records:
            app = deps.applications().get(r["app_id"])
            assert (r["status"], int(r["app_version"])) == (app.status, app.version), r["app_id"]
        overdue_seen = 0
        scopes = [("xg01", "leave", lambda r: r["person_type"] == "student"),
                  ("fdy01", "leave", lambda r: r.get("class_id") in ("cs2001", "cs2002")),
                  ("dean01", "leave", lambda r: r["department"] == "cs" and r["person_type"] == "student"),
                  ("leader01", "leave", lambda r: r["person_type"] == "student"),
                  ("hr01", "travel", lambda r: r["person_type"] == "staff"),
                  ("dean01", "travel", lambda r: r["department"] == "cs" and r["person_type"] == "staff")]
        for offset in range(-2, DAYS + 12):
            day = FIRST_DAY + timedelta(days=offset)
            # Student affairs and HR every day; the narrower scopes in turn.
            for who, kind, keep in (scopes[0], scopes[4], scopes[offset % 6]):
                rows, _ = desk.away(actor(who), kind, day, day, Filter())
                expected = recount([r for r in records if r["kind"] == kind], day, TODAY, keep)
                assert {r.absence.app_id: r.overdue for r in rows} == expected, (who, kind, day)
                overdue_seen += sum(expected.values())
        assert overdue_seen > 0  # the semester ends with some never back
        # A week's travel overview is the union of its days.
        for week in range(0, DAYS, 7):
            first, last = FIRST_DAY + timedelta(days=week), FIRST_DAY + timedelta(days=week + 6)
            rows, _ = desk.away(actor("hr01"), "travel", first, last, Filter())
            union: set[str] = set()
            for n in range(7):
                union |= set(recount([r for r in records if r["kind"] == "travel"], first + timedelta(days=n), TODAY))
            assert {r.absence.app_id for r in rows} == union, first
    # Through the API, people are counted once each, and a leader gets the figures without names.
    with time_machine.travel(at(TODAY, 10), tick=True):
        tokens = Tokens(client)
        records = stored_absences()
        for offset in (10, 40, 77, DAYS - 1):
            day = FIRST_DAY + timedelta(days=offset)
            expected = recount([r for r in records if r["kind"] == "leave"], day, TODAY)
            people = {r["userid"] for r in records if r["app_id"] in expected}
            status, body = call(client, "GET", f"/leave/overview?date={day.isoformat()}&limit=200", tokens["xg01"])
            assert status == 200, body
            assert body["away"] == len(people)
            assert sum(u["away"] for u in body["by_unit"]) == len(people)
            assert {p["id"] for p in body["people"]} == set(expected)
            status, figures = call(client, "GET", f"/leave/overview?date={day.isoformat()}", tokens["leader01"])
            assert figures["away"] == len(people) and figures["people"] == []
