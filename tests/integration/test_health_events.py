"""The sample payloads in events/ for health reporting, run through the app as Lambda delivers them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import time_machine
from chalice.test import Client

from chalicelib.db.health import HealthCaseModel
from tests.conftest import PROJECT_DIR
from tests.support.hall import open_campus, queued_notifications
from tests.support.health import FEVER, consent, file_report

MORNING = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)


def sample(name: str) -> dict:
    return json.loads((PROJECT_DIR / "events" / name).read_text())


def test_the_sample_alert_opens_a_case(client: Client) -> None:
    with time_machine.travel(MORNING, tick=True):
        tokens = open_campus(client)
        consent(client, tokens["s002"])
        file_report(client, tokens["s002"], FEVER)  # the report the sample names (s002, 2026-11-30, v1)
        answer = client.lambda_.invoke("raise_health_alert", sample("sqs_health_alert.json")).payload
        told = {u for p in queued_notifications() for u in p["recipients"]}  # (read before SQS's retention ends)
    assert answer == {"batchItemFailures": []}
    [case] = list(HealthCaseModel.by_state.query("open"))
    assert case.userid == "s002" and {"doc01", "xg01", "fdy01"} <= told


def test_the_sample_schedules_run(client: Client) -> None:
    with time_machine.travel(MORNING, tick=True):
        open_campus(client)
    for name, function in (("scheduled_send_report_reminders.json", "send_report_reminders"),
                           ("scheduled_send_daily_health_summary.json", "send_daily_health_summary"),
                           ("scheduled_resend_health_alerts.json", "resend_health_alerts")):
        event = sample(name)
        fired = datetime.fromisoformat(event["time"].replace("Z", "+00:00")) + timedelta(minutes=5)
        with time_machine.travel(fired, tick=False):
            result = client.lambda_.invoke(function, event).payload
        assert set(result) == {"slots", "reminded", "digests", "summaries", "alerts_requeued", "recounted"}
        if function == "send_report_reminders":
            assert result["slots"] == ["reminder@14:00"] and result["reminded"] == 34
        if function == "send_daily_health_summary":
            assert result["slots"] == ["summary@20:00"] and result["summaries"] == 2
