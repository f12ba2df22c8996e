"""WeCom over the local stack: a message through SQS to the fake WeCom, a callback into the directory."""

from __future__ import annotations

import json
import secrets
import time

import boto3
import requests

from chalicelib.domain.notifications import Notification, split
from chalicelib.integrations.wecom_crypto import CallbackCrypto
from tests.conftest import stage_environment


def wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def sqs_of(stack):
    env = stack.state["env"]
    return boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id="local", aws_secret_access_key="local")


def fake_wecom_url(stack) -> str:
    return stack.state["env"]["WECOM_API_BASE"]


def test_a_queued_notification_reaches_wecom_and_the_outbox(stack):
    part = split(Notification(key="e2e:notice", recipients=("s001", "nobody-here"), title="通知", body="e2e"))[0]
    sqs = sqs_of(stack)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="campus-notifications")["QueueUrl"],
                     MessageBody=part.model_dump_json())
    sent = wait_for(lambda: [s for s in requests.get(f"{fake_wecom_url(stack)}/_sent", timeout=5).json()
                             if s["payload"]["textcard"]["description"] == "e2e"])
    assert sent[0]["payload"]["touser"] == "s001|nobody-here"
    assert sent[0]["invaliduser"] == "nobody-here"
    admin = requests.post(f"{stack.url}/auth/dev-login", json={"userid": "admin"}, timeout=10).json()["token"]
    listed = wait_for(lambda: requests.get(f"{stack.url}/admin/messages?userid=s001", timeout=5,
                                           headers={"Authorization": f"Bearer {admin}"}).json()["items"])
    assert [(i["message"], i["status"]) for i in listed] == [("e2e:notice", "sent")]


def sealed_callback(plaintext: str) -> tuple[dict[str, str], bytes]:
    """``(query parameters, body)`` of a POST /wecom/callback as WeCom sends it (local stage's keys)."""
    env = stage_environment("local")
    crypto = CallbackCrypto(env["WECOM_TOKEN"], env["WECOM_ENCODING_AES_KEY"], env["WECOM_CORP_ID"])
    encrypted = crypto.encrypt(plaintext)
    timestamp, nonce = str(int(time.time())), secrets.token_hex(6)
    envelope = (f"<xml><ToUserName><![CDATA[{env['WECOM_CORP_ID']}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    params = {"msg_signature": crypto.signature(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    return params, envelope.encode()


def change_event(change_type: str, **fields: str) -> str:
    corp = stage_environment("local")["WECOM_CORP_ID"]
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[change_contact]]></Event><ChangeType>{change_type}</ChangeType>{body}</xml>")


def post_callback(stack, params: dict[str, str], body: bytes) -> requests.Response:
    return requests.post(f"{stack.url}/wecom/callback", params=params, data=body,
                         headers={"Content-Type": "text/xml"}, timeout=5)


def admin_headers(stack) -> dict[str, str]:
    token = requests.post(f"{stack.url}/auth/dev-login", json={"userid": "admin"}, timeout=10).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def import_people(stack, headers: dict[str, str], *rows: tuple[str, str]) -> dict:
    """Upsert staff ``(userid, name)`` through the admin import (they are not in the fake WeCom)."""
    answer = requests.post(f"{stack.url}/admin/directory/import", headers=headers, timeout=10, json={
        "rows": [{"userid": u, "name": n, "type": "staff", "department": "nic"} for u, n in rows]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 0
    return answer.json()


def name_of(stack, headers: dict[str, str], userid: str) -> str:
    answer = requests.get(f"{stack.url}/admin/people/{userid}", headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["name"]


def app_logs(stack, message: str) -> list[dict]:
    """The app's JSON log lines (Powertools) with this message, from the stack's output."""
    lines = []
    for line in stack.log().splitlines():
        if line.startswith("{") and f'"message":"{message}"' in line:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # a line interleaved with another thread's output
                continue
    return lines


def test_a_wecom_delete_user_callback_closes_the_account(stack):
    # Given someone in the directory whom WeCom no longer has (the fake WeCom does not list them)
    headers = admin_headers(stack)
    import_people(stack, headers, ("e2e-gone", "将离开"))
    assert requests.post(f"{stack.url}/auth/dev-login", json={"userid": "e2e-gone"}, timeout=5).status_code == 200
    # When WeCom posts their delete_user
    params, body = sealed_callback(change_event("delete_user", UserID="e2e-gone"))
    answer = post_callback(stack, params, body)
    assert (answer.status_code, answer.text) == (200, "success")
    # Then the consumer applies it within seconds (WeCom's user/get confirms them gone): no more login
    wait_for(lambda: requests.post(f"{stack.url}/auth/dev-login", json={"userid": "e2e-gone"},
                                   timeout=5).status_code == 403)
    tampered = post_callback(stack, {**params, "msg_signature": "0" * 40}, body)
    assert (tampered.status_code, json.loads(tampered.text)["code"]) == (401, "unauthorized")


def test_a_delete_user_for_someone_wecom_still_lists_as_active_is_skipped(stack):
    # Given s020, whom the fake WeCom lists as active (deleted and added back, events out of order)
    skipped = "wecom leavings skipped: member active in WeCom"
    before = len(app_logs(stack, skipped))
    params, body = sealed_callback(change_event("delete_user", UserID="s020"))
    assert post_callback(stack, params, body).status_code == 200
    # Then the consumer asks WeCom, skips the stale delete and counts it
    wait_for(lambda: len(app_logs(stack, skipped)) > before)
    assert app_logs(stack, skipped)[-1]["skipped_still_active"] == 1
    assert requests.post(f"{stack.url}/auth/dev-login", json={"userid": "s020"}, timeout=5).status_code == 200


def test_a_replayed_callback_is_acknowledged_but_not_applied_again(stack):
    # Given a WeCom rename of e2e-rn, applied, and the name then restored through the directory import
    headers = admin_headers(stack)
    import_people(stack, headers, ("e2e-rn", "原名"), ("e2e-mark", "标记前"))
    params, body = sealed_callback(change_event("update_user", UserID="e2e-rn", Name="企微改名"))
    assert (post_callback(stack, params, body).text) == "success"
    wait_for(lambda: name_of(stack, headers, "e2e-rn") == "企微改名")
    assert import_people(stack, headers, ("e2e-rn", "原名"))["updated"] == 1
    assert name_of(stack, headers, "e2e-rn") == "原名"
    duplicates_before = [e for e in app_logs(stack, "wecom callback") if e.get("outcome") == "duplicate"]
    # When the very same request is replayed (a captured request, or WeCom retrying it)
    replay = post_callback(stack, params, body)
    # Then it is acknowledged as WeCom expects, and recognised as already accepted
    assert (replay.status_code, replay.text) == (200, "success")
    duplicates = [e for e in app_logs(stack, "wecom callback") if e.get("outcome") == "duplicate"]
    assert len(duplicates) == len(duplicates_before) + 1
    # And once a later event has gone through the queue, the rename was not applied a second time
    params, body = sealed_callback(change_event("update_user", UserID="e2e-mark", Name="标记后"))
    assert post_callback(stack, params, body).status_code == 200
    wait_for(lambda: name_of(stack, headers, "e2e-mark") == "标记后")
    assert name_of(stack, headers, "e2e-rn") == "原名"
