"""The mailbox to the head of student affairs over HTTP and against moto: who sees a letter, the
status machine with optimistic locking, forwarding to the offices that handle a letter, anonymity,
listings and notifications."""

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
from chalicelib.db.mailbox import ForwardModel, LetterModel
from chalicelib.domain.access import Actor
from chalicelib.domain.mailbox import Letter
from chalicelib.domain.mailbox import forward as forward_rule
from chalicelib.errors import Conflict
from chalicelib.resources import QUEUES
from infra.local.aws import create_queues
from tests.support.hall import queued_notifications
from tests.support.identity import call, load_cast, login

PEOPLE = ("s001", "s002", "xg01", "fdy01", "xl01", "admin", "t001", "w001", "hr01", "hq01", "bw01", "dean01")
LETTER = {"subject": "宿舍热水问题", "body": "三号楼的热水经常停，晚上洗不了澡。", "anonymous": False}


@pytest.fixture
def tokens(client: Client) -> dict[str, str]:
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    return {userid: login(client, userid) for userid in PEOPLE}


def write(client: Client, tokens: dict[str, str], userid: str = "s001", **changes: Any) -> dict[str, Any]:
    status, letter = call(client, "POST", "/mailbox/letters", tokens[userid], {**LETTER, **changes})
    assert status == 201, letter
    return letter


def forward(client: Client, tokens: dict[str, str], letter_id: str, to: str, note: str | None = None,
            userid: str = "xg01") -> dict[str, Any]:
    status, letter = call(client, "POST", f"/mailbox/letters/{letter_id}/forwards", tokens[userid],
                          {"to": to, "note": note})
    assert status == 201, letter
    return letter


def listed_ids(client: Client, token: str, query: str = "") -> list[str]:
    status, page = call(client, "GET", f"/mailbox/letters{query}", token)
    assert status == 200, page
    return [item["id"] for item in page["items"]]


# -- who sees a letter --------------------------------------------------------------------------------
# Given s001's letter, forwarded by student affairs to logistics. 1 = sees it (200), 0 = it does not
# exist for them (404). Written out from the brief, not computed.
VISIBILITY = {
    "s001": 1,  # the writer
    "xg01": 1,  # an owner (student affairs)
    "hq01": 1,  # a handler: holds role:logistics, which the letter was forwarded to
    "hr01": 0, "bw01": 0, "xl01": 0,  # other offices' staff
    "dean01": 0,  # a college head the letter was not forwarded to
    "fdy01": 0,  # the writer's own counselor
    "s002": 0,  # another student
    "admin": 0,  # the IT centre
    "t001": 0,  # a teacher
}


