"""/wecom/callback end to end: signed, encrypted requests as WeCom sends them, the queue, the consumer.

Requests are sealed with the local stage's Token, EncodingAESKey and corp id; the consumer gets
exactly the messages the callback published (read back from moto's SQS).
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from typing import Any

import boto3
import pytest

from chalicelib.api import wecom_callback
from chalicelib.db.directory import DepartmentModel, DirectoryRepository, PersonModel
from chalicelib.db.kv import KeyValueModel
from chalicelib.integrations.wecom_crypto import CallbackCrypto
from chalicelib.resources import QUEUES, WECOM_EVENTS
from infra.local.aws import create_queues
from infra.local.lambda_events import sqs_event, sqs_event_from_messages
from tests.conftest import PROJECT_DIR, stage_environment
from tests.support.identity import call, load_cast, login

ENV = stage_environment("local")
CORP_ID = ENV["WECOM_CORP_ID"]
CRYPTO = CallbackCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_ENCODING_AES_KEY"], CORP_ID)
XML = {"Content-Type": "text/xml"}


class FakeWeCom:
    """WeCom's user/get for the consumer (injected; no HTTP)."""

    def __init__(self, members: dict[str, dict[str, Any]] | None = None) -> None:
        self.members = members or {}

    def user_get(self, userid: str) -> dict[str, Any] | None:
        member = self.members.get(userid)
        return {"userid": userid, **member} if member else None


@pytest.fixture
def queues():
    return create_queues(boto3.client("sqs"), QUEUES)


@pytest.fixture
def wecom(monkeypatch) -> FakeWeCom:
    fake = FakeWeCom({"zhangsan": {"name": "张三", "department": [2], "main_department": 2, "status": 1}})
    monkeypatch.setattr(wecom_callback, "wecom_api", lambda: fake)
    return fake


@pytest.fixture
def campus():
    """WeCom-numbered departments and two people already in the directory."""
    repo = DirectoryRepository()
    repo.put_departments([DepartmentModel(dept_id="1", name="某大学", kind="office"),
                          DepartmentModel(dept_id="2", name="计算机学院", kind="college"),
                          DepartmentModel(dept_id="3", name="人事处", kind="office")])
    repo.put_people([PersonModel(userid="lisi", name="李四", person_type="staff", department="2"),
                     PersonModel(userid="wangwu", name="王五", person_type="staff", department="3")])
    return repo


def event_xml(change_type: str, **fields: Any) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[{change_type}]]></ChangeType>{body}</xml>")


def envelope(encrypted: str) -> str:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")


def signed_query(encrypted: str, *, timestamp: int | None = None, crypto: CallbackCrypto = CRYPTO, **extra: str) -> str:
    ts, nonce = str(timestamp if timestamp is not None else int(time.time())), secrets.token_hex(5)
    params = {"msg_signature": crypto.signature(ts, nonce, encrypted), "timestamp": ts, "nonce": nonce, **extra}
    return urllib.parse.urlencode(params)


def sealed_request(plaintext: str, crypto: CallbackCrypto = CRYPTO, **kwargs: Any) -> tuple[str, str]:
    """``(path with query, body)`` of a POST as WeCom sends it."""
    encrypted = crypto.encrypt(plaintext)
    return f"/wecom/callback?{signed_query(encrypted, crypto=crypto, **kwargs)}", envelope(encrypted)


def post(client, path: str, body: str | bytes, headers: dict[str, str] = XML):
    return client.http.post(path, body=body, headers=headers)


def queued() -> list[dict[str, Any]]:
    """Every message waiting on wecom-events (received, so later calls do not see them again)."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=WECOM_EVENTS.name)["QueueUrl"]
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not batch:
            return messages
        messages += batch


def deliver(client, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the consumer on ``messages`` as Lambda would hand them over."""
    event = sqs_event_from_messages(messages, queue_arn=f"arn:aws:sqs:us-east-1:000000000000:{WECOM_EVENTS.name}",
                                    region="us-east-1")
    return client.lambda_.invoke("apply_wecom_changes", event).payload


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body)["code"] == code


def nothing_written() -> bool:
    return KeyValueModel.count() == 0 and queued() == []


# -- URL verification -------------------------------------------------------------------------


def test_url_verification_answers_the_decrypted_echostr_as_plain_text(client):
    echostr = CRYPTO.encrypt("1616140317555161061")
    response = client.http.get(f"/wecom/callback?{signed_query(echostr, echostr=echostr)}")
    assert response.status_code == 200
    assert response.body == b"1616140317555161061"
    assert response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("case", ["bad signature", "stale", "no echostr", "other corp", "unsigned"])
