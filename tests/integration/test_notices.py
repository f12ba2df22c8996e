"""Notices and the teaching release column over HTTP: who may publish to whom, who receives a
notice (and the WeCom card), read receipts, and approved teaching releases published by the hook.

Publishing is accepted by the request (202, ``publishing``) and finished by the ``fan_out_notice``
consumer: tests take the message off ``campus-notice-fanout`` and run the consumer with it."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
import time_machine
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from chalice.test import Client

from chalicelib.api import notices as notices_area
from chalicelib.api.deps import hall as service_hall
from chalicelib.db import notices as notices_db
from chalicelib.db.directory import DirectoryRepository, PersonModel
from chalicelib.db.notices import NoticeModel, NoticeRecipientModel, NoticeRepository
from chalicelib.domain.notices import Audience, Notice
from chalicelib.resources import NOTICE_FANOUT, NOTIFICATIONS, QUEUES
from infra.local.aws import create_queues
from tests.conftest import PROJECT_DIR
from tests.support.identity import call, load_cast, login

NOW = datetime(2026, 12, 1, 2, 10, tzinfo=timezone.utc)  # 10:10 on campus: mass sends go out at once
CS = ["dean01", "fdy01", "t001", *[f"s{n:03d}" for n in range(1, 16)]]
CS_STUDENTS = [f"s{n:03d}" for n in range(1, 16)]
FL = ["fdy02", "t002", *[f"s{n:03d}" for n in range(16, 21)]]


class Tokens(dict):
    """Session tokens of the cast, logged in on first use (a test pays only for who it needs)."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client

    def __missing__(self, userid: str) -> str:
        self[userid] = login(self.client, userid)
        return self[userid]


@pytest.fixture
def campus(client: Client) -> Iterator[dict[str, str]]:
    with time_machine.travel(NOW, tick=True):
        load_cast()
        create_queues(boto3.client("sqs"), QUEUES)
        yield Tokens(client)


def received(queue: str) -> list[str]:
    """Every message body waiting on ``queue``, taken off it (hidden for five minutes)."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    found = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        if not answer.get("Messages"):
            return found
        found += [m["Body"] for m in answer["Messages"]]


def queued_notifications() -> list[dict[str, Any]]:
    return [json.loads(body) for body in received(NOTIFICATIONS.name)]


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    """An SQS event as Lambda delivers it to the fan-out consumer (each record its own message id)."""
    return {"Records": [{"messageId": str(uuid.uuid4()), "receiptHandle": f"handle-{i}", "body": body,
                         "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796083200000"},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{NOTICE_FANOUT.name}",
                         "awsRegion": "us-east-1"} for i, body in enumerate(bodies)]}


def fan_out(client: Client) -> list[str]:
    """Run the fan-out consumer over what is queued, one message an invocation (the queue's batch
    size), as Lambda would; returns the notice ids. Every record must succeed."""
    bodies = received(NOTICE_FANOUT.name)
    for body in bodies:
        answer = client.lambda_.invoke("fan_out_notice", sqs_event([body]))
        assert answer.payload == {"batchItemFailures": []}
    return [json.loads(body)["notice_id"] for body in bodies]


def notice_cards() -> dict[str, list[dict[str, Any]]]:
    """The notices' card parts on the queue, by notification key."""
    cards: dict[str, list[dict[str, Any]]] = {}
    for part in queued_notifications():
        if part["key"].startswith("notice:"):
            cards.setdefault(part["key"], []).append(part)
    return cards


def publish(client: Client, token: str, audience: dict[str, list[str]], **extra: Any) -> tuple[int, Any]:
    """POST /notices, then the fan-out of what it queued; the notice as its publisher then sees it."""
    body = {"title": "关于期末考试安排的通知", "body": "各位同学：期末考试将于第18周进行，请做好准备。",
            "audience": audience, **extra}
    status, accepted = call(client, "POST", "/notices", token, body)
    if status != 202:
        return status, accepted
    assert accepted["status"] == "publishing" and fan_out(client) == [accepted["id"]]
    return status, published(client, token, accepted["id"])


