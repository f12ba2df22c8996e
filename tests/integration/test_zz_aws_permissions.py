"""The deployment's IAM policy grants every AWS call the application made in this suite, and the
application never scans a table. (Named to run after the other integration tests, whose calls it
checks too; it makes a few calls of its own so that it checks something when run alone.)"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import time_machine
from chalice.test import Client

from infra.aws.template import MERGE_FILE
from tests.support import aws_calls
from tests.support.hall import open_campus
from tests.support.health import NORMAL, consent, file_report
from tests.support.leave import approve_all, file_leave, leave_form

MORNING = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)


def granted() -> set[str]:
    resources = json.loads(MERGE_FILE.read_text(encoding="utf-8"))["Resources"]
    statements = resources["ResourcePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    return {action for s in statements for action in s["Action"]}


def test_every_call_the_application_made_is_granted_and_none_is_a_scan(client: Client) -> None:
    with time_machine.travel(MORNING, tick=True):
        tokens = open_campus(client)
        _, app = file_leave(client, tokens["s001"], leave_form(MORNING + timedelta(days=1), MORNING + timedelta(days=2)))
        approve_all(client, tokens, app)
        consent(client, tokens["t001"])
        file_report(client, tokens["t001"], NORMAL)
        assert client.http.get("/resources/cnki/go", headers={"Authorization": f"Bearer {tokens['s001']}"}
                               ).status_code == 302
    made = aws_calls.iam_actions(aws_calls.APPLICATION_OPERATIONS)
    assert {"dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem", "sqs:SendMessage"} <= made
    assert made - granted() == set(), "calls the deployment's policy does not grant"
    assert not {op for op in aws_calls.APPLICATION_OPERATIONS if op[1] == "Scan"}, "a Scan in the application"
