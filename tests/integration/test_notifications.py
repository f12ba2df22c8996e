"""The notifications consumer under moto, with WeCom's HTTP API mocked by `responses`."""

from __future__ import annotations

import json
import re

import boto3
import pytest
import responses
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from chalicelib.db.messaging import OutboxRepository
from chalicelib.domain.notifications import Notification, split
from chalicelib.resources import QUEUES
from infra.local.aws import create_queues
from infra.local.lambda_events import sqs_record
from tests.conftest import stage_environment
from tests.support.identity import call, load_cast, login

SEND = re.compile(r"https://qyapi\.weixin\.qq\.com/cgi-bin/message/send.*")
TOKEN = re.compile(r"https://qyapi\.weixin\.qq\.com/cgi-bin/gettoken.*")


@pytest.fixture
def wecom():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, TOKEN, json={"errcode": 0, "errmsg": "ok", "access_token": "T", "expires_in": 7200})
        yield mock


@pytest.fixture
def queues():
    return create_queues(boto3.client("sqs"), QUEUES)


def accept(wecom, invalid: str = ""):
    def answer(request):
        return 200, {}, json.dumps({"errcode": 0, "errmsg": "ok", "invaliduser": invalid, "msgid": f"m{len(sends(wecom))}"})
    wecom.add_callback(responses.POST, SEND, callback=answer)


def sends(wecom) -> list[dict]:
    return [json.loads(c.request.body) for c in wecom.calls if "/message/send" in c.request.url]


def event_of(*parts, receive_count: int = 1) -> dict:
    attributes = {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1", "SenderId": "x",
                  "ApproximateFirstReceiveTimestamp": "1"}
    return {"Records": [sqs_record(json.dumps(p.model_dump(mode="json")), queue_arn="arn:aws:sqs:us-east-1:0:q",
                                   region="us-east-1", attributes=attributes) for p in parts]}


def invoke(client, event) -> dict:
    return client.lambda_.invoke("send_notifications", event).payload


def test_a_notification_to_1001_people_is_two_calls_and_fully_recorded(client, wecom, queues):
    accept(wecom)
    parts = split(Notification(key="notice:1", recipients=tuple(f"u{i:04d}" for i in range(1001)), title="通知",
                               body="明天停电"))
    assert invoke(client, event_of(*parts)) == {"batchItemFailures": []}
    calls = sends(wecom)
    assert [len(c["touser"].split("|")) for c in calls] == [1000, 1]
    outbox = OutboxRepository()
    assert [outbox.get(p.part_key).status for p in parts] == ["sent"] * 2
    assert len(outbox.get("notice:1#p0").sent_to) == 1000


def test_a_redelivered_part_is_not_sent_twice(client, wecom, queues):
    accept(wecom)
    part = split(Notification(key="approval:9", recipients=("s001", "fdy01"), body="已批准"))[0]
    invoke(client, event_of(part))
    invoke(client, event_of(part, receive_count=2))
    assert len(sends(wecom)) == 1


def test_invalid_users_are_recorded_not_retried(client, wecom, queues):
    accept(wecom, invalid="ghost")
    part = split(Notification(key="k:inv", recipients=("s001", "ghost", "Bad UserID!"), body="x"))[0]
    assert invoke(client, event_of(part)) == {"batchItemFailures": []}
    row = OutboxRepository().get(part.part_key)
    assert (row.status, row.sent_to, row.invalid_users) == ("sent", {"s001"}, {"ghost", "bad userid!"})
    assert sends(wecom)[0]["touser"] == "s001|ghost"


def test_members_at_the_per_minute_limit_are_deferred_not_sent(client, wecom, queues, monkeypatch):
    # 4 a minute (sliding): each calendar minute gets 2
    monkeypatch.setenv("WECOM_MEMBER_PER_MINUTE", "4")
    accept(wecom)
    for n in range(3):
        invoke(client, event_of(split(Notification(key=f"k:{n}", recipients=("s001", f"x{n}"), body="x"))[0]))
    touser = [c["touser"] for c in sends(wecom)]
    assert touser == ["s001|x0", "s001|x1", "x2"]
    assert OutboxRepository().get("k:2#p0").status == "deferred"
    sqs = boto3.client("sqs")
    deferred = sqs.receive_message(QueueUrl=queues["campus-notifications"].url, WaitTimeSeconds=0)
    # SQS holds the deferred part back (DelaySeconds) until the member's minute is over
    assert deferred.get("Messages", []) == []


def test_a_wecom_outage_fails_the_record_and_the_last_receipt_marks_it_failed(client, wecom, queues):
    # Given WeCom answers 503 to every send
    wecom.add(responses.POST, SEND, status=503)
    down = split(Notification(key="k:down", recipients=("s001",), body="x"))[0]
    healthy = split(Notification(key="k:bad-json", recipients=("Bad UserID!",), body="x"))[0]
    # When a batch holds one part to send and one that needs no call, only the first is reported
    failures = invoke(client, event_of(down, healthy))["batchItemFailures"]
    assert len(failures) == 1
    assert OutboxRepository().get(down.part_key).status == "queued"
    assert OutboxRepository().get(healthy.part_key).status == "invalid_user"
    # Then on its last receipt before the DLQ the outbox says failed, never "queued" for ever
    with pytest.raises(BatchProcessingError):  # every record of that batch failed: Lambda retries it whole
        invoke(client, event_of(down, receive_count=5))
    assert OutboxRepository().get(down.part_key).status == "failed"


