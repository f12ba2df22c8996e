"""Campus entry over the local stack: visitor -> host -> security -> the (fake) door gateway, revokes on
cancel and expiry, a gateway outage, and the door-event simulator."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import requests

from tests.conftest import PROJECT_DIR
from tests.e2e.test_health_flows import token
from tests.e2e.test_wecom_flows import wait_for
from tests.support.entry import id_number, visitor_form

CAMPUS_TZ = ZoneInfo("Asia/Shanghai")


def door_url(stack) -> str:
    return stack.state["env"]["DOOR_GATEWAY_URL"]


def door_passes(stack) -> dict:
    return requests.get(f"{door_url(stack)}/_passes", timeout=5).json()


def door_log(stack, pass_id: str) -> list[dict]:
    return [entry for entry in requests.get(f"{door_url(stack)}/_log", timeout=5).json()
            if entry["pass_id"] == pass_id]


def approved(stack, form: dict) -> tuple[str, str]:
    answer = requests.post(f"{stack.url}/visitor/entry-applications", json=form, timeout=10)
    assert answer.status_code == 201, answer.text
    app_id, lookup = answer.json()["id"], answer.json()["token"]
    for userid in ("t001", "bw01"):
        decided = requests.post(f"{stack.url}/applications/{app_id}/decisions", json={"decision": "approve"},
                                headers=token(stack, userid), timeout=10)
        assert decided.status_code == 200, decided.text
    return app_id, lookup


def utc_z(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_approved_visitor_is_granted_at_the_door_with_the_exact_window_and_revoked_on_cancel(stack):
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=30)
    app_id, lookup = approved(stack, visitor_form(start, hours=6, id_number=id_number(301)))
    # Then within seconds the door system holds the grant, for exactly the window and gates
    granted = wait_for(lambda: door_passes(stack).get(app_id), timeout=20)
    assert (granted["state"], granted["valid_from"], granted["valid_to"], granted["gates"]) == (
        "granted", utc_z(start), utc_z(start + timedelta(hours=6)), ["east", "south"])
    assert id_number(301) not in str(granted)
    # When the visitor cancels, the door system revokes it
    cancelled = requests.post(f"{stack.url}/visitor/entry-applications/{app_id}/cancel",
                              json={"token": lookup, "reason": "改期"}, timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait_for(lambda: door_passes(stack)[app_id]["state"] == "revoked", timeout=20)
    assert [(e["op"], e["version"]) for e in door_log(stack, app_id)] == [("grant", 1), ("revoke", 2)]
    # And neither the ID number, the mobile number nor the lookup token is in the stack's logs
    log = stack.log()
    assert id_number(301) not in log and "13912345678" not in log and lookup not in log


def test_a_pass_is_revoked_when_its_window_has_passed_on_a_moved_clock(stack):
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=20)
    app_id, _ = approved(stack, visitor_form(start, hours=2, id_number=id_number(302)))
    wait_for(lambda: (door_passes(stack).get(app_id) or {}).get("state") == "granted", timeout=20)
    # When the expiry job runs at a moment after the window (make fire JOB=expire_entry_passes AT=...)
    after = utc_z(start + timedelta(hours=2, minutes=1))
    subprocess.run([sys.executable, "-m", "infra.local", "fire", "expire_entry_passes", "--state-file",
                    str(stack.state_file), "--at", after], cwd=PROJECT_DIR, check=True, timeout=120,
                   capture_output=True)
    # Then the door system revokes it
    wait_for(lambda: door_passes(stack)[app_id]["state"] == "revoked", timeout=20)


def test_while_the_gateway_is_down_the_pass_stays_pending_then_syncs_once(stack):
    requests.post(f"{door_url(stack)}/_control", json={"down": True}, timeout=5).raise_for_status()
    try:
        start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=30)
        app_id, lookup = approved(stack, visitor_form(start, id_number=id_number(303)))
        security = token(stack, "bw01")

        def sync_status() -> str:
            return requests.get(f"{stack.url}/entry/passes/{app_id}", headers=security, timeout=10).json()[
                "sync_status"]

        wait_for(lambda: door_log(stack, app_id) == [] and sync_status() == "pending", timeout=10)
        time.sleep(4)  # a few tries fail meanwhile (the local stage backs off 2 s, 4 s, 8 s...)
        assert sync_status() == "pending" and app_id not in door_passes(stack)
    finally:
        requests.post(f"{door_url(stack)}/_control", json={"down": False}, timeout=5).raise_for_status()
    # When it is back, the next try syncs it: one grant, nothing lost
    wait_for(lambda: sync_status() == "synced", timeout=40)
    assert [(e["op"], e["version"]) for e in door_log(stack, app_id)] == [("grant", 1)]
    seen = requests.get(f"{stack.url}/visitor/entry-applications/{app_id}", params={"token": lookup}, timeout=10)
    assert seen.json()["pass_sync"] == "synced"


def test_the_door_event_simulator_feeds_tracing(stack):
    done = subprocess.run([sys.executable, "-m", "infra.local", "door-events", "--api-url", stack.url, "--count",
                           "10", "--people", "s005,s006", "--seed", "7"], cwd=PROJECT_DIR, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    security = token(stack, "bw01")
    now = datetime.now(timezone.utc)
    period = {"from": (now - timedelta(hours=2)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}
    latest = {}
    total = 0
    campus_days = set()
    for userid in ("s005", "s006"):
        items = requests.get(f"{stack.url}/trace/people/{userid}/passages", params=period, headers=security,
                             timeout=10).json()["items"]
        total += len(items)
        campus_days |= {datetime.fromisoformat(i["at"].replace("Z", "+00:00")).astimezone(CAMPUS_TZ).date()
                        for i in items}
        if items:
            latest[userid] = items[-1]["direction"]
    # Then every simulated passage of the two is stored, and who is inside follows their latest passage
    assert total == 10
    inside = requests.get(f"{stack.url}/trace/on-campus", headers=security, params={"limit": 200},
                          timeout=10).json()["items"]
    assert {p["person"] for p in inside} & {"s005", "s006"} == {u for u, d in latest.items() if d == "in"}
    # And the day's statistics count them (the campus days they fall on: the run may straddle midnight)
    counted = sum(requests.get(f"{stack.url}/door/stats", params={"date": day.isoformat()}, headers=security,
                               timeout=10).json()["total"] for day in campus_days)
    assert counted >= total