def published(client: Client, token: str, notice_id: str) -> dict[str, Any]:
    """One of the caller's notices as ``GET /notices/published`` lists it."""
    found = [n for n in call(client, "GET", "/notices/published?limit=200", token)[1]["items"] if n["id"] == notice_id]
    assert len(found) == 1
    return found[0]


def set_status(userid: str, status: str) -> None:
    repo = DirectoryRepository()
    person = repo.get_person(userid)
    assert person is not None
    assert repo.save_people([(replace(person, status=status), person.token_version)]) == set()


def test_the_audience_is_the_union_of_departments_types_and_roles_active_only_once(
        client: Client, campus: dict[str, str]) -> None:
    # Given a second logistics worker and a second contractor who have both left, and a student who left
    repo = DirectoryRepository()
    repo.put_people([PersonModel(userid="hq02", name="离职后勤", person_type="staff", department="hq",
                                 roles={"logistics"}),
                     PersonModel(userid="w002", name="离职师傅", person_type="third_party", department="hq")])
    for userid in ("hq02", "w002", "s020"):
        set_status(userid, "left")

    # When the IT centre publishes to fl, to third-party staff, to HR and logistics, and to hq (overlapping)
    status, notice = publish(client, campus["admin"], {"departments": ["fl", "hq"], "types": ["third_party"],
                                                       "roles": ["hr", "logistics"]})

    # Then every active person named by any part receives it once; those who left do not
    assert status == 202, notice
    assert notice["status"] == "published"
    expected = sorted({*FL, "hq01", "w001", "hr01"} - {"s020"})
    assert notice["recipients"] == len(expected) and notice["read_count"] == 0
    rows = {u for u in expected + ["s020", "hq02", "w002", "admin", "s001"]
            if list(NoticeRecipientModel.query(u))}
    assert rows == set(expected)
    # and one mass textcard carries them all, keyed by the notice
    cards = notice_cards()
    assert list(cards) == [f"notice:{notice['id']}"]
    (part,) = cards[f"notice:{notice['id']}"]
    assert sorted(part["recipients"]) == expected and len(part["recipients"]) == len(set(part["recipients"]))
    assert (part["kind"], part["title"]) == ("textcard", "【通知公告】关于期末考试安排的通知")
    assert part["body"].startswith("各位同学")


ALLOWED = [
    ("dean01", {"departments": ["cs"]}),
    ("xg01", {"types": ["student"]}),
    ("hr01", {"types": ["staff"]}),
    ("admin", {"departments": ["cs"], "types": ["student"], "roles": ["hospital"]}),
    ("leader01", {"types": ["staff", "student", "third_party"]}),
]
REFUSED = [
    ("dean01", {"departments": ["fl"]}, 403),
    ("dean01", {"departments": ["cs", "fl"]}, 403),
    ("dean01", {"types": ["student"]}, 403),
    ("dean01", {"roles": ["counselor"]}, 403),
    ("xg01", {"types": ["staff"]}, 403),
    ("xg01", {"departments": ["cs"]}, 403),
    ("hr01", {"types": ["student"]}, 403),
    ("hr01", {"roles": ["hr"]}, 403),
    ("t001", {"departments": ["cs"]}, 403),
    ("hq01", {"departments": ["hq"]}, 403),
    ("s001", {"departments": ["cs"]}, 403),
]


@pytest.mark.parametrize(("userid", "audience"), ALLOWED)
def test_publishers_reach_their_own_scope(client: Client, campus: dict[str, str], userid: str,
                                          audience: dict[str, list[str]]) -> None:
    status, body = publish(client, campus[userid], audience)
    assert status == 202, body
    assert body["publisher"] == userid and body["status"] == "published" and body["recipients"] > 0


@pytest.mark.parametrize(("userid", "audience", "expected"), REFUSED)
def test_publishers_are_refused_beyond_their_scope_and_nothing_is_sent(client: Client, campus: dict[str, str],
                                                                        userid: str, audience: dict[str, list[str]],
                                                                        expected: int) -> None:
    # When someone publishes beyond what their roles reach
    status, body = publish(client, campus[userid], audience)
    # Then 403 with a reason, no notice and no card
    assert (status, body["code"]) == (expected, "forbidden"), body
    assert body["message"]
    assert list(NoticeModel.by_publisher.query(userid)) == []
    assert notice_cards() == {} and received(NOTICE_FANOUT.name) == []


