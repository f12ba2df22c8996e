"""The mailbox to the head of student affairs over HTTP and against moto: who sees a letter, the
status machine with optimistic locking, anonymity, listings and notifications."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.api import mailbox as mailbox_api
from chalicelib.db.mailbox import LetterModel
from chalicelib.domain.access import Actor
from chalicelib.domain.mailbox import Letter
from chalicelib.errors import Conflict
from chalicelib.resources import NOTIFICATIONS, QUEUES
from infra.local.aws import create_queues
from tests.support.identity import call, load_cast, login

PEOPLE = ("s001", "s002", "xg01", "fdy01", "xl01", "admin", "t001", "w001", "hr01")
LETTER = {"subject": "宿舍热水问题", "body": "三号楼的热水经常停，晚上洗不了澡。", "anonymous": False}


def queued_notifications() -> list[dict[str, Any]]:
    """Take every notification off the queue."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=NOTIFICATIONS.name)["QueueUrl"]
    found = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        if not answer.get("Messages"):
            return found
        found += [json.loads(m["Body"]) for m in answer["Messages"]]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for n, m in enumerate(answer["Messages"])])


@pytest.fixture
def tokens(client: Client) -> dict[str, str]:
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    return {userid: login(client, userid) for userid in PEOPLE}


def write(client: Client, tokens: dict[str, str], userid: str = "s001", **changes: Any) -> dict[str, Any]:
    status, letter = call(client, "POST", "/mailbox/letters", tokens[userid], {**LETTER, **changes})
    assert status == 201, letter
    return letter


# -- who sees a letter --------------------------------------------------------------------------------
# 1 = sees it (200), 0 = it does not exist for them (404). Written out from the brief, not computed.
VISIBILITY = {"s001": 1, "xg01": 1, "s002": 0, "fdy01": 0, "xl01": 0, "admin": 0, "t001": 0, "hr01": 0}


@pytest.mark.parametrize(("userid", "sees"), VISIBILITY.items())
def test_a_letter_is_seen_by_its_writer_and_the_owners_only(client: Client, tokens: dict[str, str], userid: str,
                                                           sees: int) -> None:
    # Given s001's letter
    letter = write(client, tokens)
    path = f"/mailbox/letters/{letter['id']}"

    # When each person reads it and lists the mailbox
    read = call(client, "GET", path, tokens[userid])
    listed = [item["id"] for item in call(client, "GET", "/mailbox/letters", tokens[userid])[1]["items"]]

    # Then the writer and the owners see it; for anyone else it does not exist, and they can change nothing
    if sees:
        assert read[0] == 200 and read[1]["body"] == LETTER["body"] and read[1]["writer"]["userid"] == "s001"
        assert listed == [letter["id"]]
    else:
        unknown = call(client, "GET", "/mailbox/letters/no-such-letter", tokens[userid])
        assert call(client, "GET", "/mailbox/letters/" + "a" * 3000, tokens[userid]) == unknown  # over the key limit
        assert read == unknown and read[0] == 404 and read[1]["code"] == "not_found"
        assert listed == []
        for verb, body in (("replies", {"body": "我也是"}), ("close", None)):
            attempt = call(client, "POST", f"{path}/{verb}", tokens[userid], body)
            assert attempt == call(client, "POST", f"/mailbox/letters/no-such-letter/{verb}", tokens[userid], body)
            assert attempt[0] == 404
        # and the letter is untouched
        assert call(client, "GET", path, tokens["s001"])[1]["version"] == 1


def test_writing_is_for_students_and_staff_with_valid_letters(client: Client, tokens: dict[str, str]) -> None:
    # A contractor may not write (a role problem: 403)
    status, body = call(client, "POST", "/mailbox/letters", tokens["w001"], LETTER)
    assert (status, body["code"]) == (403, "forbidden")
    # Validation names each bad field; a client can never set the status, the writer or the version
    for change, field in (({"subject": "长" * 61}, "subject"), ({"body": "字" * 2001}, "body"), ({"body": ""}, "body"),
                          ({"anonymous": "yes"}, "anonymous"), ({"status": "closed"}, "status"),
                          ({"writer": "s002"}, "writer"), ({"version": 7}, "version")):
        status, body = call(client, "POST", "/mailbox/letters", tokens["s001"], {**LETTER, **change})
        assert status == 422 and field in body["fields"], (change, body)
    # The limits themselves are fine
    assert write(client, tokens, subject="长" * 60, body="字" * 2000)["status"] == "new"