@pytest.mark.parametrize(("userid", "sees"), VISIBILITY.items())
def test_a_letter_is_seen_by_its_writer_the_owners_and_the_office_it_was_forwarded_to(
        client: Client, tokens: dict[str, str], userid: str, sees: int) -> None:
    # Given s001's letter, forwarded to logistics
    letter = write(client, tokens)
    path = f"/mailbox/letters/{letter['id']}"
    forward(client, tokens, letter["id"], "role:logistics", "请核实三号楼热水")

    # When each person reads it and lists the mailbox (their own view, and what was forwarded to them)
    read = call(client, "GET", path, tokens[userid])
    listed = listed_ids(client, tokens[userid]) + listed_ids(client, tokens[userid], "?forwarded=true")

    # Then the writer, the owners and the handler see it (a signed letter: with its writer); for
    # anyone else it does not exist, and they can change nothing
    if sees:
        assert read[0] == 200 and read[1]["body"] == LETTER["body"] and read[1]["writer"]["userid"] == "s001"
        assert listed == [letter["id"]]
    else:
        unknown = call(client, "GET", "/mailbox/letters/no-such-letter", tokens[userid])
        assert call(client, "GET", "/mailbox/letters/" + "a" * 3000, tokens[userid]) == unknown  # over the key limit
        assert read == unknown and read[0] == 404 and read[1]["code"] == "not_found"
        assert listed == []
        for verb, body in (("replies", {"body": "我也是"}), ("close", None), ("forwards", {"to": "role:hr"})):
            attempt = call(client, "POST", f"{path}/{verb}", tokens[userid], body)
            assert attempt == call(client, "POST", f"/mailbox/letters/no-such-letter/{verb}", tokens[userid], body)
            assert attempt[0] == 404
        # and the letter is untouched (the forwarding was its one change)
        assert call(client, "GET", path, tokens["s001"])[1]["version"] == 2


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
    assert write(client, tokens)["viewing_as"] == "writer"


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
    assert mine["replies"] == [{"at": replied["replies"][0]["at"], "by": "owner", "author": None, "office": None,
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


@pytest.mark.parametrize("anonymous", [True, False])
def test_a_handler_never_learns_who_wrote_an_anonymous_letter(client: Client, tokens: dict[str, str],
                                                              anonymous: bool) -> None:
    # Given s001 (王...) writes, anonymously or not; the owner answers the writer by name, then
    # forwards the letter to logistics
    me = call(client, "GET", "/me", tokens["s001"])[1]["user"]
    name, department, class_id = me["name"], me["department"], me["class_id"]
    assert name and department and class_id
    letter = write(client, tokens, anonymous=anonymous)
    assert letter["anonymous"] is anonymous and letter["writer"]["userid"] == "s001"
    path = f"/mailbox/letters/{letter['id']}"
    call(client, "POST", f"{path}/replies", tokens["xg01"], {"body": f"{name}同学你好，已转后勤处。"})
    call(client, "POST", f"{path}/replies", tokens["s001"], {"body": f"我是{class_id}班的，谢谢"})
    queued_notifications()
    forward(client, tokens, letter["id"], "role:logistics", "请核实三号楼热水")

    # Then the owners see who wrote it, in the letter and the list (hidden from everyone *but* them)
    owner_view = call(client, "GET", path, tokens["xg01"])[1]
    assert owner_view["writer"] == {"userid": "s001", "name": name}
    assert call(client, "GET", "/mailbox/letters", tokens["xg01"])[1]["items"][0]["writer"]["userid"] == "s001"

    # When the handler is told, opens it, lists it and answers the owners
    told = queued_notifications()
    status, detail = call(client, "GET", path, tokens["hq01"])
    assert status == 200 and detail["viewing_as"] == "handler"
    status, page = call(client, "GET", "/mailbox/letters?forwarded=true", tokens["hq01"])
    assert status == 200 and [i["id"] for i in page["items"]] == [letter["id"]]
    status, answered = call(client, "POST", f"{path}/replies", tokens["hq01"], {"body": "已安排维修。"})
    assert status == 201
    told += queued_notifications()
    seen = [detail, page, answered]

    # Then they saw the letter and their thread, never the conversation with the writer
    assert (detail["subject"], detail["body"], detail["replies"]) == (LETTER["subject"], LETTER["body"], [])
    assert [(r["by"], r["office"], r["author"]) for r in answered["replies"]] == [("handler", "role:logistics",
                                                                                   "hq01")]
    assert [f["to"] for f in detail["forwards"]] == ["role:logistics"]
    assert [n["recipients"] for n in told] == [["hq01"], ["xg01"]]
    everything = json.dumps([seen, told], ensure_ascii=False)
    assert name not in json.dumps(told, ensure_ascii=False) and "s001" not in json.dumps(told)
    if anonymous:
        # and an anonymous letter's writer nowhere: no userid, no name, no department or class
        assert detail["writer"] is None and page["items"][0]["writer"] is None and answered["writer"] is None
        assert all(secret not in everything for secret in ("s001", name, class_id, '"department"')), everything
    else:
        # while a signed letter shows its writer to the handler too
        assert detail["writer"] == page["items"][0]["writer"] == {"userid": "s001", "name": name}
        assert "department" not in everything and class_id not in everything  # the writer conversation stays private


# -- forwarding ------------------------------------------------------------------------------------------
def test_forwarding_to_an_office_that_answers_the_owners_not_the_writer(client: Client,
                                                                        tokens: dict[str, str]) -> None:
    # Given s001's new letter
    letter = write(client, tokens)
    path = f"/mailbox/letters/{letter['id']}"
    queued_notifications()

    # When an owner forwards it to logistics, with a note
    forwarded = forward(client, tokens, letter["id"], "role:logistics", "请核实三号楼热水")

    # Then it counts as read, the forwarding is on record, and logistics is told (without who or what)
    assert (forwarded["status"], forwarded["version"]) == ("read", 2)
    assert [(f["to"], f["by"], f["note"]) for f in forwarded["forwards"]] == [("role:logistics", "xg01",
                                                                               "请核实三号楼热水")]
    told = queued_notifications()
    assert [(n["key"], n["recipients"]) for n in told] == [(f"mailbox:{letter['id']}:forward:1", ["hq01"])]
    assert all(secret not in json.dumps(told, ensure_ascii=False) for secret in (LETTER["subject"], LETTER["body"],
                                                                                 "请核实"))
    # and the writer sees nothing of it
    mine = call(client, "GET", path, tokens["s001"])[1]
    assert (mine["forwards"], mine["status"], mine["viewing_as"]) == ([], "read", "writer")

    # When the handler answers, Then the owners are told and see the note; the writer neither
    status, noted = call(client, "POST", f"{path}/replies", tokens["hq01"], {"body": "已安排周五维修。"})
    assert (status, noted["status"], noted["version"]) == (201, "read", 3)
    assert [(n["key"], n["recipients"]) for n in queued_notifications()] == [(f"mailbox:{letter['id']}:reply:1",
                                                                              ["xg01"])]
    owner_view = call(client, "GET", path, tokens["xg01"])[1]
    assert [(r["by"], r["author"], r["office"], r["body"]) for r in owner_view["replies"]] == [
        ("handler", "hq01", "role:logistics", "已安排周五维修。")]
    mine = call(client, "GET", path, tokens["s001"])[1]
    assert mine["replies"] == [] and listed_summary(client, tokens["s001"])["replies"] == 0

    # When the owner answers the handler (to) and then the writer, each goes to its own audience
    status, _ = call(client, "POST", f"{path}/replies", tokens["xg01"], {"body": "请周五前完成", "to": "role:logistics"})
    assert status == 201
    assert [n["recipients"] for n in queued_notifications()] == [["hq01"]]
    call(client, "POST", f"{path}/replies", tokens["xg01"], {"body": "已转后勤处，周五修好。"})
    assert [n["recipients"] for n in queued_notifications()] == [["s001"]]
    handler_view = call(client, "GET", path, tokens["hq01"])[1]
    assert [(r["by"], r["body"]) for r in handler_view["replies"]] == [("handler", "已安排周五维修。"),
                                                                       ("owner", "请周五前完成")]
    mine = call(client, "GET", path, tokens["s001"])[1]
    assert ([(r["by"], r["body"], r["office"]) for r in mine["replies"]], mine["status"]) == (
        [("owner", "已转后勤处，周五修好。", None)], "replied")
    assert listed_summary(client, tokens["s001"])["replies"] == 1
    assert listed_summary(client, tokens["hq01"], "?forwarded=true")["replies"] == 2
    assert len(call(client, "GET", path, tokens["xg01"])[1]["replies"]) == 3

    # What the handler and the writer may not do (they see the letter: 403, not 404)
    for userid, verb, body in (("hq01", "close", None), ("hq01", "forwards", {"to": "role:hr"}),
                               ("s001", "forwards", {"to": "role:hr"}),
                               ("s001", "replies", {"body": "x", "to": "role:logistics"})):
        status, refused = call(client, "POST", f"{path}/{verb}", tokens[userid], body)
        assert (status, refused["code"]) == (403, "forbidden"), (userid, verb)
    # An owner's note to an office the letter did not go to, or a handler naming another office: 422
    for userid, to in (("xg01", "role:hr"), ("hq01", "role:hr")):
        status, refused = call(client, "POST", f"{path}/replies", tokens[userid], {"body": "x", "to": to})
        assert (status, refused["fields"].keys()) == (422, {"to"})

    # Forwarded there already: 409; once closed, no more forwarding or notes, but it can still be read
    assert call(client, "POST", f"{path}/forwards", tokens["xg01"], {"to": "role:logistics"})[0] == 409
    assert call(client, "POST", f"{path}/close", tokens["xg01"])[0] == 200
    assert call(client, "POST", f"{path}/forwards", tokens["xg01"], {"to": "role:hr"})[0] == 409
    assert call(client, "POST", f"{path}/replies", tokens["hq01"], {"body": "补充"})[0] == 409
    assert call(client, "GET", path, tokens["hq01"])[1]["status"] == "closed"


def listed_summary(client: Client, token: str, query: str = "") -> dict[str, Any]:
    status, page = call(client, "GET", f"/mailbox/letters{query}", token)
    assert status == 200 and len(page["items"]) == 1, page
    return page["items"][0]


def test_each_office_sees_its_own_forwarding_and_thread_only(client: Client, tokens: dict[str, str]) -> None:
    # Given an anonymous letter forwarded to logistics and to the head of the computer science college
    letter = write(client, tokens, anonymous=True)
    path = f"/mailbox/letters/{letter['id']}"
    forward(client, tokens, letter["id"], "role:logistics", "后勤请核实")
    both = forward(client, tokens, letter["id"], "dept_head:cs", "学院请关注")
    assert [f["to"] for f in both["forwards"]] == ["role:logistics", "dept_head:cs"]
    # When each office answers
    call(client, "POST", f"{path}/replies", tokens["hq01"], {"body": "后勤已处理"})
    call(client, "POST", f"{path}/replies", tokens["dean01"], {"body": "学院已了解"})
    # Then each sees its own forwarding and thread, not where else the letter went or what they said
    for userid, office, note, body in (("hq01", "role:logistics", "后勤请核实", "后勤已处理"),
                                       ("dean01", "dept_head:cs", "学院请关注", "学院已了解")):
        view = call(client, "GET", path, tokens[userid])[1]
        assert [(f["to"], f["note"]) for f in view["forwards"]] == [(office, note)]
        assert [(r["office"], r["body"]) for r in view["replies"]] == [(office, body)]
        assert view["writer"] is None
    # and the owners see both
    owner_view = call(client, "GET", path, tokens["xg01"])[1]
    assert [r["office"] for r in owner_view["replies"]] == ["role:logistics", "dept_head:cs"]


# Each target, and why it is refused (checked in one test: every case needs the same letter only).
BAD_TARGETS = {
    "role:student_affairs": "one of",  # the owners themselves
    "role:leader": "one of",  # leaders see aggregates only
    "role:counselor": "one of",  # every counselor on campus
    "role:dept_head": "one of",  # every college head
    "role:janitor": "one of",
    "user:hq01": "one of",  # offices, not people
    "counselor:cs2001": "one of",
    "logistics": "one of",
    "dept_head:nowhere": "nobody holds it",
    "dept_head:fl": "nobody holds it",  # a real college without a head in the directory
}


def test_forward_targets_are_offices_someone_holds(client: Client, tokens: dict[str, str]) -> None:
    letter = write(client, tokens)
    for to, reason in BAD_TARGETS.items():
        status, body = call(client, "POST", f"/mailbox/letters/{letter['id']}/forwards", tokens["xg01"], {"to": to})
        assert status == 422 and reason in body["fields"]["to"], (to, body)
        assert list(ForwardModel.query(to)) == []
    # and nothing changed; every office form that someone holds is accepted
    assert call(client, "GET", f"/mailbox/letters/{letter['id']}", tokens["s001"])[1]["version"] == 1
    for to in ("role:hr", "role:hospital", "role:security", "role:logistics", "role:psych_center", "role:it_admin",
               "dept_head:cs"):
        forward(client, tokens, letter["id"], to)
    assert call(client, "GET", f"/mailbox/letters/{letter['id']}", tokens["admin"])[1]["viewing_as"] == "handler"


def test_forwarding_refuses_bad_bodies(client: Client, tokens: dict[str, str]) -> None:
    letter = write(client, tokens)
    for body, field in (({"to": ""}, "to"), ({"to": "role:" + "x" * 60}, "to"), ({"note": "x"}, "to"),
                        ({"to": "role:hr", "note": "长" * 501}, "note"), ({"to": "role:hr", "status": "closed"},
                                                                          "status")):
        status, answer = call(client, "POST", f"/mailbox/letters/{letter['id']}/forwards", tokens["xg01"], body)
        assert status == 422 and field in answer["fields"], (body, answer)


def test_a_forwarding_that_loses_a_race_writes_nothing(client: Client, tokens: dict[str, str]) -> None:
    # Given a letter read by one owner while another replies to it
    letter = write(client, tokens)
    box = mailbox_api.mailbox()
    owner = Actor("xg01", "staff", "xgb", roles=frozenset({"student_affairs"}))
    stale = mailbox_api.letter_repository().get(letter["id"])
    assert stale is not None
    box.reply(owner, letter["id"], "收到")
    # When the first owner's forwarding is written against the version it read
    moved = forward_rule(stale, owner, "role:logistics", None, box.clock())
    with pytest.raises(Conflict):
        mailbox_api.letter_repository().save(moved, stale.version, forwarded=moved.forwards[-1])
    # Then neither the letter nor the office's list changed: they are one transaction
    assert mailbox_api.letter_repository().get(letter["id"]).forwards == ()
    assert list(ForwardModel.query("role:logistics")) == []
    assert call(client, "GET", f"/mailbox/letters/{letter['id']}", tokens["hq01"])[0] == 404


def test_a_handlers_list_merges_their_offices_newest_first_by_status_and_page_by_page(
        client: Client, tokens: dict[str, str]) -> None:
    # Given four letters (oldest first): 1 and 3 forwarded to logistics, 2 and 3 to security, 4 to nobody;
    # 3 answered by the owners
    letters = [write(client, tokens, "s001" if n % 2 else "s002", subject=f"第{n}封")["id"] for n in (1, 2, 3, 4)]
    for index, office in ((0, "role:logistics"), (1, "role:security"), (2, "role:logistics"),
                          (2, "role:security")):
        forward(client, tokens, letters[index], office)
    call(client, "POST", f"/mailbox/letters/{letters[2]}/replies", tokens["xg01"], {"body": "好"})
    first, second, third, _ = letters

    # Then logistics and security each list theirs, newest first, and filter by status
    assert listed_ids(client, tokens["hq01"], "?forwarded=true") == [third, first]
    assert listed_ids(client, tokens["bw01"], "?forwarded=true") == [third, second]
    assert listed_ids(client, tokens["hq01"], "?forwarded=true&status=read") == [first]
    assert listed_ids(client, tokens["hq01"], "?forwarded=true&status=new") == []
    # and someone holding no office finds nothing forwarded to them (the owners included)
    assert listed_ids(client, tokens["s001"], "?forwarded=true") == []
    assert listed_ids(client, tokens["xg01"], "?forwarded=true") == []
    status, refused = call(client, "GET", "/mailbox/letters?forwarded=maybe", tokens["hq01"])
    assert (status, refused["fields"].keys()) == (422, {"forwarded"})

    # When someone holding both offices pages through, one letter a page
    both = Actor("zz01", "staff", "hq", roles=frozenset({"logistics", "security"}))
    box = mailbox_api.mailbox()
    seen, position = [], None
    for _ in range(5):
        page = box.list_letters(both, None, 1, position, forwarded=True)
        seen += [s.letter.letter_id for s in page.items]
        position = page.next
        if position is None:
            break
    # Then each of their letters comes once, newest first, and a filtered list pages the same way
    assert seen == [third, second, first]
    page = box.list_letters(both, "read", 1, None, forwarded=True)
    assert [s.letter.letter_id for s in page.items] == [second] and page.next
    rest = box.list_letters(both, "read", 1, page.next, forwarded=True)
    assert [s.letter.letter_id for s in rest.items] == [first]
    assert rest.next is None


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
