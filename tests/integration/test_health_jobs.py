"""The scheduled jobs: reminders to those missing, counselors' lists, the evening summary."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from chalice.test import Client

from chalicelib.db.directory import DirectoryRepository, PersonModel
from chalicelib.db.health import ROSTER_ROW, HealthDayModel
from chalicelib.domain.notifications import MAX_TOUSER
from infra.local.demo import generate_population, load_demo_campus
from tests.support.aws_calls import recorded_aws_calls, recorded_table_calls
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.identity import call
from tests.support.health import FEVER, NORMAL, consent, file_report, scheduled_event

MORNING = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
DAY = "2026-11-30"
CAST = {"admin", "hr01", "doc01", "xg01", "bw01", "hq01", "xl01", "leader01", "dean01", "fdy01", "fdy02", "t001",
        "t002", "w001", *(f"s{n:03d}" for n in range(1, 21))}


def at_campus_time(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 30, 0, minute, tzinfo=timezone.utc) + timedelta(hours=hour - 8)


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        tokens = open_campus(client)
        for userid, answers in (("s001", NORMAL), ("s002", FEVER), ("t001", NORMAL)):
            consent(client, tokens[userid])
            assert file_report(client, tokens[userid], answers)[0] == 201
        queued_notifications()
        yield tokens


def run(client: Client, job: str, when: datetime) -> dict:
    """Fire a job at ``when`` (tests read its messages at minutes where mass sends are not held
    back from the :00/:30 marks)."""
    with time_machine.travel(when, tick=False):
        return client.lambda_.invoke(job, scheduled_event(job)).payload


def test_at_14_00_only_the_people_missing_are_reminded_once_without_reading_reports(client: Client,
                                                                                  tokens: Tokens) -> None:
    # Given a student who has left the university
    PersonModel("s020").update(actions=[PersonModel.status.set("left")])
    # When the job fires at 14:00
    with recorded_table_calls() as calls:
        result = run(client, "send_report_reminders", at_campus_time(14, 5))
    # Then everyone active who has not filed gets one reminder, and nobody else
    parts = queued_notifications()
    reminded = {u for p in parts for u in p["recipients"]}
    assert reminded == CAST - {"s001", "s002", "t001", "s020"}
    assert result["reminded"] == len(reminded) and result["slots"] == ["reminder@14:00"]
    assert {p["key"] for p in parts} == {f"health-reminder:{DAY}:1400"}
    # without a Scan, and without touching the reports table
    assert not [c for c in calls if c[0] == "Scan"]
    assert not [c for c in calls if c[1].endswith("health_reports")]
    # And a second run in the same slot sends nothing again
    assert run(client, "send_report_reminders", at_campus_time(14, 10))["reminded"] == 0
    assert queued_notifications() == []


@pytest.mark.parametrize(("hour", "minute"), [(13, 59), (14, 50), (11, 0)])
def test_outside_a_slot_nobody_is_reminded(client: Client, tokens: Tokens, hour: int, minute: int) -> None:
    assert run(client, "send_report_reminders", at_campus_time(hour, minute))["reminded"] == 0
    assert queued_notifications() == []


def test_the_opening_notice_and_the_reminder_are_separate_slots(client: Client, tokens: Tokens) -> None:
    first = run(client, "send_report_reminders", at_campus_time(8, 5))
    second = run(client, "send_report_reminders", at_campus_time(14, 5))
    assert first["slots"] == ["reminder@08:00"] and second["slots"] == ["reminder@14:00"]
    assert {p["key"] for p in queued_notifications()} == {f"health-reminder:{DAY}:0800", f"health-reminder:{DAY}:1400"}


def test_the_day_opens_at_midnight_with_its_expected_counts_and_no_message(client: Client) -> None:
    # Given the cast, and nobody has looked at the day yet
    with time_machine.travel(datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc), tick=True):  # 23:00 the day before
        open_campus(client)
    queued_notifications()
    # When the schedule fires just after midnight, twice
    first = run(client, "send_report_reminders", at_campus_time(0, 3))
    second = run(client, "send_report_reminders", at_campus_time(0, 13))
    # Then the first run records the expected count of every unit, once, and messages nobody
    assert first == {**first, "slots": ["open@00:00"], "reminded": 0, "digests": 0}
    assert second["slots"] == [] and queued_notifications() == []
    rows = {r.unit: int(r.expected or 0) for r in HealthDayModel.query(DAY)}
    assert rows.pop(ROSTER_ROW, None) is not None  # the day is marked taken
    assert sum(rows.values()) == len(CAST) and len(rows) > 1


def test_a_dashboard_before_the_day_opens_counts_live_and_writes_nothing(client: Client, tokens: Tokens) -> None:
    # Given the day's jobs have not run (the fixture filed three reports at 09:00)
    before = {(r.unit, r.expected) for r in HealthDayModel.query(DAY)}
    # When the hospital opens the campus-wide overview
    with time_machine.travel(MORNING, tick=True), recorded_table_calls() as calls:
        status, body = call(client, "GET", f"/health/overview?date={DAY}", tokens["doc01"])
    # Then the figures count everyone expected, from the directory, and nothing was written
    assert status == 200, body
    assert (body["total"]["expected"], body["total"]["reported"]) == (len(CAST), 3)
    assert not [c for c in calls if c[0] in ("PutItem", "UpdateItem", "BatchWriteItem", "TransactWriteItems")]
    assert {(r.unit, r.expected) for r in HealthDayModel.query(DAY)} == before


def test_reminder_times_are_settings(client: Client, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTH_REMINDER_TIMES", "09:30,17:45")
    assert run(client, "send_report_reminders", at_campus_time(14))["slots"] == []
    assert run(client, "send_report_reminders", at_campus_time(9, 31))["slots"] == ["reminder@09:30"]
    assert run(client, "send_report_reminders", at_campus_time(17, 50))["slots"] == ["reminder@17:45"]


def test_at_16_00_each_counselor_gets_their_students_still_missing(client: Client, tokens: Tokens) -> None:
    with recorded_aws_calls() as calls:
        result = run(client, "send_report_reminders", at_campus_time(16, 5))
    assert result["digests"] == 3
    # The classes' lists go to the queue in one batched send, not one call per class
    assert [op for service, op in calls if service == "sqs" and op.startswith("Send")] == ["SendMessageBatch"]
    parts = {p["key"]: p for p in queued_notifications()}
    cs2001 = parts[f"health-missing:{DAY}:cs2001"]
    assert cs2001["recipients"] == ["fdy01"]
    assert "共8人" in cs2001["body"]  # s003-s010
    assert parts[f"health-missing:{DAY}:fl2001"]["recipients"] == ["fdy02"]
    assert all(p["key"].startswith("health-missing:") for p in parts.values())


def test_at_20_00_leaders_and_heads_get_figures_and_no_individual(client: Client, tokens: Tokens) -> None:
    result = run(client, "send_daily_health_summary", at_campus_time(20, 5))
    parts = {p["key"]: p for p in queued_notifications()}
    leader = parts[f"health-summary:{DAY}"]
    assert leader["recipients"] == ["leader01"]
    assert "应报34人，已报3人" in leader["body"] and "异常1人" in leader["body"]
    head = parts[f"health-summary:{DAY}:cs"]
    assert head["recipients"] == ["dean01"] and "cs2001" in head["body"]
    for part in parts.values():
        assert "s002" not in part["body"] and "38.1" not in part["body"]
    assert result["summaries"] == 2
    assert run(client, "send_daily_health_summary", at_campus_time(20, 12))["summaries"] == 0


def test_reminders_go_out_in_parts_of_at_most_1000(client: Client) -> None:
    with time_machine.travel(MORNING, tick=True):
        open_campus(client)
        load_demo_campus(DirectoryRepository(), size=2100)
    run(client, "send_report_reminders", at_campus_time(14, 5))
    with time_machine.travel(at_campus_time(14, 6), tick=True):  # (SQS drops messages older than its retention)
        parts = queued_notifications()
    people = [u for p in parts for u in p["recipients"]]
    assert len(parts) == 3 and max(len(p["recipients"]) for p in parts) <= MAX_TOUSER
    assert len(people) == len(set(people)) == len(CAST) + len(generate_population(2100)[0])


def test_the_evening_job_repairs_a_count_lost_between_a_report_and_its_count(client: Client, tokens: Tokens) -> None:
    # Given s002's count lost (the function died after storing the report)
    unit_row = HealthDayModel.get(DAY, "cs#cs2001#student")
    unit_row.delete()
    # When the summary runs
    result = run(client, "send_daily_health_summary", at_campus_time(20, 5))
    # Then the counters agree with the stored reports again
    assert result["recounted"] == 2  # s001 and s002 shared the row
    row = HealthDayModel.get(DAY, "cs#cs2001#student")
    assert (int(row.reported), int(row.abnormal), row.reporters) == (2, 1, {"s001", "s002"})
    leader = {p["key"]: p for p in queued_notifications()}[f"health-summary:{DAY}"]
    assert "应报34人，已报3人" in leader["body"] and "异常1人" in leader["body"]