# -- the life of a letter -----------------------------------------------------------------------------
def test_new_read_replied_closed(client: Client, tokens: dict[str, str]) -> None:
    # Given s001 writes; the owners are told, without who wrote it or what
    letter = write(client, tokens)
    path = f"/mailbox/letters/{letter['id']}"
    assert (letter["status"], letter["version"], letter["replies"]) == ("new", 1, [])
    told = queued_notifications()
    assert [(n["key"], n["recipients"]) for n in told] == [(f"mailbox:{letter['id']}:new", ["xg01"])]

    # When the writer reads it, nothing changes; when an owner first reads it, it is read (once)
    assert call(client, "GET", path, tokens["s001"])[1]["status"] == "new"
    status, read = call(client, "GET", path, tokens["xg01"])
    assert (status, read["status"], read["version"]) == (200, "read", 2)
    assert call(client, "GET", path, tokens["xg01"])[1]["version"] == 2

    # When the owner replies, it is replied and the writer is told
    status, replied = call(client, "POST", f"{path}/replies", tokens["xg01"], {"body": "已联系后勤，本周修好。"})
    assert (status, replied["status"], replied["version"]) == (201, "replied", 3)
    assert [(n["key"], n["recipients"]) for n in queued_notifications()] == [(f"mailbox:{letter['id']}:reply:1",
                                                                              ["s001"])]
    # the writer sees that student affairs answered, not which member of the office
    mine = call(client, "GET", path, tokens["s001"])[1]
    assert mine["replies"] == [{"at": replied["replies"][0]["at"], "by": "owner", "author": None,
                                "body": "已联系后勤，本周修好。"}]
    assert call(client, "GET", path, tokens["xg01"])[1]["replies"][0]["author"] == "xg01"

    # When the writer follows up, the status stays and the owners are told
    status, followed = call(client, "POST", f"{path}/replies", tokens["s001"], {"body": "谢谢！"})
    assert (status, followed["status"], [r["by"] for r in followed["replies"]]) == (201, "replied", ["owner", "writer"])
    assert [n["key"] for n in queued_notifications()] == [f"mailbox:{letter['id']}:reply:2"]

    # When the writer closes it, it is closed, and nothing more can happen to it
    status, closed = call(client, "POST", f"{path}/close", tokens["s001"])
    assert (status, closed["status"], closed["closed_by"], closed["version"]) == (200, "closed", "writer", 5)
    for userid in ("s001", "xg01"):
        assert call(client, "POST", f"{path}/replies", tokens[userid], {"body": "再说一句"})[0] == 409
        assert call(client, "POST", f"{path}/close", tokens[userid])[0] == 409
    assert queued_notifications() == []  # the writer closing tells nobody


def test_an_owner_may_reply_before_reading_and_closing_tells_the_writer(client: Client,
                                                                         tokens: dict[str, str]) -> None:
    letter = write(client, tokens)
    path = f"/mailbox/letters/{letter['id']}"
    assert call(client, "POST", f"{path}/replies", tokens["xg01"], {"body": "收到"})[1]["status"] == "replied"
    # An owner reading a replied letter changes nothing
    assert call(client, "GET", path, tokens["xg01"])[1]["version"] == 2
    queued_notifications()
    status, closed = call(client, "POST", f"{path}/close", tokens["xg01"])
    assert (status, closed["closed_by"]) == (200, "owner")
    assert [(n["key"], n["recipients"]) for n in queued_notifications()] == [(f"mailbox:{letter['id']}:closed",
                                                                              ["s001"])]


# -- anonymity --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("anonymous", [True, False])
def test_notifications_to_the_owners_never_name_the_writer(client: Client, tokens: dict[str, str],
                                                           anonymous: bool) -> None:
    # Given s001 (王...) writes, anonymously or not, and follows up
    name = call(client, "GET", "/me", tokens["s001"])[1]["user"]["name"]
    assert name
    letter = write(client, tokens, anonymous=anonymous)
    call(client, "POST", f"/mailbox/letters/{letter['id']}/replies", tokens["s001"], {"body": "补充一点"})
    # Then the owners were told twice, and nothing they were sent says who wrote it (or what)
    told = queued_notifications()
    assert [n["recipients"] for n in told] == [["xg01"], ["xg01"]]
    text = json.dumps(told, ensure_ascii=False)
    assert all(secret not in text for secret in ("s001", name, LETTER["subject"], LETTER["body"], "补充一点"))


