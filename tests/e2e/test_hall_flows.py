"""The service hall over the local stack: a real presigned upload, a chain, WeCom messages, racing approvers."""

from __future__ import annotations

import threading
from collections import Counter

import requests

from chalicelib.catalogue import shipped_definitions
from tests.e2e.test_wecom_flows import fake_wecom_url, wait_for


def token(stack, userid: str) -> dict[str, str]:
    answer = requests.post(f"{stack.url}/auth/dev-login", json={"userid": userid}, timeout=10).json()
    return {"Authorization": f"Bearer {answer['token']}"}


def test_return_to_campus_with_an_uploaded_file_through_its_chain_to_wecom(stack):
    student, counselor, office = token(stack, "s001"), token(stack, "fdy01"), token(stack, "xg01")
    # Given a file uploaded straight to storage through a presigned URL, as the H5 does
    pdf = b"%PDF-1.4 e2e"
    slot = requests.post(f"{stack.url}/uploads", json={"content_type": "application/pdf", "size": len(pdf)},
                         headers=student, timeout=10).json()
    put = requests.put(slot["url"], data=pdf, headers=slot["headers"], timeout=10)
    assert put.status_code == 200, put.text
    # When the student files the return-to-campus service with it
    definition = shipped_definitions()["student-return"]
    form = {f.name: sample(f, slot["key"]) for f in definition.fields}
    answer = requests.post(f"{stack.url}/services/student-return/applications", json={"data": form},
                           headers=student, timeout=10)
    assert answer.status_code == 201, answer.text
    app = answer.json()
    # Then the counselor finds it in their to-do, approves, and so does student affairs if asked
    todo = requests.get(f"{stack.url}/approvals", headers=counselor, timeout=10).json()["items"]
    assert app["id"] in [a["id"] for a in todo]
    for approver in (counselor, office)[: len(app["chain"])]:
        app = requests.post(f"{stack.url}/applications/{app['id']}/decisions", json={"decision": "approve"},
                            headers=approver, timeout=10).json()
    assert app["status"] == "approved"
    # and WeCom received the message to the student (through the notifications queue and consumer)
    sent = wait_for(lambda: [s for s in requests.get(f"{fake_wecom_url(stack)}/_sent", timeout=5).json()
                             if s["payload"]["touser"] == "s001"
                             and "已通过" in s["payload"]["textcard"]["description"]])
    assert sent[0]["payload"]["textcard"]["title"] == definition.name


def test_twenty_approvers_at_once_over_http_give_one_decision(stack):
    student, counselor = token(stack, "s002"), token(stack, "fdy01")
    form = {f.name: sample(f, None) for f in shipped_definitions()["student-exit"].fields}
    app = requests.post(f"{stack.url}/services/student-exit/applications", json={"data": form}, headers=student,
                        timeout=10).json()
    barrier = threading.Barrier(20)
    statuses: Counter[int] = Counter()

    def approve() -> None:
        barrier.wait(timeout=30)
        statuses[requests.post(f"{stack.url}/applications/{app['id']}/decisions", json={"decision": "approve"},
                               headers=counselor, timeout=30).status_code] += 1

    threads = [threading.Thread(target=approve) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == Counter({200: 1, 409: 19})
    stored = requests.get(f"{stack.url}/applications/{app['id']}", headers=student, timeout=10).json()
    assert stored["status"] == "approved" and len(stored["history"]) == 2


def sample(spec, upload_key):
    """A valid value for a field of a shipped form."""
    if spec.type == "attachment":
        return [upload_key]
    values = {"text": "测试", "textarea": "测试说明", "bool": True, "phone": "13800138000",
              "idcard": "11010519491231002X", "location": {"province": "山东省", "city": "济南市"}}
    if spec.type in values:
        return values[spec.type]
    if spec.type == "number":
        return int(spec.min or 1)
    if spec.type in ("select", "multiselect"):
        return spec.options[0].value if spec.type == "select" else [spec.options[0].value]
    if spec.type == "date":
        return "2026-12-20"
    if spec.type == "datetime":
        return "2026-12-20T09:00:00+08:00"
    if spec.type == "person":
        return "t002"
    raise AssertionError(spec.type)
