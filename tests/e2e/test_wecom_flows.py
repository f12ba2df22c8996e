"""WeCom over the local stack: a message through SQS to the fake WeCom, a callback into the directory."""

from __future__ import annotations

import json
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


def test_a_wecom_delete_user_callback_closes_the_account(stack):
    env = stage_environment("local")
    crypto = CallbackCrypto(env["WECOM_TOKEN"], env["WECOM_ENCODING_AES_KEY"], env["WECOM_CORP_ID"])
    event = ("<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
             "<CreateTime>{now}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             "<Event><![CDATA[change_contact]]></Event><ChangeType>delete_user</ChangeType>"
             "<UserID><![CDATA[s020]]></UserID></xml>").format(corp=env["WECOM_CORP_ID"], now=int(time.time()))
    encrypted = crypto.encrypt(event)
    timestamp, nonce = str(int(time.time())), "e2e-nonce"
    envelope = f"<xml><ToUserName><![CDATA[{env['WECOM_CORP_ID']}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    params = {"msg_signature": crypto.signature(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    answer = requests.post(f"{stack.url}/wecom/callback", params=params, data=envelope.encode(),
                           headers={"Content-Type": "text/xml"}, timeout=5)
    assert (answer.status_code, answer.text) == (200, "success")
    # The consumer applies it within seconds: s020 can no longer log in
    wait_for(lambda: requests.post(f"{stack.url}/auth/dev-login", json={"userid": "s020"}, timeout=5).status_code == 403)
    replay = requests.post(f"{stack.url}/wecom/callback", params=params, data=envelope.encode(),
                           headers={"Content-Type": "text/xml"}, timeout=5)
    assert replay.status_code == 200  # accepted as a retry, not processed again
    tampered = requests.post(f"{stack.url}/wecom/callback", params={**params, "msg_signature": "0" * 40},
                             data=envelope.encode(), headers={"Content-Type": "text/xml"}, timeout=5)
    assert (tampered.status_code, json.loads(tampered.text)["code"]) == (401, "unauthorized")