def test_invalid_notices_name_the_field(client: Client, campus: dict[str, str]) -> None:
    cases = [
        ({"title": "标", "body": "正文", "audience": {}}, {"audience"}),
        ({"title": "标", "body": "正文", "audience": {"departments": ["nowhere"]}}, {"audience.departments"}),
        ({"title": "标", "body": "正文", "audience": {"types": ["visitor"]}}, {"audience.types.0"}),
        ({"title": "标" * 65, "body": "正文", "audience": {"types": ["staff"]}}, {"title"}),
        ({"title": "标", "body": "字" * 2001, "audience": {"types": ["staff"]}}, {"body"}),
        ({"title": "标", "body": "正文", "column": "news", "audience": {"types": ["staff"]}}, {"column"}),
        ({"title": "标", "body": "正文", "url": "javascript:alert(1)", "audience": {"types": ["staff"]}}, {"url"}),
        ({"title": "标", "body": "正文", "audience": {"types": ["staff"]}, "publisher": "x"}, {"publisher"}),
    ]
    for body, fields in cases:
        status, error = call(client, "POST", "/notices", campus["admin"], body)
        assert (status, set(error.get("fields", {}))) == (422, fields), body
    # and an audience in scope but with nobody active in it is refused too
    set_status("hr01", "left")
    status, error = call(client, "POST", "/notices", campus["admin"],
                         {"title": "标", "body": "正文", "audience": {"roles": ["hr"]}})
    assert (status, error["fields"]) == (422, {"audience": "names no active person"})


def test_recipients_list_open_once_and_the_publisher_sees_receipts(client: Client, campus: dict[str, str]) -> None:
    # Given the dean publishes two notices to the department, the second with a link
    _, first = publish(client, campus["dean01"], {"departments": ["cs"]})
    _, second = publish(client, campus["dean01"], {"departments": ["cs"]}, title="实验室开放",
                        column="teaching", url="https://lab.example.edu/open")
    assert first["recipients"] == len(CS) - 1  # everyone in cs but the dean himself

    # When a student lists them: newest first, unread; by column too
    status, page = call(client, "GET", "/notices", campus["s001"])
    assert status == 200
    assert [(n["id"], n["read"]) for n in page["items"]] == [(second["id"], False), (first["id"], False)]
    assert [n["id"] for n in call(client, "GET", "/notices?column=teaching", campus["s001"])[1]["items"]] == [
        second["id"]]
    page = call(client, "GET", "/notices?limit=1", campus["s001"])[1]
    assert [n["id"] for n in page["items"]] == [second["id"]] and page["next"]
    assert [n["id"] for n in call(client, "GET", f"/notices?limit=1&next={page['next']}",
                                  campus["s001"])[1]["items"]] == [first["id"]]

    # and opens the first one three times
    opened = [call(client, "GET", f"/notices/{first['id']}", campus["s001"])[1] for _ in range(3)]

    # Then it reads as read from the first open on, with one receipt time, counted once
    assert {(o["read"], o["read_at"]) for o in opened} == {(True, opened[0]["read_at"])}
    assert opened[0]["body"] == "各位同学：期末考试将于第18周进行，请做好准备。" and opened[0]["column_name"] == "通知公告"
    assert [(n["id"], n["read"]) for n in call(client, "GET", "/notices", campus["s001"])[1]["items"]] == [
        (second["id"], False), (first["id"], True)]
    status, receipts = call(client, "GET", f"/notices/{first['id']}/receipts", campus["dean01"])
    assert status == 200
    assert (receipts["total"], receipts["read"], receipts["unread"]) == (len(CS) - 1, 1, len(CS) - 2)
    assert receipts["unread_userids"] == sorted(set(CS) - {"dean01", "s001"})
    # and the unread list pages by userid
    page = call(client, "GET", f"/notices/{first['id']}/receipts?limit=10", campus["dean01"])[1]
    rest = call(client, "GET", f"/notices/{first['id']}/receipts?limit=10&next={page['next']}", campus["dean01"])[1]
    assert page["unread_userids"] + rest["unread_userids"] == receipts["unread_userids"] and rest["next"] is None
    # and the publisher reads it without a receipt of his own, and finds it among what he published
    status, own = call(client, "GET", f"/notices/{first['id']}", campus["dean01"])
    assert (status, own["read"], own["read_at"]) == (200, None, None)
    published = call(client, "GET", "/notices/published", campus["dean01"])[1]["items"]
    assert [(n["id"], n["recipients"], n["read_count"]) for n in published] == [
        (second["id"], len(CS) - 1, 0), (first["id"], len(CS) - 1, 1)]