def test_anonymous_letters_show_their_writer_only_to_the_writer_and_the_owners(client: Client,
                                                                              tokens: dict[str, str]) -> None:
    # Given an anonymous letter
    letter = write(client, tokens, anonymous=True)
    assert letter["anonymous"] is True and letter["writer"]["userid"] == "s001"
    # Then the owners see who wrote it (the brief: hidden from everyone *but* the owners), in the letter and the list
    owner_view = call(client, "GET", f"/mailbox/letters/{letter['id']}", tokens["xg01"])[1]
    assert owner_view["writer"]["userid"] == "s001" and owner_view["writer"]["name"]
    assert call(client, "GET", "/mailbox/letters", tokens["xg01"])[1]["items"][0]["writer"]["userid"] == "s001"
    # and nobody else can reach the letter at all (the rule for a future forwarding is unit-tested)
    assert call(client, "GET", f"/mailbox/letters/{letter['id']}", tokens["s002"])[0] == 404


# -- listings ------------------------------------------------------------------------------------------------
def test_owners_list_everything_newest_first_by_status_and_page_by_page(client: Client,
                                                                       tokens: dict[str, str]) -> None:
    # Given letters from s001, s002 and t001, one of them read and one replied
    first = write(client, tokens, "s001", subject="一")
    second = write(client, tokens, "s002", subject="二")
    third = write(client, tokens, "t001", subject="三")
    call(client, "GET", f"/mailbox/letters/{first['id']}", tokens["xg01"])
    call(client, "POST", f"/mailbox/letters/{second['id']}/replies", tokens["xg01"], {"body": "好"})

    def ids(userid: str, query: str = "") -> list[str]:
        status, page = call(client, "GET", f"/mailbox/letters{query}", tokens[userid])
        assert status == 200, page
        return [item["id"] for item in page["items"]]

    # Then the owner sees all, newest first, and each status on its own
    assert ids("xg01") == [third["id"], second["id"], first["id"]]
    assert ids("xg01", "?status=new") == [third["id"]]
    assert ids("xg01", "?status=read") == [first["id"]]
    assert ids("xg01", "?status=replied") == [second["id"]]
    assert ids("xg01", "?status=closed") == []
    # and writers their own only (with the same filter)
    assert ids("s002") == [second["id"]] and ids("s002", "?status=new") == []
    # Pages of one follow each other without gaps or repeats
    status, page = call(client, "GET", "/mailbox/letters?limit=2", tokens["xg01"])
    assert [i["id"] for i in page["items"]] == [third["id"], second["id"]] and page["next"]
    assert page["items"][1] | {"writer": None} == {
        "id": second["id"], "subject": "二", "anonymous": False, "status": "replied", "version": 2,
        "created_at": second["created_at"], "updated_at": page["items"][1]["updated_at"], "replies": 1,
        "writer": None}
    status, rest = call(client, "GET", f"/mailbox/letters?limit=2&next={page['next']}", tokens["xg01"])
    assert [i["id"] for i in rest["items"]] == [first["id"]] and rest["next"] is None
    # A bad filter or cursor is a 422 with the field named
    assert call(client, "GET", "/mailbox/letters?status=deleted", tokens["xg01"])[1]["fields"].keys() == {"status"}
    assert call(client, "GET", "/mailbox/letters?next=_w", tokens["xg01"])[1]["fields"].keys() == {"next"}


# -- optimistic locking under real concurrency ------------------------------------------------------------------
@dataclass
class Lockstep:
    """The real letter store, except that every writer waits until all have read the letter."""

    inner: Any
    barrier: threading.Barrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save(self, letter: Letter, expected_version: int | None) -> None:
        self.barrier.wait(timeout=30)
        self.inner.save(letter, expected_version)


def test_ten_owners_replying_at_once_give_one_reply_and_nine_conflicts(client: Client,
                                                                       tokens: dict[str, str]) -> None:
    # Given a new letter and ten members of student affairs who all read it, then reply at the same instant
    letter = write(client, tokens)
    box = mailbox_api.mailbox()
    box.letters = Lockstep(box.letters, threading.Barrier(10))
    owners = [Actor(f"xg{n:02d}", "staff", "xgb", roles=frozenset({"student_affairs"})) for n in range(10)]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def reply(owner: Actor) -> None:
        try:
            box.reply(owner, letter["id"], f"{owner.userid} 的回复")
            with lock:
                outcomes["replied"] += 1
        except Conflict:
            with lock:
                outcomes["conflict"] += 1

    threads = [threading.Thread(target=reply, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then one reply is stored, once, and the other nine were told to reload
    assert outcomes == Counter({"replied": 1, "conflict": 9})
    stored = mailbox_api.letter_repository().get(letter["id"])
    assert stored is not None and (stored.status, stored.version, len(stored.replies)) == ("replied", 2, 1)
    assert LetterModel.get(letter["id"]).reply_count == 1
