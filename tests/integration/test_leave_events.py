"""The sample payload in events/ for the overdue-return job, run as EventBridge delivers it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timezone

import pytest
import time_machine
from chalice.test import Client

from tests.conftest import PROJECT_DIR
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.leave import approve_all, file_leave, file_travel, leave_form, travel_form

MONDAY = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)  # 09:00 on campus
SAMPLE = json.loads((PROJECT_DIR / "events" / "scheduled_remind_overdue_returns.json").read_text())


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MONDAY, tick=True):
        yield open_campus(client)


def test_the_sample_run_reminds_whoever_is_overdue_at_its_time(client: Client, tokens: Tokens) -> None:
    # A leave that ended Wednesday 09:00 campus time and a trip back on Tuesday: both over by the
    # sample's 10:30; a leave ending Thursday is not.
    tuesday = datetime(2026, 12, 8, 1, 0, tzinfo=timezone.utc)
    wednesday = datetime(2026, 12, 9, 1, 0, tzinfo=timezone.utc)
    _, late = file_leave(client, tokens["s001"], leave_form(tuesday, wednesday))
    approve_all(client, tokens, late)
    _, later = file_leave(client, tokens["s002"], leave_form(tuesday, datetime(2026, 12, 10, 1, tzinfo=timezone.utc)))
    approve_all(client, tokens, later)
    assert file_travel(client, tokens["t001"], travel_form(date(2026, 12, 7), date(2026, 12, 8)))[0] == 201
    queued_notifications()
    assert SAMPLE["time"] == "2026-12-09T02:30:00Z"
    report = client.lambda_.invoke("remind_overdue_returns", SAMPLE).payload
    assert report["reminded"] == 2, report
    told = sorted(tuple(n["recipients"]) for n in queued_notifications())
    assert told == [("dean01",), ("fdy01",), ("s001",), ("t001",)]
    assert client.lambda_.invoke("remind_overdue_returns", SAMPLE).payload["reminded"] == 0  # redelivered: no repeat