@pytest.mark.parametrize(("userid", "notice", "receipts"), [
    ("s001", 200, 404), ("t001", 200, 404), ("dean01", 200, 200), ("s016", 404, 404), ("xg01", 404, 404),
    ("admin", 404, 404), ("leader01", 404, 404)])
def test_a_notice_is_visible_to_its_recipients_and_publisher_only(client: Client, campus: dict[str, str],
                                                                  userid: str, notice: int, receipts: int) -> None:
    # Given a notice of the dean to cs
    _, published = publish(client, campus["dean01"], {"departments": ["cs"]})
    # When each reads it and its receipts
    status, body = call(client, "GET", f"/notices/{published['id']}", campus[userid])
    # Then outsiders learn nothing, not even that it exists
    assert status == notice
    if notice == 404:
        assert body == {"code": "not_found", "message": "No such notice."}
    assert call(client, "GET", f"/notices/{published['id']}/receipts", campus[userid])[0] == receipts
    assert call(client, "GET", "/notices/20261201T000000-000000000000", campus[userid])[0] == 404
    # and an outsider's open records nothing
    assert call(client, "GET", f"/notices/{published['id']}/receipts", campus["dean01"])[1]["read"] == (
        1 if userid in ("s001", "t001") else 0)


def file_release(client: Client, campus: dict[str, str], audience: str) -> dict[str, Any]:
    data = {"title": "《数据结构》课程调整通知", "audience": audience,
            "body": "下周起《数据结构》实验课调整至周四下午，地点实验楼301。"}
    status, app = call(client, "POST", "/services/teaching-release/applications", campus["t001"], {"data": data})
    assert status == 201, app
    assert app["waiting_for"] == "dept_head:cs"
    return app


def test_an_approved_teaching_release_reaches_the_department_students(client: Client,
                                                                      campus: dict[str, str]) -> None:
    # Given a teacher files a teaching release for the students, and the dean approves it
    app = file_release(client, campus, "students")
    assert notice_cards() == {}  # nothing published while it waits
    status, app = call(client, "POST", f"/applications/{app['id']}/decisions", campus["dean01"],
                       {"decision": "approve"})
    assert (status, app["status"]) == (200, "approved")
    # and the hook queued the notice for the fan-out, which runs
    notice_id = f"app-{app['id']}"
    assert notice_cards() == {}
    assert fan_out(client) == [notice_id]

    # Then a teaching-column notice went to the students of cs, and only them
    (card,) = notice_cards()[f"notice:{notice_id}"]
    assert sorted(card["recipients"]) == CS_STUDENTS
    assert card["title"] == "【教学发布专栏】《数据结构》课程调整通知"
    items = call(client, "GET", "/notices?column=teaching", campus["s001"])[1]["items"]
    assert [(n["id"], n["column"], n["title"]) for n in items] == [(notice_id, "teaching", "《数据结构》课程调整通知")]
    assert call(client, "GET", "/notices", campus["s016"])[1]["items"] == []
    assert call(client, "GET", "/notices", campus["fdy01"])[1]["items"] == []
    # and the teacher is its publisher, with the application as its source
    (mine,) = call(client, "GET", "/notices/published", campus["t001"])[1]["items"]
    assert (mine["id"], mine["source"], mine["recipients"], mine["audience"]["member_types"]) == (
        notice_id, app["id"], 15, ["student"])

    # When a student reads it and the hook runs again for the same approval (a retry), twice
    call(client, "GET", f"/notices/{notice_id}", campus["s002"])
    stored = service_hall().applications.get(app["id"])
    notices_area.publish_teaching_release(stored, stored.history[-1])
    notices_area.publish_teaching_release(stored, stored.history[-1])

    # Then nothing is published or queued again, no second card is sent, and the receipt stands
    assert received(NOTICE_FANOUT.name) == []
    assert notice_cards() == {}
    assert len(list(NoticeModel.by_publisher.query("t001"))) == 1
    receipts = call(client, "GET", f"/notices/{notice_id}/receipts", campus["t001"])[1]
    assert (receipts["total"], receipts["read"]) == (15, 1) and "s002" not in receipts["unread_userids"]


