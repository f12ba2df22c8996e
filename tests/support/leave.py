"""Helpers for the leave and travel tests: forms, filing, deciding, the overdue job."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from chalice.test import Client

from tests.support.identity import call

CAMPUS = "+08:00"


def leave_form(start: datetime, end: datetime, **changes: Any) -> dict[str, Any]:
    """A student-leave form (times given in UTC, sent with the campus offset as the H5 does)."""
    form = {"kind": "personal", "start": _campus(start), "end": _campus(end),
            "destination": {"province": "山东省", "city": "青岛市"}, "leaves_jinan": True, "transport": "train",
            "emergency_contact": "13800138000", "reason": "家中有事"}
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def travel_form(departure: date, back: date, **changes: Any) -> dict[str, Any]:
    form = {"destination": {"province": "北京市", "city": "北京市"}, "transport": "train", "train_or_flight": "G178",
            "route": "济南西-北京南", "departure_date": departure.isoformat(), "return_date": back.isoformat(),
            "reason": "学术会议", "companions": ""}
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def _campus(moment: datetime) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo("Asia/Shanghai")).isoformat()


def file_leave(client: Client, token: str, form: dict[str, Any]) -> tuple[int, Any]:
    return call(client, "POST", "/services/student-leave/applications", token, {"data": form},
                {"Idempotency-Key": uuid.uuid4().hex})


def file_travel(client: Client, token: str, form: dict[str, Any]) -> tuple[int, Any]:
    return call(client, "POST", "/services/leave-jinan/applications", token, {"data": form},
                {"Idempotency-Key": uuid.uuid4().hex})


def decide(client: Client, token: str, app_id: str, decision: str = "approve") -> tuple[int, Any]:
    return call(client, "POST", f"/applications/{app_id}/decisions", token, {"decision": decision})


def approve_all(client: Client, tokens: Any, app: dict[str, Any]) -> dict[str, Any]:
    """Approve every step of a leave with whoever holds it in the demo cast."""
    holder = {"counselor:cs2001": "fdy01", "counselor:cs2002": "fdy01", "counselor:fl2001": "fdy02",
              "dept_head:cs": "dean01", "role:student_affairs": "xg01"}
    body = app
    for step in app["chain"]:
        status, body = decide(client, tokens[holder[step["authority"]]], app["id"])
        assert status == 200, body
    assert body["status"] == "approved", body
    return body


def scheduled(function: str, at: datetime) -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/campus-platform-dev-{function}"],
            "detail": {}}
