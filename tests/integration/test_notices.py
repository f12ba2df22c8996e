"""Notices and the teaching release column over HTTP: who may publish to whom, who receives a
notice (and the WeCom card), read receipts, and approved teaching releases published by the hook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import notices as notices_area
from chalicelib.api.deps import hall as service_hall
from chalicelib.db.directory import DirectoryRepository, PersonModel
from chalicelib.db.notices import NoticeModel, NoticeRecipientModel
from chalicelib.resources import NOTIFICATIONS, QUEUES
from infra.local.aws import create_queues
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


def queued_notifications() -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=NOTIFICATIONS.name)["QueueUrl"]
    found = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        if not answer.get("Messages"):
            return found
        found += [json.loads(m["Body"]) for m in answer["Messages"]]


def notice_cards() -> dict[str, list[dict[str, Any]]]:
    """The notices' card parts on the queue, by notification key."""
    cards: dict[str, list[dict[str, Any]]] = {}
    for part in queued_notifications():
        if part["key"].startswith("notice:"):
            cards.setdefault(part["key"], []).append(part)
    return cards


def publish(client: Client, token: str, audience: dict[str, list[str]], **extra: Any) -> tuple[int, Any]:
    body = {"title": "关于期末考试安排的通知", "body": "各位同学：期末考试将于第18周进行，请做好准备。",
            "audience": audience, **extra}
    return call(client, "POST", "/notices", token, body)


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
    assert status == 201, notice
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
    assert status == 201, body
    assert body["publisher"] == userid and body["recipients"] > 0


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
    assert notice_cards() == {}


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

    # Then a teaching-column notice went to the students of cs, and only them
    notice_id = f"app-{app['id']}"
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

    # Then nothing is published again, no second card is sent, and the receipt stands
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
    # Then its card reaches those people of cs, never the teacher who published it
    (card,) = notice_cards()[f"notice:app-{app['id']}"]
    assert sorted(card["recipients"]) == sorted(set(expected) - {"t001"})


def test_a_rejected_or_returned_release_publishes_nothing(client: Client, campus: dict[str, str]) -> None:
    for decision in ("reject", "return"):
        app = file_release(client, campus, "students")
        call(client, "POST", f"/applications/{app['id']}/decisions", campus["dean01"], {"decision": decision})
    assert notice_cards() == {}
    assert call(client, "GET", "/notices", campus["s001"])[1]["items"] == []
    assert call(client, "GET", "/notices/published", campus["t001"])[1]["items"] == []