@pytest.mark.parametrize(("audience", "expected"), [("staff", ["dean01", "fdy01"]), ("department", CS),
                                                    ("all", CS)])
def test_a_teaching_release_stays_inside_the_department(client: Client, campus: dict[str, str], audience: str,
                                                        expected: list[str]) -> None:
    # Given a release for staff, for the department, or "all" (the dean can approve no further than cs)
    app = file_release(client, campus, audience)
    call(client, "POST", f"/applications/{app['id']}/decisions", campus["dean01"], {"decision": "approve"})
    fan_out(client)
    # Then its card reaches those people of cs, never the teacher who published it
    (card,) = notice_cards()[f"notice:app-{app['id']}"]
    assert sorted(card["recipients"]) == sorted(set(expected) - {"t001"})


def test_a_rejected_or_returned_release_publishes_nothing(client: Client, campus: dict[str, str]) -> None:
    for decision in ("reject", "return"):
        app = file_release(client, campus, "students")
        call(client, "POST", f"/applications/{app['id']}/decisions", campus["dean01"], {"decision": decision})
    assert received(NOTICE_FANOUT.name) == [] and notice_cards() == {}
    assert call(client, "GET", "/notices", campus["s001"])[1]["items"] == []
    assert call(client, "GET", "/notices/published", campus["t001"])[1]["items"] == []


# -- publishing in two steps: the request accepts, the consumer fans out ------------------------
def post_notice(client: Client, token: str, audience: dict[str, list[str]],
                key: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST /notices only (no fan-out): status, body and headers."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
               **({"Idempotency-Key": key} if key is not None else {})}
    body = {"title": "停水通知", "body": "明日8:00-12:00教学楼停水。", "audience": audience}
    response = client.http.post("/notices", body=json.dumps(body), headers=headers)
    return response.status_code, json.loads(response.body), dict(response.headers)


def recipient_rows(notice_id: str, userids: list[str]) -> dict[str, NoticeRecipientModel]:
    """The notice's recipient rows among ``userids`` (each person's rows are one Query)."""
    rows = {}
    for userid in userids:
        for row in NoticeRecipientModel.query(userid):
            if row.notice_id == notice_id:
                assert userid not in rows, "two rows for one recipient"
                rows[userid] = row
    return rows


EVERYONE = sorted({*CS, *FL, "admin", "leader01", "xg01", "hr01", "hq01", "w001"})


def test_the_request_accepts_and_the_consumer_delivers(client: Client, campus: dict[str, str]) -> None:
    # When the dean publishes to his department
    status, accepted, headers = post_notice(client, campus["dean01"], {"departments": ["cs"]})

    # Then the request answers 202 with the notice publishing, before any recipient or card
    assert status == 202, accepted
    assert (accepted["status"], accepted["recipients"], accepted["read_count"]) == ("publishing", 0, 0)
    assert headers["Location"] == f"/notices/{accepted['id']}"
    assert recipient_rows(accepted["id"], CS) == {} and notice_cards() == {}
    assert published(client, campus["dean01"], accepted["id"])["status"] == "publishing"
    # and one fan-out message naming the notice is on the queue
    (message,) = received(NOTICE_FANOUT.name)
    assert json.loads(message) == {"notice_id": accepted["id"]}

    # When the consumer runs with it
    answer = client.lambda_.invoke("fan_out_notice", sqs_event([message]))

    # Then every recipient has one row, one card carries them all, and the notice is published
    assert answer.payload == {"batchItemFailures": []}
    recipients = sorted(set(CS) - {"dean01"})
    assert sorted(recipient_rows(accepted["id"], EVERYONE)) == recipients
    (part,) = notice_cards()[f"notice:{accepted['id']}"]
    assert sorted(part["recipients"]) == recipients
    notice = published(client, campus["dean01"], accepted["id"])
    assert (notice["status"], notice["recipients"], notice["read_count"]) == ("published", len(recipients), 0)
    assert [n["id"] for n in call(client, "GET", "/notices", campus["s001"])[1]["items"]] == [accepted["id"]]

    # When the same message is delivered again (SQS delivers at least once) with another message id
    assert client.lambda_.invoke("fan_out_notice", sqs_event([message])).payload == {"batchItemFailures": []}
    # Then nothing changes and no second card is sent
    assert notice_cards() == {}
    assert published(client, campus["dean01"], accepted["id"]) == notice


