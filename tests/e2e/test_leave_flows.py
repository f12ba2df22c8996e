"""Leave over the local stack: filed and approved over HTTP, overdue on a moved clock (make fire
JOB=remind_overdue_returns AT=...), the reminders through the queue to WeCom, then the return."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import requests

from tests.conftest import PROJECT_DIR
from tests.e2e.test_entry_flows import utc_z
from tests.e2e.test_health_flows import token
from tests.e2e.test_wecom_flows import fake_wecom_url, wait_for
from tests.support.leave import leave_form


CAMPUS = ZoneInfo("Asia/Shanghai")


def day_time_end(start: datetime) -> datetime:
    """10:00 on campus, 12 to 36 hours after ``start``: the job's runs at the end + 5 and + 35
    minutes then fall outside the reminders' quiet hours (22:00-08:00), whenever the suite runs."""
    earliest = start.astimezone(CAMPUS) + timedelta(hours=12)
    end = earliest.replace(hour=10, minute=0, second=0)
    return (end if end >= earliest else end + timedelta(days=1)).astimezone(timezone.utc)


def test_an_overdue_leave_reminds_the_student_and_counselor_once_then_the_return_lands(stack):
    student, counselor = token(stack, "s013"), token(stack, "fdy01")
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)  # started (within the grace)
    end = day_time_end(start)
    answer = requests.post(f"{stack.url}/services/student-leave/applications",
                           json={"data": leave_form(start, end)}, headers=student, timeout=10)
    assert answer.status_code == 201, answer.text
    app = answer.json()
    assert [s["authority"] for s in app["chain"]] == ["counselor:cs2002"]
    decided = requests.post(f"{stack.url}/applications/{app['id']}/decisions", json={"decision": "approve"},
                            headers=counselor, timeout=10)
    assert decided.json()["status"] == "approved", decided.text
    # When the job runs twice after the end
    for minutes in (5, 35):
        fired = subprocess.run([sys.executable, "-m", "infra.local", "fire", "remind_overdue_returns",
                                "--state-file", str(stack.state_file), "--at", utc_z(end + timedelta(minutes=minutes))],
                               cwd=PROJECT_DIR, timeout=120, capture_output=True, text=True)
        assert fired.returncode == 0, fired.stderr

    def overdue_messages() -> list[dict]:
        return [s["payload"] for s in requests.get(f"{fake_wecom_url(stack)}/_sent", timeout=5).json()
                if s["payload"].get("textcard", {}).get("title") in ("请假到期未销假", "到期未返回提醒")]

    # Then the student and the counselor each got one message
    sent = wait_for(lambda: len(overdue_messages()) >= 2 and overdue_messages())
    assert sorted(m["touser"] for m in sent) == ["fdy01", "s013"]
    view = requests.get(f"{stack.url}/leave/{app['id']}", headers=counselor, timeout=10).json()
    assert view["reminded_at"] and view["returned_at"] is None and view["overdue"] is False  # (not yet, by the clock)
    assert len(overdue_messages()) == 2  # nothing more came of the second run
    # And the student's return and the counselor's acknowledgement land
    back = requests.post(f"{stack.url}/leave/{app['id']}/return", headers=student, timeout=10)
    assert back.status_code == 200 and back.json()["returned_at"], back.text
    seen = requests.post(f"{stack.url}/leave/{app['id']}/acknowledge", headers=counselor, timeout=10)
    assert seen.status_code == 200 and seen.json()["acknowledged_by"] == "fdy01", seen.text
