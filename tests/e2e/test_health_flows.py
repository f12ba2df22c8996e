"""Daily health reporting over the local stack: report -> alert queue -> case -> WeCom, and the logs."""

from __future__ import annotations

import requests

from tests.e2e.test_wecom_flows import fake_wecom_url, wait_for

FEVER = {"temperature": 38.4, "symptoms": ["fever", "other"], "symptom_note": "咽喉肿痛三天",
         "whereabouts": "other_city", "current_city": {"province": "山东省", "city": "青岛市"}, "health_code": "green",
         "close_contact": False, "risk_area": False, "quarantined": False, "remarks": "宿舍楼下药店买过药",
         "pledge": True}
CAST = {"admin", "hr01", "doc01", "xg01", "bw01", "hq01", "xl01", "leader01", "dean01", "fdy01", "fdy02", "t001",
        "t002", "w001", *(f"s{n:03d}" for n in range(1, 21))}


def token(stack, userid: str) -> dict[str, str]:
    answer = requests.post(f"{stack.url}/auth/dev-login", json={"userid": userid}, timeout=10).json()
    return {"Authorization": f"Bearer {answer['token']}"}


def consent(stack, headers: dict[str, str]) -> None:
    version = requests.get(f"{stack.url}/health/consent", headers=headers, timeout=10).json()["version"]
    answer = requests.post(f"{stack.url}/health/consent", json={"version": version, "agree": True}, headers=headers,
                           timeout=10)
    assert answer.status_code == 200, answer.text


def alerts_sent(stack, about: str | None = None) -> list[dict]:
    """The alert cards WeCom received (about one person's report, by the name in the card)."""
    return [s for s in requests.get(f"{fake_wecom_url(stack)}/_sent", timeout=5).json()
            if s["payload"].get("textcard", {}).get("title") == "健康异常提醒"
            and (about is None or s["payload"]["textcard"]["description"].startswith(about))]


def name_of(stack, userid: str) -> str:
    return requests.get(f"{stack.url}/me", headers=token(stack, userid), timeout=10).json()["user"]["name"]


def test_an_abnormal_report_reaches_exactly_its_circle_on_wecom_within_seconds(stack):
    student = token(stack, "s003")
    consent(stack, student)
    # When a student of cs2001 files a fever
    answer = requests.post(f"{stack.url}/health/reports", json=FEVER, headers=student, timeout=10)
    assert answer.status_code == 201, answer.text
    assert answer.json()["abnormal"] is True
    # Then WeCom receives the alert for the hospital, student affairs and the class counselor
    sent = wait_for(lambda: alerts_sent(stack, name_of(stack, "s003")), timeout=30)
    recipients = {u for s in sent for u in s["payload"]["touser"].split("|")}
    assert recipients == {"doc01", "xg01", "fdy01"}
    assert not recipients & (CAST - {"doc01", "xg01", "fdy01"})
    assert "38.4" not in sent[0]["payload"]["textcard"]["description"]
    # And the hospital finds the case
    cases = requests.get(f"{stack.url}/health/cases", headers=token(stack, "doc01"), timeout=10).json()["items"]
    assert [c["userid"] for c in cases][:1] == ["s003"] and cases[0]["reports"][0]["reasons"][0]["code"] == "temperature"
    # And a member of staff's fever reaches the hospital, HR and their department head instead
    teacher = token(stack, "t001")
    consent(stack, teacher)
    assert requests.post(f"{stack.url}/health/reports", json=FEVER, headers=teacher, timeout=10).status_code == 201
    sent = wait_for(lambda: alerts_sent(stack, name_of(stack, "t001")), timeout=30)
    assert {u for s in sent for u in s["payload"]["touser"].split("|")} == {"doc01", "hr01", "dean01"}
    # And the counselor's overview counts it
    overview = requests.get(f"{stack.url}/health/overview?class=cs2001", headers=token(stack, "fdy01"),
                            timeout=10).json()
    assert overview["total"]["reported"] >= 1 and overview["total"]["abnormal"] >= 1


def test_health_values_never_reach_the_logs(stack):
    student = token(stack, "s004")
    consent(stack, student)
    assert requests.post(f"{stack.url}/health/reports", json=FEVER, headers=student, timeout=10).status_code == 201
    hospital = token(stack, "doc01")
    requests.get(f"{stack.url}/health/abnormal", headers=hospital, timeout=10)
    wait_for(lambda: len(alerts_sent(stack)) >= 2, timeout=30)
    case = next(c for c in requests.get(f"{stack.url}/health/cases", headers=hospital, timeout=10).json()["items"]
                if c["userid"] == "s004")
    event = requests.post(f"{stack.url}/health/cases/{case['id']}/events", headers=hospital, timeout=10,
                          json={"status": "isolated", "note": "安排至隔离观察点三号楼"})
    assert event.status_code == 201
    # Bad input is logged by field name, never by value
    requests.post(f"{stack.url}/health/reports", json={**FEVER, "temperature": "abc39.9"}, headers=student, timeout=10)
    log = stack.log()
    for value in ("38.4", "咽喉肿痛三天", "青岛市", "宿舍楼下药店买过药", "安排至隔离观察点三号楼", "abc39.9",
                  student["Authorization"].split()[1]):
        assert value not in log, value