def test_a_fan_out_that_dies_part_way_is_finished_by_the_redelivery_with_the_same_rows_and_counts(
        client: Client, campus: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a notice to cs whose first fan-out dies after writing some slices of rows (4 rows a slice)
    status, accepted, _ = post_notice(client, campus["dean01"], {"departments": ["cs"]})
    (message,) = received(NOTICE_FANOUT.name)
    monkeypatch.setattr(notices_db, "WRITE_SLICE", 4)
    real_batch_write, calls = NoticeRecipientModel.batch_write, itertools.count()

    def dying_batch_write(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == 2:
            raise ConnectionError("the table stopped answering")
        return real_batch_write(*args, **kwargs)

    monkeypatch.setattr(NoticeRecipientModel, "batch_write", dying_batch_write)
    with pytest.raises(BatchProcessingError):  # its only record failed: back to the queue for redelivery
        client.lambda_.invoke("fan_out_notice", sqs_event([message]))
    monkeypatch.setattr(NoticeRecipientModel, "batch_write", real_batch_write)
    recipients = sorted(set(CS) - {"dean01"})
    early = recipient_rows(accepted["id"], recipients)
    assert 4 <= len(early) < len(recipients)
    assert notice_cards() == {} and published(client, campus["dean01"], accepted["id"])["status"] == "publishing"
    # and a recipient who already has a row opens the notice meanwhile
    reader = sorted(early)[0]
    status, opened = call(client, "GET", f"/notices/{accepted['id']}", campus[reader])
    assert (status, opened["read"]) == (200, True)

    # When the message comes back, twice (a second copy too)
    for _ in range(2):
        assert client.lambda_.invoke("fan_out_notice", sqs_event([message])).payload == {"batchItemFailures": []}

    # Then each recipient has exactly one row, the early reader's receipt stands and is counted once
    rows = recipient_rows(accepted["id"], EVERYONE)
    assert sorted(rows) == recipients
    assert rows[reader].read_at == opened["read_at"] and rows[reader].unread_notice is None
    assert all(rows[u].unread_notice == accepted["id"] for u in recipients if u != reader)
    notice = published(client, campus["dean01"], accepted["id"])
    assert (notice["status"], notice["recipients"], notice["read_count"]) == ("published", len(recipients), 1)
    receipts = call(client, "GET", f"/notices/{accepted['id']}/receipts", campus["dean01"])[1]
    assert receipts["unread_userids"] == sorted(set(recipients) - {reader})
    # and one card went out, to everyone
    (part,) = notice_cards()[f"notice:{accepted['id']}"]
    assert sorted(part["recipients"]) == recipients


def test_a_batch_reports_only_the_records_that_failed(client: Client, campus: dict[str, str]) -> None:
    # Given a good fan-out message and a malformed one in one batch
    post_notice(client, campus["dean01"], {"departments": ["cs"]})
    (good,) = received(NOTICE_FANOUT.name)
    event = sqs_event([good, json.dumps({"notice_id": "../../etc"})])
    # Then the good one is delivered and only the other is reported (redelivered, then the DLQ)
    answer = client.lambda_.invoke("fan_out_notice", event)
    assert answer.payload == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert list(notice_cards()) == [f"notice:{json.loads(good)['notice_id']}"]


def test_the_same_idempotency_key_answers_with_the_same_notice(client: Client, campus: dict[str, str]) -> None:
    # Given the dean publishes with a key, and his client retries with it (the first answer was lost)
    first = post_notice(client, campus["dean01"], {"departments": ["cs"]}, key="notice-7f3a_1")
    again = post_notice(client, campus["dean01"], {"departments": ["cs"]}, key="notice-7f3a_1")

    # Then both answer 202 with the same notice, the retry marked as a replay
    assert (first[0], again[0]) == (202, 202)
    assert again[1] == first[1] and again[2]["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first[2]
    assert len(list(NoticeModel.by_publisher.query("dean01"))) == 1
    # and however many fan-out messages that queued, one notice is delivered with one card
    assert set(fan_out(client)) == {first[1]["id"]}
    assert len(notice_cards()[f"notice:{first[1]['id']}"]) == 1
    # and a retry after the fan-out answers with the published notice
    status, replay, headers = post_notice(client, campus["dean01"], {"departments": ["cs"]}, key="notice-7f3a_1")
    assert (status, replay["id"], replay["status"], headers["Idempotent-Replayed"]) == (
        202, first[1]["id"], "published", "true")
    assert received(NOTICE_FANOUT.name) == []

    # When the dean publishes with another key, or without one, those are new notices
    other = post_notice(client, campus["dean01"], {"departments": ["cs"]}, key="notice-7f3a_2")[1]
    plain = post_notice(client, campus["dean01"], {"departments": ["cs"]})[1]
    assert len({first[1]["id"], other["id"], plain["id"]}) == 3
    # and the same key from another publisher is theirs alone
    status, theirs, headers = post_notice(client, campus["admin"], {"departments": ["cs"]}, key="notice-7f3a_1")
    assert status == 202 and theirs["id"] != first[1]["id"] and "Idempotent-Replayed" not in headers

    # and a malformed key is refused before anything is stored
    for bad in ("", "x" * 65, "has space", "颜色"):
        status, error, _ = post_notice(client, campus["hr01"], {"types": ["staff"]}, key=bad)
        assert (status, error["fields"]) == (422, {"Idempotency-Key": "1-64 of A-Z a-z 0-9 - _"}), bad
    assert list(NoticeModel.by_publisher.query("hr01")) == []


def test_a_refused_notice_leaves_its_key_free(client: Client, campus: dict[str, str]) -> None:
    status, _, _ = post_notice(client, campus["dean01"], {"departments": ["fl"]}, key="k1")
    assert status == 403
    set_status("hr01", "left")
    status, _, _ = post_notice(client, campus["admin"], {"roles": ["hr"]}, key="k1")
    assert status == 422
    # The corrected notice with the same key is accepted as a new one
    status, accepted, headers = post_notice(client, campus["admin"], {"departments": ["cs"]}, key="k1")
    assert status == 202 and "Idempotent-Replayed" not in headers
    assert [json.loads(m) for m in received(NOTICE_FANOUT.name)] == [{"notice_id": accepted["id"]}]


def test_the_sample_event_in_events_folder_fans_out_its_notice(client: Client, campus: dict[str, str]) -> None:
    # Given the notice the sample names, accepted and still publishing (the dean to cs)
    event = json.loads((PROJECT_DIR / "events" / "sqs_notice_fanout.json").read_text())
    notice_id = json.loads(event["Records"][0]["body"])["notice_id"]
    NoticeRepository().create(Notice(notice_id=notice_id, column="notice", title="停水通知", body="明日教学楼停水。",
                                     publisher="dean01", publisher_department="cs",
                                     audience=Audience(departments=("cs",)), published_at=NOW.isoformat()))
    # When the consumer runs the sample
    assert client.lambda_.invoke("fan_out_notice", event).payload == {"batchItemFailures": []}
    # Then the notice is published to cs with its card
    notice = published(client, campus["dean01"], notice_id)
    assert (notice["status"], notice["recipients"]) == ("published", len(CS) - 1)
    assert sorted(notice_cards()[f"notice:{notice_id}"][0]["recipients"]) == sorted(set(CS) - {"dean01"})