def test_url_verification_refuses_what_wecom_did_not_send(client, case):
    echostr = CRYPTO.encrypt("1616140317555161061")
    if case == "bad signature":
        query = signed_query(echostr, echostr=CRYPTO.encrypt("something else"))
    elif case == "stale":
        query = signed_query(echostr, timestamp=int(time.time()) - 301, echostr=echostr)
    elif case == "no echostr":
        query = signed_query(echostr)
    elif case == "other corp":
        other = CallbackCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_ENCODING_AES_KEY"], "wwother000000000")
        echostr = other.encrypt("1616140317555161061")
        query = signed_query(echostr, crypto=other, echostr=echostr)
    else:
        query = urllib.parse.urlencode({"echostr": echostr})
    response = client.http.get(f"/wecom/callback?{query}")
    expected = (400, "bad_request") if case == "no echostr" else (401, "unauthorized")
    assert_error(response, *expected)


# -- events: the happy paths ------------------------------------------------------------------


def test_create_update_and_delete_flow_through_the_queue_into_the_directory(client, queues, wecom, campus):
    # Given WeCom posts a new department, a new member, a moved member and a deleted member
    for plaintext in (event_xml("create_party", Id=12, Name="数学学院", ParentId=1, Order=1),
                      event_xml("create_user", UserID="ZhangSan", Department="2"),
                      event_xml("update_user", UserID="lisi", Name="李思", MainDepartment=12, Department="12"),
                      event_xml("delete_user", UserID="wangwu")):
        path, body = sealed_request(plaintext)
        response = post(client, path, body)
        # Then each is acknowledged at once, as WeCom expects
        assert (response.status_code, response.body) == (200, b"success")
        assert response.headers["Content-Type"].startswith("text/plain")
    # And nothing changed yet: the work is queued
    assert campus.get_person("zhangsan") is None
    messages = queued()
    assert [json.loads(m["Body"])["change_type"] for m in messages] == \
        ["create_party", "create_user", "update_user", "delete_user"]

    # When the consumer runs on what was published
    assert deliver(client, messages) == {"batchItemFailures": []}

    # Then the directory follows WeCom
    assert DepartmentModel.get("12").name == "数学学院"
    zhangsan = campus.get_person("zhangsan")
    assert (zhangsan.name, zhangsan.person_type, zhangsan.department, zhangsan.status) == ("张三", "staff", "2", "active")
    lisi = campus.get_person("lisi")
    assert (lisi.name, lisi.department, lisi.token_version) == ("李思", "12", 1)
    wangwu = campus.get_person("wangwu")
    assert (wangwu.status, wangwu.token_version) == ("left", 1)
    # And a redelivery of the whole batch changes nothing
    assert deliver(client, messages) == {"batchItemFailures": []}
    assert campus.get_person("lisi").token_version == 1 and campus.get_person("wangwu").token_version == 1


def test_a_member_deleted_in_wecom_loses_their_session(client, queues, wecom):
    load_cast()
    token = login(client, "t001")
    assert call(client, "GET", "/me", token)[0] == 200
    path, body = sealed_request(event_xml("delete_user", UserID="t001"))
    assert post(client, path, body).status_code == 200
    deliver(client, queued())
    assert call(client, "GET", "/me", token)[0] == 401
    assert PersonModel.get("t001").status == "left"  # kept, never deleted


def test_events_that_are_not_directory_changes_are_acknowledged_and_dropped(client, queues):
    path, body = sealed_request(f"<xml><ToUserName>{CORP_ID}</ToUserName><MsgType>event</MsgType>"
                                "<Event>enter_agent</Event><AgentID>1000002</AgentID></xml>")
    assert post(client, path, body).body == b"success"
    assert nothing_written()


def test_application_xml_is_accepted_too(client, queues):
    path, body = sealed_request(event_xml("delete_user", UserID="lisi"))
    assert post(client, path, body, {"Content-Type": "application/xml; charset=utf-8"}).status_code == 200
    assert len(queued()) == 1


# -- events: replays and retries --------------------------------------------------------------


def test_a_replayed_request_is_acknowledged_but_not_queued_again(client, queues):
    path, body = sealed_request(event_xml("delete_user", UserID="lisi"))
    first, replay = post(client, path, body), post(client, path, body)
    assert (first.status_code, replay.status_code, replay.body) == (200, 200, b"success")
    assert len(queued()) == 1


def test_a_wecom_retry_of_the_same_event_sealed_afresh_is_not_queued_again(client, queues):
    plaintext = event_xml("delete_user", UserID="lisi")
    for _ in range(3):  # WeCom retries three times when it does not get an answer in 5 s
        path, body = sealed_request(plaintext)
        assert post(client, path, body).status_code == 200
    assert len(queued()) == 1