def test_a_part_being_sent_elsewhere_is_retried_later_not_sent_twice(client, wecom, queues):
    from chalicelib.api import deps

    accept(wecom)
    part = split(Notification(key="k:locked", recipients=("s001",), body="x"))[0]
    assert deps.kv().claim(f"notify#{part.part_key}", 60)  # another consumer holds it
    with pytest.raises(BatchProcessingError):  # the record fails, SQS brings it back later
        invoke(client, event_of(part))
    assert sends(wecom) == []
    deps.kv().release(f"notify#{part.part_key}")
    invoke(client, event_of(part, receive_count=2))
    invoke(client, event_of(part, receive_count=3))
    assert [c["touser"] for c in sends(wecom)] == ["s001"]


def test_a_message_is_listed_as_queued_before_it_is_sent(client, wecom, queues):
    load_cast()
    wecom.add(responses.POST, SEND, status=503)
    part = split(Notification(key="k:queued", recipients=("s002",), title="待发送", body="x"))[0]
    with pytest.raises(BatchProcessingError):
        invoke(client, event_of(part))
    status, body = call(client, "GET", "/admin/messages?userid=s002", login(client, "admin"))
    assert [(i["message"], i["status"]) for i in body["items"]] == [("k:queued", "queued")]


def test_admin_lists_a_persons_messages_of_the_day(client, wecom, queues):
    load_cast()
    accept(wecom)
    invoke(client, event_of(split(Notification(key="k:list", recipients=("s001",), title="报修", body="已受理"))[0]))
    status, body = call(client, "GET", "/admin/messages?userid=s001", login(client, "admin"))
    assert status == 200
    assert [(i["message"], i["title"], i["status"]) for i in body["items"]] == [("k:list", "报修", "sent")]
    assert call(client, "GET", "/admin/messages?userid=s001", login(client, "s001"))[0] == 403


@pytest.fixture
def fake_wecom(monkeypatch):
    from infra.local.fake_wecom import FakeWeCom

    env = stage_environment("local")
    members = {u: {"name": u, "department": [1], "status": 1} for u in ("s001", "s002", "s003", "fdy01")}
    fake = FakeWeCom(env["WECOM_CORP_ID"], env["WECOM_SECRET"], agent_id=env["WECOM_AGENT_ID"], members=members)
    monkeypatch.setenv("WECOM_API_BASE", fake.start())
    yield fake
    fake.stop()


def test_a_token_expiring_mid_batch_is_refreshed_once_and_the_batch_completes(client, fake_wecom, queues):
    parts = [split(Notification(key=f"k:t{n}", recipients=("s001", "s002"), body=f"第{n}条"))[0] for n in range(3)]
    answer = fake_wecom.answer

    def expire_after_the_first_send(path, params, method="GET", body=None):
        result = answer(path, params, method, body)
        if path.endswith("/message/send") and len(fake_wecom.sent) == 1:
            fake_wecom.expire_tokens()  # WeCom now answers 42001 to the token every container holds
        return result

    fake_wecom.answer = expire_after_the_first_send
    assert invoke(client, event_of(*parts)) == {"batchItemFailures": []}
    assert [s["payload"]["textcard"]["description"] for s in fake_wecom.sent] == ["第0条", "第1条", "第2条"]
    assert sum(1 for path, _ in fake_wecom.calls if path.endswith("/gettoken")) == 2


def test_after_an_outage_the_retried_record_goes_out(client, fake_wecom, queues):
    part = split(Notification(key="k:recover", recipients=("s003",), body="恢复后发送"))[0]
    fake_wecom.outage(3)  # every answer to the first delivery, the client's own retries included
    with pytest.raises(BatchProcessingError):
        invoke(client, event_of(part))
    assert fake_wecom.sent == []
    # When SQS redelivers it after WeCom is back, then it is sent once and recorded
    assert invoke(client, event_of(part, receive_count=2)) == {"batchItemFailures": []}
    assert [s["payload"]["touser"] for s in fake_wecom.sent] == ["s003"]
    assert OutboxRepository().get(part.part_key).status == "sent"


def test_the_sample_event_in_events_folder_is_sent(client, fake_wecom, queues):
    from tests.conftest import PROJECT_DIR

    event = json.loads((PROJECT_DIR / "events" / "sqs_notifications_textcard.json").read_text())
    assert invoke(client, event) == {"batchItemFailures": []}
    assert [(s["payload"]["touser"], s["payload"]["textcard"]["title"]) for s in fake_wecom.sent] == [
        ("s001|fdy01", "请假申请已批准")]
