"""Daily health reports: consent, filing, corrections, the cutoff, validation, and what is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from threading import Barrier

import boto3
import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.db.health import HealthDayModel, HealthReportModel, HealthRepository
from chalicelib.domain.health import Unit
from chalicelib.resources import HEALTH_ALERTS
from tests.support.aws_calls import recorded_aws_calls
from tests.support.hall import Tokens, open_campus
from tests.support.health import NORMAL, consent, file_report, queued_alerts, scheduled_event
from tests.support.identity import call, login

# 09:00 on a Monday in Shanghai.
MORNING = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)
DAY = "2026-11-30"


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


def test_filing_needs_the_current_consent_first(client: Client, tokens: Tokens) -> None:
    # Given a student who has not consented
    status, body = call(client, "POST", "/health/reports", tokens["s001"], NORMAL)
    # Then filing is refused, and nothing is stored
    assert (status, body["code"]) == (403, "consent_required")
    assert HealthReportModel.count("s001") == 0

    # When they read the text and consent to an old version
    status, text = call(client, "GET", "/health/consent", tokens["s001"])
    assert status == 200 and text["given"] is False and text["text"]
    status, _ = call(client, "POST", "/health/consent", tokens["s001"], {"version": "1999-01", "agree": True})
    assert status == 409
    # Then to the current one
    status, given = call(client, "POST", "/health/consent", tokens["s001"], {"version": text["version"], "agree": True})
    assert status == 200 and given["given"] is True and given["given_version"] == text["version"]
    status, _ = call(client, "POST", "/health/reports", tokens["s001"], NORMAL)
    assert status == 201

    # And withdrawing stops further filing
    assert call(client, "DELETE", "/health/consent", tokens["s001"])[0] == 204
    status, body = call(client, "POST", "/health/reports", tokens["s001"], NORMAL)
    assert (status, body["code"]) == (403, "consent_required")


def test_consent_must_be_an_explicit_agreement(client: Client, tokens: Tokens) -> None:
    status, body = call(client, "POST", "/health/consent", tokens["s001"], {"version": "2026-09", "agree": False})
    assert status == 422 and "agree" in body["fields"]


def test_one_report_a_day_corrections_keep_history_and_retries_change_nothing(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s001"])
    # When the student files
    status, first = file_report(client, tokens["s001"], NORMAL)
    assert status == 201
    assert first["outcome"] == "created" and first["version"] == 1 and first["abnormal"] is False
    assert first["date"] == DAY and first["reasons"] == [] and "pledge" in first["answers"]
    # Then today says done
    status, today = call(client, "GET", "/health/reports/today", tokens["s001"])
    assert today["filed"] is True and today["open"] is True and today["report"]["version"] == 1

    # When the same answers arrive again (a retry), nothing changes
    status, again = file_report(client, tokens["s001"], NORMAL)
    assert (status, again["outcome"], again["version"]) == (200, "unchanged", 1)

    # When they correct the report
    corrected = {**NORMAL, "whereabouts": "jinan", "remarks": "回家"}
    status, second = file_report(client, tokens["s001"], corrected)
    assert (status, second["outcome"], second["version"], second["earlier_versions"]) == (200, "corrected", 2, 1)
    assert second["filed_at"] == first["filed_at"] and second["answers"]["whereabouts"] == "jinan"

    # Then one item holds the day, with the first version sealed in its history
    items = list(HealthReportModel.query("s001"))
    assert [(i.day, int(i.version), len(i.history)) for i in items] == [(DAY, 2, 1)]
    assert "36.5" not in items[0].sealed and "jinan" not in items[0].sealed  # sealed, not readable
    # And the counters count the student once
    row = HealthDayModel.get(DAY, "cs#cs2001#student")
    assert (int(row.reported), row.reporters, int(row.abnormal)) == (1, {"s001"}, 0)


def test_after_the_cutoff_the_day_is_closed(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s002"])
    with time_machine.travel(datetime(2026, 11, 30, 12, 0, 1, tzinfo=timezone.utc), tick=False):  # 20:00:01
        token = login(client, "s002")
        status, body = call(client, "POST", "/health/reports", token, NORMAL)
        assert status == 409 and "20:00" in body["message"]
        assert HealthReportModel.count("s002") == 0
        status, today = call(client, "GET", "/health/reports/today", token)
        assert today["open"] is False and today["filed"] is False


@pytest.mark.parametrize(("change", "field"), [
    ({"temperature": "abc"}, "temperature"),
    ({"temperature": 50}, "temperature"),
    ({"temperature": 36.55}, "temperature"),
    ({"pledge": None}, "pledge"),
    ({"pledge": False}, "pledge"),
    ({"symptoms": ["sneezing"]}, "symptoms.0"),
    ({"symptoms": ["none", "cough"]}, "symptoms"),
    ({"symptoms": ["other"]}, "symptom_note"),
    ({"whereabouts": "other_city"}, "current_city"),
    ({"quarantined": True}, "quarantine_place"),
    ({"health_code": "blue"}, "health_code"),
    ({"close_contact": "no"}, "close_contact"),
    ({"status": "approved"}, "status"),
])
def test_bad_answers_are_400_with_the_field_and_nothing_is_written(client: Client, tokens: Tokens, change: dict,
                                                                   field: str) -> None:
    consent(client, tokens["s003"])
    answers = {k: v for k, v in {**NORMAL, **change}.items() if v is not None}
    status, body = call(client, "POST", "/health/reports", tokens["s003"], answers)
    assert status == 400, body
    assert body["code"] == "invalid_input" and field in body["fields"], body
    assert "abc" not in json.dumps(body)  # values are not echoed
    assert HealthReportModel.count("s003") == 0


def test_a_body_over_16_kb_is_refused_before_parsing(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s003"])
    status, body = call(client, "POST", "/health/reports", tokens["s003"], {**NORMAL, "remarks": "x" * 17000})
    assert status == 400 and "body" in body["fields"]
    assert HealthReportModel.count("s003") == 0


def test_an_abnormal_report_says_why_and_queues_one_alert(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s004"])
    status, body = file_report(client, tokens["s004"], {**NORMAL, "temperature": 37.3, "health_code": "yellow"})
    assert status == 201 and body["abnormal"] is True
    assert [r["code"] for r in body["reasons"]] == ["temperature", "health_code"]
    assert queued_alerts() == [{"userid": "s004", "day": DAY, "version": 1}]
    # the alert is marked queued on the report
    assert HealthReportModel.get("s004", DAY).alert_pending is None
    # a retry with the same answers does not queue it again
    file_report(client, tokens["s004"], {**NORMAL, "temperature": 37.3, "health_code": "yellow"})
    assert queued_alerts() == []
    row = HealthDayModel.get(DAY, "cs#cs2001#student")
    assert (int(row.abnormal), row.abnormal_ids) == (1, {"s004"})

    # When corrected to normal, the abnormal count follows
    file_report(client, tokens["s004"], NORMAL)
    row = HealthDayModel.get(DAY, "cs#cs2001#student")
    assert (int(row.reported), int(row.abnormal)) == (1, 0)


def test_just_below_the_threshold_is_normal(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s005"])
    status, body = file_report(client, tokens["s005"], {**NORMAL, "temperature": 37.2})
    assert body["abnormal"] is False and queued_alerts() == []


def test_a_normal_filing_costs_three_aws_calls_and_no_scan(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s006"])
    with recorded_aws_calls() as calls:
        status, _ = file_report(client, tokens["s006"], NORMAL)
    assert status == 201
    assert [op for _, op in calls] == ["GetItem", "PutItem", "UpdateItem"], calls


def test_twenty_simultaneous_filings_make_one_report(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s007"])
    token = tokens["s007"]
    barrier = Barrier(20)

    def submit(index: int) -> int:
        barrier.wait()
        return file_report(client, token, {**NORMAL, "remarks": f"try {index % 2}"})[0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(submit, range(20)))
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}
    item = HealthReportModel.get("s007", DAY)
    assert int(item.version) == len(item.history) + 1
    row = HealthDayModel.get(DAY, "cs#cs2001#student")
    assert int(row.reported) == 1 and row.reporters == {"s007"}


def test_prefill_and_my_list(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s008"])
    yesterday = MORNING - timedelta(days=1)
    with time_machine.travel(yesterday, tick=False):
        status, _ = file_report(client, login(client, "s008"), {**NORMAL, "whereabouts": "jinan"})
        assert status == 201
    status, prefill = call(client, "GET", "/health/reports/prefill", tokens["s008"])
    assert status == 200 and prefill["from_date"] == "2026-11-29"
    assert prefill["answers"]["whereabouts"] == "jinan" and "pledge" not in prefill["answers"]
    file_report(client, tokens["s008"], NORMAL)
    status, mine = call(client, "GET", "/health/reports?from=2026-11-01&to=2026-11-30", tokens["s008"])
    assert [r["date"] for r in mine["items"]] == ["2026-11-30", "2026-11-29"]
    status, body = call(client, "GET", "/health/reports?from=2026-01-01&to=2026-11-30", tokens["s008"])
    assert status == 422 and "to" in body["fields"]


def test_expired_reports_are_not_read_even_before_ttl_deletes_them(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s009"])
    file_report(client, tokens["s009"], NORMAL)
    item = HealthReportModel.get("s009", DAY)
    item.update(actions=[HealthReportModel.expires_at.set(MORNING - timedelta(seconds=1))])
    status, today = call(client, "GET", "/health/reports/today", tokens["s009"])
    assert today["filed"] is False
    status, mine = call(client, "GET", "/health/reports?from=2026-11-01&to=2026-11-30", tokens["s009"])
    assert mine["items"] == []


def test_reports_expire_after_the_retention_period(client: Client, tokens: Tokens) -> None:
    consent(client, tokens["s010"])
    file_report(client, tokens["s010"], NORMAL)
    item = HealthReportModel.get("s010", DAY)
    assert item.expires_at == datetime(2026, 11, 30, tzinfo=timezone.utc) + timedelta(days=181)
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=HealthReportModel.Meta.table_name)
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_consent_survives_a_directory_import_and_an_admin_change(client: Client, tokens: Tokens) -> None:
    # Given a student who consented
    consent(client, tokens["s010"])
    # When the IT centre re-imports them (a new name) and changes their class
    row = {"userid": "s010", "name": "新名字", "type": "student", "department": "cs", "class_id": "cs2001"}
    status, report = call(client, "POST", "/admin/directory/import", tokens["admin"], {"rows": [row]})
    assert status == 200 and report["updated"] == 1, report
    status, _ = call(client, "PATCH", "/admin/people/s010", tokens["admin"], {"class_id": "cs2002"})
    assert status == 200
    # Then their consent is still on record (a new session files without asking again)
    status, body = file_report(client, login(client, "s010"), NORMAL)
    assert status == 201, body
    assert HealthDayModel.get(DAY, "cs#cs2002#student").reporters == {"s010"}


def test_a_late_count_of_an_older_version_changes_nothing() -> None:
    # Given the counters holding version 2 of a person's report, abnormal
    store = HealthRepository()
    unit = Unit("cs", "cs2001", "student")
    expires = MORNING + timedelta(days=181)
    store.count(DAY, unit, "s001", True, 2, expires)
    # When a slow request counts version 1 (normal) afterwards, and version 2 again (a retry)
    store.count(DAY, unit, "s001", False, 1, expires)
    store.count(DAY, unit, "s001", True, 2, expires)
    # Then the counters still say: reported once, abnormal
    row = HealthDayModel.get(DAY, unit.key)
    assert (int(row.reported), int(row.abnormal), row.abnormal_ids) == (1, 1, {"s001"})
    # And version 3 (normal) moves it back
    store.count(DAY, unit, "s001", False, 3, expires)
    row = HealthDayModel.get(DAY, unit.key)
    assert (int(row.reported), int(row.abnormal), row.abnormal_ids or set()) == (1, 0, set())


def test_a_filing_whose_alert_cannot_be_queued_still_succeeds_and_the_sweep_sends_it(
        client: Client, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    consent(client, tokens["s006"])

    def queue_down(*args: object) -> None:
        raise ConnectionError("queue unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(deps, "queue_health_alert", queue_down)
        status, body = file_report(client, tokens["s006"], {**NORMAL, "temperature": 38.0})
    assert status == 201 and body["abnormal"] is True
    assert HealthReportModel.get("s006", DAY).alert_pending == "pending"
    with time_machine.travel(MORNING + timedelta(minutes=10), tick=False):
        result = client.lambda_.invoke("resend_health_alerts", scheduled_event("resend_health_alerts")).payload
    assert result["alerts_requeued"] == 1 and queued_alerts() == [{"userid": "s006", "day": DAY, "version": 1}]


def test_the_alerts_queue_has_its_dead_letter_queue(client: Client, tokens: Tokens) -> None:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=HEALTH_ALERTS.name)["QueueUrl"]
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])[
        "Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":campus-health-alerts-dlq") and int(redrive["maxReceiveCount"]) == 5