def test_an_event_is_not_lost_when_the_queue_fails(client, monkeypatch, queues):
    # Given publishing fails once (SQS unreachable)
    real_publish, outage = wecom_callback.publish, [True]

    def flaky(spec, message):
        if outage.pop() if outage else False:
            raise ConnectionError("SQS unreachable")
        return real_publish(spec, message)

    monkeypatch.setattr(wecom_callback, "publish", flaky)
    path, body = sealed_request(event_xml("delete_user", UserID="lisi"))
    failed = post(client, path, body)
    assert_error(failed, 500, "internal_error")  # WeCom retries a delivery that did not get 200
    # When WeCom retries and SQS is back
    # Then the retry is queued: the failed attempt did not keep the replay key
    assert post(client, path, body).status_code == 200
    assert len(queued()) == 1


# -- events: refusals (4xx with a JSON error, never 500, nothing written) ----------------------


def test_a_bad_signature_is_401(client, queues):
    path, body = sealed_request(event_xml("delete_user", UserID="lisi"))
    tampered = path.replace("msg_signature=", "msg_signature=0")
    assert_error(post(client, tampered, body), 401, "unauthorized")
    other_body = envelope(CRYPTO.encrypt(event_xml("delete_user", UserID="admin")))
    assert_error(post(client, path, other_body), 401, "unauthorized")
    assert nothing_written()


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_a_timestamp_outside_five_minutes_is_401(client, queues, offset):
    path, body = sealed_request(event_xml("delete_user", UserID="lisi"), timestamp=int(time.time()) + offset)
    assert_error(post(client, path, body), 401, "unauthorized")
    assert nothing_written()


def test_the_window_follows_the_policys_clock(client, queues, monkeypatch):
    path, body = sealed_request(event_xml("delete_user", UserID="lisi"))
    monkeypatch.setattr(wecom_callback.SIGNED_WECOM, "clock", lambda: time.time() + 299)
    assert post(client, path, body).status_code == 200
    path, body = sealed_request(event_xml("delete_user", UserID="lisi2"))
    monkeypatch.setattr(wecom_callback.SIGNED_WECOM, "clock", lambda: time.time() + 302)
    assert_error(post(client, path, body), 401, "unauthorized")


def test_a_message_sealed_for_another_corp_is_401(client, queues):
    other = CallbackCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_ENCODING_AES_KEY"], "wwother000000000")
    path, body = sealed_request(event_xml("delete_user", UserID="lisi"), crypto=other)
    assert_error(post(client, path, body), 401, "unauthorized")
    assert nothing_written()


@pytest.mark.parametrize("case", ["garbage", "truncated", "entities", "no encrypt", "not base64", "bad padding",
                                  "plaintext not xml", "event without userid", "huge"])
def test_malformed_bodies_are_400(client, queues, case):
    if case in ("not base64", "bad padding"):
        encrypted = "%%%not-base64%%%" if case == "not base64" else CRYPTO.encrypt("x")[:-8] + "AAAAAAA="
        path, body = f"/wecom/callback?{signed_query(encrypted)}", envelope(encrypted)
    elif case == "plaintext not xml":
        path, body = sealed_request("this is not xml")
    elif case == "event without userid":
        path, body = sealed_request(event_xml("update_user", Name="无名"))
    else:
        encrypted = CRYPTO.encrypt(event_xml("delete_user", UserID="lisi"))
        path = f"/wecom/callback?{signed_query(encrypted)}"
        body = {
            "garbage": "\x00\x01 definitely not xml",
            "truncated": envelope(encrypted)[:40],
            "entities": '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
            "no encrypt": "<xml><ToUserName>x</ToUserName></xml>",
            "huge": "<xml>" + "<a>b</a>" * 10000 + "</xml>",
        }[case]
    assert_error(post(client, path, body), 400, "bad_request")
    assert nothing_written()


def test_unsigned_requests_and_other_media_types_are_refused(client, queues):
    encrypted = CRYPTO.encrypt(event_xml("delete_user", UserID="lisi"))
    assert_error(post(client, "/wecom/callback", envelope(encrypted)), 401, "unauthorized")
    query = signed_query(encrypted)
    # The Content-Type WeCom sends is undocumented: the body is parsed as XML whatever it says
    assert_error(post(client, f"/wecom/callback?{query}", "{}", {"Content-Type": "application/json"}), 400,
                 "bad_request")
    assert_error(post(client, f"/wecom/callback?{query}", "<xml/>", {"Content-Type": "image/png"}), 415,
                 "unsupported_media_type")
    assert nothing_written()


# -- the consumer -----------------------------------------------------------------------------


def test_the_sample_sqs_event_applies_its_changes(client, wecom, campus):
    event = json.loads((PROJECT_DIR / "events" / "wecom_events_change_contact.json").read_text())
    wecom.members["zhangsan"] = {"name": "张三", "department": [12], "main_department": 12, "status": 1}
    assert client.lambda_.invoke("apply_wecom_changes", event).payload == {"batchItemFailures": []}
    assert DepartmentModel.get("12").kind == "college"
    assert campus.get_person("zhangsan").department == "12"
    assert (campus.get_person("lisi").name, campus.get_person("lisi").department) == ("李四（新）", "12")
    assert campus.get_person("wangwu").status == "left"


