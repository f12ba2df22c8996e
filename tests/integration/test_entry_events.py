"""The sample payloads in events/ for campus entry and the door system, run as Lambda and the door
system deliver them."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

import responses
import time_machine
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.db.door import DoorPassModel, PassageModel
from chalicelib.domain.door_signature import sign
from tests.conftest import PROJECT_DIR
from tests.support.entry import GATEWAY_URL, WEBHOOK_SECRET, id_number


def sample(name: str) -> bytes:
    return (PROJECT_DIR / "events" / name).read_bytes()


def test_the_sample_door_sync_pushes_its_pass(client: Client) -> None:
    # Given the pass the sample names
    deps.door_passes().grant(pass_id="20261130T090000-0a1b2c3d4e5f", person="idc-x", name="王访客", kind="visitor",
                             host="t001", credential_kind="id_card", credential_number=id_number(),
                             gates=("east",), valid_from=datetime(2026, 11, 30, 2, tzinfo=timezone.utc),
                             valid_to=datetime(2026, 11, 30, 10, tzinfo=timezone.utc))
    with responses.RequestsMock() as gateway:
        gateway.add(responses.POST, re.compile(re.escape(GATEWAY_URL) + "/passes/.*"), json={})
        answer = client.lambda_.invoke("sync_door_pass", json.loads(sample("sqs_door_sync_grant.json"))).payload
    assert answer == {"batchItemFailures": []}
    assert DoorPassModel.get("20261130T090000-0a1b2c3d4e5f").sync_status == "synced"


def test_the_sample_expiry_run_revokes_what_ended_before_it(client: Client) -> None:
    deps.door_passes().grant(pass_id="20261130T090000-0a1b2c3d4e5f", person="idc-x", name="王访客", kind="visitor",
                             host="t001", credential_kind="id_card", credential_number=id_number(),
                             gates=("east",), valid_from=datetime(2026, 11, 30, 2, tzinfo=timezone.utc),
                             valid_to=datetime(2026, 11, 30, 10, tzinfo=timezone.utc))
    answer = client.lambda_.invoke("expire_entry_passes",
                                   json.loads(sample("scheduled_expire_entry_passes.json"))).payload
    assert answer["revoked"] == 1


@time_machine.travel(datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc), tick=True)
def test_the_sample_door_events_are_stored(client: Client) -> None:
    raw = sample("door_event_in.json")
    response = client.http.post("/webhooks/door/events", body=raw, headers={
        "Content-Type": "application/json", "X-Door-Signature": sign(WEBHOOK_SECRET, raw, int(time.time()))})
    assert response.status_code == 200 and json.loads(response.body) == {"stored": 3, "duplicates": 0}
    kinds = sorted(m.person_kind for m in PassageModel.scan())
    assert kinds == ["unknown", "unknown", "unknown"]  # (the directory is empty in this test)