def test_a_bad_record_fails_alone(client, wecom, campus):
    good = json.dumps({"event": "change_contact", "change_type": "delete_user", "userid": "lisi"})
    poison = json.dumps({"event": "change_contact", "change_type": "delete_user"})  # no userid
    event = sqs_event([poison, good], queue_name=WECOM_EVENTS.name)
    payload = client.lambda_.invoke("apply_wecom_changes", event).payload
    assert payload == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert campus.get_person("lisi").status == "left"


def test_a_change_needing_wecom_fails_its_record_while_wecom_is_down(client, monkeypatch, campus):
    class Down:
        def user_get(self, userid):
            raise ConnectionError("WeCom unreachable")

    monkeypatch.setattr(wecom_callback, "wecom_api", lambda: Down())
    new = json.dumps({"event": "change_contact", "change_type": "create_user", "userid": "newbie"})
    event = sqs_event([new], queue_name=WECOM_EVENTS.name)
    with pytest.raises(Exception):  # every record failed: Lambda retries the batch (then the DLQ)
        client.lambda_.invoke("apply_wecom_changes", event)
    assert campus.get_person("newbie") is None


def test_a_delete_applied_after_the_re_add_leaves_the_member_active(client, queues, wecom, campus, caplog):
    caplog.set_level("INFO", logger="campus-platform")  # the skip is an INFO line
    # Given WeCom deleted lisi and added her again, and the consumer gets create_user first
    wecom.members["lisi"] = {"name": "李四", "department": [2], "main_department": 2, "status": 1}
    for plaintext in (event_xml("create_user", UserID="lisi", Department="2"),
                      event_xml("delete_user", UserID="lisi")):
        path, body = sealed_request(plaintext)
        assert post(client, path, body).status_code == 200
    create, delete = queued()
    assert deliver(client, [create]) == {"batchItemFailures": []}
    # When the older delete_user is applied after it
    assert deliver(client, [delete]) == {"batchItemFailures": []}
    # Then WeCom still lists lisi as active: she stays active, and the skip is counted in the logs
    lisi = campus.get_person("lisi")
    assert (lisi.status, lisi.token_version) == ("active", 0)
    skipped = [r for r in caplog.records if getattr(r, "skipped_still_active", None)]
    assert [r.skipped_still_active for r in skipped] == [1]


def test_a_rename_onto_an_existing_userid_fails_its_record_and_changes_nobody(client, wecom, campus):
    # Given lisi (with a card) and a leaver whose record holds the userid WeCom renames lisi to
    campus.put_people([PersonModel(userid="lisi", name="李四", person_type="staff", department="2", card_no="T100"),
                       PersonModel(userid="li.si", name="李思", person_type="staff", department="3", status="left",
                                   card_no="T200", token_version=4)])
    rename = json.dumps({"event": "change_contact", "change_type": "update_user", "userid": "lisi",
                         "new_userid": "li.si"})
    good = json.dumps({"event": "change_contact", "change_type": "update_user", "userid": "wangwu", "name": "王武"})
    event = sqs_event([rename, good], queue_name=WECOM_EVENTS.name)
    # When the consumer runs
    payload = client.lambda_.invoke("apply_wecom_changes", event).payload
    # Then the rename's record fails (retried, then the DLQ for review) and nothing is merged
    assert payload == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    lisi, other = campus.get_person("lisi"), campus.get_person("li.si")
    assert (lisi.status, lisi.card_no, lisi.token_version) == ("active", "T100", 0)
    assert (other.status, other.card_no, other.name, other.token_version) == ("left", "T200", "李思", 4)
    assert campus.get_person("wangwu").name == "王武"


def test_a_record_the_consumer_cannot_read_fails_without_its_values_in_the_error(client, wecom, campus):
    # Given only unreadable records (every record failing makes Powertools raise with their tracebacks)
    poison = json.dumps({"event": "change_contact", "change_type": "update_user", "userid": "zhang san 张三",
                         "name": "张三", "departments": [0]})
    event = sqs_event([poison], queue_name=WECOM_EVENTS.name)
    with pytest.raises(Exception) as failed:
        client.lambda_.invoke("apply_wecom_changes", event)
    # Then the error names the fields and the problems, never the values
    text = str(failed.value)
    assert "userid" in text and "departments" in text
    assert "张三" not in text and "zhang san" not in text and "input_value" not in text


def test_the_events_folder_has_the_samples():
    names = {p.name for p in (PROJECT_DIR / "events").glob("wecom_*.json")}
    assert {"wecom_events_change_contact.json", "wecom_scheduled_sync_wecom_directory.json"} <= names
