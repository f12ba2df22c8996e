"""Mailbox rules without AWS: who sees a letter and its writer, the status machine, forwarding to the
offices that handle a letter, what the owners and the offices are told (with in-memory collaborators
and a fixed clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.access import Actor
from chalicelib.domain.mailbox import (
    MAX_FORWARDS,
    MAX_REPLIES,
    Forward,
    Letter,
    LetterSummary,
    Mailbox,
    add_reply,
    can_view,
    capacity,
    check_office,
    check_writer,
    close,
    forward,
    is_office,
    mark_read,
    new_letter,
    offices_held,
    visible_forwards,
    visible_replies,
    writer_visible,
)
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
WRITER = Actor("s001", "student", "cs", class_id="cs2001")
OWNER = Actor("xg01", "staff", "xgb", roles=frozenset({"student_affairs"}))
OTHER_OWNER = Actor("xg02", "staff", "xgb", roles=frozenset({"student_affairs"}))
OTHERS = {
    "another student": Actor("s002", "student", "cs", class_id="cs2001"),
    "their counselor": Actor("fdy01", "staff", "cs", roles=frozenset({"counselor"}), counselor_of=frozenset({"cs2001"})),
    "the psych centre": Actor("xl01", "staff", "xlzx", roles=frozenset({"psych_center"})),
    "the IT centre": Actor("admin", "staff", "nic", roles=frozenset({"it_admin"})),
    "a teacher": Actor("t001", "staff", "cs"),
}
HANDLER = Actor("hq01", "staff", "hq", roles=frozenset({"logistics"}))
DEAN = Actor("dean01", "staff", "cs", roles=frozenset({"dept_head"}), dept_head_of="cs")
OTHER_OFFICE = Actor("hr01", "staff", "rsc", roles=frozenset({"hr"}))


def letter(anonymous: bool = False) -> Letter:
    return new_letter(WRITER, "宿舍热水", "热水经常停。", anonymous, NOW)


def forwarded(anonymous: bool = False, *offices: str) -> Letter:
    current = letter(anonymous)
    for office in offices or ("role:logistics",):
        current = forward(current, OWNER, office, None, NOW)
    return current


# -- who sees what --------------------------------------------------------------------------------
@pytest.mark.parametrize("anonymous", [False, True])
def test_a_letter_is_seen_by_its_writer_and_the_owners_only(anonymous: bool) -> None:
    mine = letter(anonymous)
    assert can_view(mine, WRITER) and can_view(mine, OWNER) and can_view(mine, OTHER_OWNER)
    assert not any(can_view(mine, other) for other in OTHERS.values())


@pytest.mark.parametrize(("viewer", "named", "anonymous_named"), [
    (WRITER, True, True), (OWNER, True, True), *[(o, True, False) for o in OTHERS.values()],
])
def test_anonymity_hides_the_writer_from_everyone_but_the_owners(viewer: Actor, named: bool,
                                                                 anonymous_named: bool) -> None:
    # Given the same letter signed and anonymous; Then only an anonymous one hides its writer, and only
    # from people other than its writer and the owners (say, someone it is forwarded to one day)
    assert writer_visible(letter(anonymous=False), viewer) is named
    assert writer_visible(letter(anonymous=True), viewer) is anonymous_named
    assert writer_visible(letter(anonymous=True).summary(), viewer) is anonymous_named


def test_only_students_and_staff_write() -> None:
    check_writer(WRITER)
    check_writer(OWNER)
    with pytest.raises(Forbidden):
        new_letter(Actor("w001", "third_party", "hq"), "s", "b", False, NOW)


# -- forwarding -----------------------------------------------------------------------------------
# Given a letter forwarded to logistics: who sees it, in which capacity. Written out, not computed.
CAPACITIES = [
    (WRITER, "writer"), (OWNER, "owner"), (OTHER_OWNER, "owner"), (HANDLER, "handler"), (OTHER_OFFICE, None),
    (DEAN, None), *[(other, None) for other in OTHERS.values()],
    # logistics staff who wrote the letter themselves stay its writer
    (Actor("s001", "student", "cs", roles=frozenset({"logistics"})), "writer"),
    # someone who left logistics no longer handles it
    (Actor("hq01", "staff", "hq"), None),
]


@pytest.mark.parametrize(("viewer", "seen_as"), CAPACITIES)
def test_a_forwarded_letter_is_seen_by_the_office_it_went_to(viewer: Actor, seen_as: str | None) -> None:
    assert capacity(forwarded(), viewer) == seen_as
    assert can_view(forwarded(), viewer) is (seen_as is not None)


@pytest.mark.parametrize("anonymous", [True, False])
def test_a_handler_sees_the_writer_of_a_signed_letter_only(anonymous: bool) -> None:
    for viewer in (HANDLER, DEAN):
        assert writer_visible(forwarded(anonymous, "role:logistics", "dept_head:cs"), viewer) is not anonymous
        assert writer_visible(forwarded(anonymous).summary(), viewer) is not anonymous
    # while the owners and the writer always know
    assert writer_visible(forwarded(anonymous), OWNER) and writer_visible(forwarded(anonymous), WRITER)


@pytest.mark.parametrize(("authority", "ok"), [
    ("role:logistics", True), ("role:hr", True), ("role:security", True), ("role:hospital", True),
    ("role:psych_center", True), ("role:it_admin", True), ("dept_head:cs", True), ("dept_head:a.b-c_1", True),
    ("role:student_affairs", False), ("role:leader", False), ("role:counselor", False), ("role:dept_head", False),
    ("role:nobody", False), ("role:", False), ("dept_head:", False), ("dept_head:" + "x" * 33, False),
    ("dept_head:c s", False), ("user:hq01", False), ("counselor:cs2001", False), ("logistics", False),
    ("ROLE:hr", False), ("role:hr ", False),
])
def test_letters_go_to_offices_and_colleges(authority: str, ok: bool) -> None:
    assert is_office(authority) is ok
    if ok:
        check_office(authority)
    else:
        with pytest.raises(Invalid) as refused:
            check_office(authority)
        assert set(refused.value.fields) == {"to"}


def test_the_offices_someone_handles_are_their_office_authorities() -> None:
    assert offices_held(HANDLER) == {"role:logistics"}
    assert offices_held(DEAN) == {"dept_head:cs"}
    assert offices_held(OTHERS["their counselor"]) == frozenset()  # counselor:<class> is not an office
    assert offices_held(OWNER) == frozenset() and offices_held(WRITER) == frozenset()


def test_only_owners_forward_open_letters_once_per_office() -> None:
    # An owner forwards a new letter: it counts as read, with the forwarding on record
    fresh = letter()
    moved = forward(fresh, OWNER, "role:logistics", "请核实", NOW)
    at = NOW.isoformat(timespec="milliseconds")
    assert (moved.status, moved.version, moved.read_at, moved.forwards) == (
        "read", 2, at, (Forward(to="role:logistics", by="xg01", at=at, note="请核实"),))
    # a replied letter stays replied; a second office is added
    replied = add_reply(moved, OWNER, "好", NOW)
    assert forward(replied, OWNER, "dept_head:cs", "", NOW).status == "replied"
    assert forward(replied, OWNER, "dept_head:cs", "", NOW).forwards[-1].note is None
    # The writer and a handler see the letter but may not forward it; anyone else finds nothing
    for refused in (WRITER, HANDLER):
        with pytest.raises(Forbidden):
            forward(moved, refused, "role:hr", None, NOW)
    for outsider in (OTHER_OFFICE, *OTHERS.values()):
        with pytest.raises(NotFound):
            forward(moved, outsider, "role:hr", None, NOW)
    # Not an office, forwarded there already, closed, or too many: refused
    with pytest.raises(Invalid):
        forward(moved, OWNER, "role:leader", None, NOW)
    with pytest.raises(Conflict, match="already"):
        forward(moved, OWNER, "role:logistics", None, NOW)
    with pytest.raises(Conflict, match="closed"):
        forward(close(moved, OWNER, NOW), OWNER, "role:hr", None, NOW)
    full = Letter(**{**vars(fresh), "forwards": tuple(Forward(f"dept_head:d{n}", "xg01", "t")
                                                       for n in range(MAX_FORWARDS))})
    with pytest.raises(Conflict, match="at most"):
        forward(full, OWNER, "role:hr", None, NOW)


def test_handlers_write_notes_to_the_owners_and_only_their_thread_is_theirs() -> None:
    # Given a letter forwarded to logistics and to the computer science college, answered to the writer
    current = add_reply(forwarded(True, "role:logistics", "dept_head:cs"), OWNER, "王同学你好", NOW)
    current = add_reply(current, WRITER, "我是cs2001班的", NOW)
    # When each office writes, and the owner writes to logistics
    current = add_reply(current, HANDLER, "后勤已处理", NOW)
    current = add_reply(current, DEAN, "学院已了解", NOW)
    current = add_reply(current, OWNER, "请周五前完成", NOW, to="role:logistics")
    # Then notes do not move the status, and each one sees what is theirs
    assert current.status == "replied"
    bodies = {viewer.userid: [r.body for r in visible_replies(current, viewer)]
              for viewer in (WRITER, OWNER, HANDLER, DEAN)}
    assert bodies == {"s001": ["王同学你好", "我是cs2001班的"],
                      "xg01": ["王同学你好", "我是cs2001班的", "后勤已处理", "学院已了解", "请周五前完成"],
                      "hq01": ["后勤已处理", "请周五前完成"], "dean01": ["学院已了解"]}
    assert [(r.office, r.by_owner) for r in current.replies[2:]] == [
        ("role:logistics", False), ("dept_head:cs", False), ("role:logistics", True)]
    assert [f.to for f in visible_forwards(current, HANDLER)] == ["role:logistics"]
    assert [f.to for f in visible_forwards(current, OWNER)] == ["role:logistics", "dept_head:cs"]
    assert visible_forwards(current, WRITER) == ()
    assert current.summary().reply_count == 2  # the conversation with the writer


def test_who_may_name_an_office_when_replying() -> None:
    current = forwarded(False, "role:logistics")
    with pytest.raises(Forbidden):
        add_reply(current, WRITER, "x", NOW, to="role:logistics")
    with pytest.raises(Invalid):
        add_reply(current, OWNER, "x", NOW, to="role:hr")  # not forwarded there
    with pytest.raises(Invalid):
        add_reply(current, HANDLER, "x", NOW, to="dept_head:cs")  # not theirs
    assert add_reply(current, HANDLER, "x", NOW, to="role:logistics").replies[-1].office == "role:logistics"
    # someone holding two offices the letter went to picks the thread
    both = Actor("zz01", "staff", "hq", roles=frozenset({"logistics", "security"}))
    two = forward(current, OWNER, "role:security", None, NOW)
    assert add_reply(two, both, "x", NOW).replies[-1].office == "role:logistics"
    assert add_reply(two, both, "x", NOW, to="role:security").replies[-1].office == "role:security"
    # handlers neither mark a letter read nor close it
    new = Letter(**{**vars(current), "status": "new"})
    assert mark_read(new, HANDLER, NOW) is None
    with pytest.raises(Forbidden):
        close(current, HANDLER, NOW)


# -- the status machine -------------------------------------------------------------------------------
def test_an_owners_first_read_marks_it_read_and_nothing_else_does() -> None:
    fresh = letter()
    assert mark_read(fresh, WRITER, NOW) is None  # the writer reading changes nothing
    read = mark_read(fresh, OWNER, NOW)
    assert read is not None and (read.status, read.version, read.read_at) == ("read", 2, NOW.isoformat(
        timespec="milliseconds"))
    assert mark_read(read, OTHER_OWNER, NOW) is None  # read already
    # an owner reading their own letter is the writer reading
    assert mark_read(new_letter(OWNER, "s", "b", False, NOW), OWNER, NOW) is None


@pytest.mark.parametrize("status", ["new", "read", "replied"])
def test_an_owner_reply_makes_it_replied_and_a_follow_up_keeps_the_status(status: str) -> None:
    before = Letter(**{**vars(letter()), "status": status})
    answered = add_reply(before, OWNER, "已联系后勤。", NOW)
    assert (answered.status, answered.version, answered.replies[-1].by_owner) == ("replied", 2, True)
    followed = add_reply(before, WRITER, "还是没有热水。", NOW)
    assert (followed.status, followed.version, followed.replies[-1].by_owner) == (status, 2, False)


def test_closed_is_final_and_outsiders_find_nothing() -> None:
    closed = close(letter(), WRITER, NOW)
    assert (closed.status, closed.closed_by) == ("closed", "writer")
    assert close(letter(), OWNER, NOW).closed_by == "owner"
    for change in (lambda: add_reply(closed, OWNER, "x", NOW), lambda: add_reply(closed, WRITER, "x", NOW),
                   lambda: close(closed, OWNER, NOW)):
        with pytest.raises(Conflict):
            change()
    for other in OTHERS.values():
        with pytest.raises(NotFound):
            add_reply(letter(), other, "x", NOW)
        with pytest.raises(NotFound):
            close(letter(), other, NOW)


def test_a_conversation_has_a_length_limit() -> None:
    long = letter()
    for n in range(MAX_REPLIES):
        long = add_reply(long, OWNER if n % 2 else WRITER, f"{n}", NOW)
    with pytest.raises(Conflict, match="new letter"):
        add_reply(long, WRITER, "one more", NOW)


ACTIONS = st.lists(st.tuples(st.sampled_from(["read", "reply", "note", "close", "forward"]),
                             st.sampled_from([WRITER, OWNER, HANDLER])), max_size=14)


@settings(max_examples=300, deadline=None)
@given(ACTIONS)
def test_any_sequence_of_actions_keeps_the_machine_consistent(actions: list[tuple[str, Actor]]) -> None:
    current = letter(anonymous=True)
    for verb, actor in actions:
        before = current
        try:
            moved = {"read": lambda: mark_read(current, actor, NOW),
                     "reply": lambda: add_reply(current, actor, "text", NOW),
                     "note": lambda: add_reply(current, actor, "note", NOW, to="role:logistics"),
                     "close": lambda: close(current, actor, NOW),
                     "forward": lambda: forward(current, actor, "role:logistics", None, NOW)}[verb]()
        except Conflict:
            # Then only a closed letter (or one forwarded there already) refuses a change
            assert before.status == "closed" or (verb == "forward" and "role:logistics" in before.offices)
            continue
        except NotFound:
            # the handler before the letter reached them, and nobody else
            assert actor is HANDLER and not before.forwards
            continue
        except (Forbidden, Invalid):
            # what the capacity does not allow: a writer naming an office or forwarding, a handler
            # closing or forwarding, an owner writing to an office the letter did not go to
            assert (actor is WRITER and verb in ("note", "forward")) or (actor is HANDLER and verb in (
                "close", "forward")) or (actor is OWNER and verb == "note" and not before.forwards)
            continue
        if moved is None:
            continue
        current = moved
        # every accepted change moves the version by exactly one, never back out of closed
        assert current.version == before.version + 1
        assert before.status != "closed"
    # replied exactly when an owner has answered the writer and it is not closed (notes do not count)
    owner_answered = any(r.by_owner and not r.internal for r in current.replies)
    assert (current.status == "replied") == (owner_answered and current.status != "closed")
    assert current.status in ("new", "read", "replied", "closed")
    assert current.status != "new" or not (owner_answered or current.forwards)
    # and the writer never sees a note, the handler never the conversation nor the writer
    assert not any(r.internal for r in visible_replies(current, WRITER))
    if current.forwards:
        assert all(r.office == "role:logistics" for r in visible_replies(current, HANDLER))
        assert not writer_visible(current, HANDLER)


# -- the mailbox, with in-memory collaborators -------------------------------------------------------
@dataclass
class MemoryLetters:
    stored: dict[str, Letter] = field(default_factory=dict)
    race_once: bool = False  # the next save loses to another owner's change

    def get(self, letter_id: str) -> Letter | None:
        return self.stored.get(letter_id)

    def save(self, changed: Letter, expected_version: int | None, forwarded: Forward | None = None) -> None:
        current = self.stored.get(changed.letter_id)
        if self.race_once:
            self.race_once = False
            assert current is not None
            self.stored[changed.letter_id] = add_reply(current, OTHER_OWNER, "抢先回复", NOW)
            raise Conflict("changed")
        if (current.version if current else None) != expected_version:
            raise Conflict("changed")
        self.stored[changed.letter_id] = changed

    def of_writer(self, writer: str, status: str | None, limit: int,
                  before: str | None) -> tuple[list[LetterSummary], str | None]:
        return [x.summary() for x in self.stored.values() if x.writer == writer][:limit], None

    def in_box(self, status: str | None, limit: int, before: str | None) -> tuple[list[LetterSummary], str | None]:
        return [x.summary() for x in self.stored.values()][:limit], None

    def forwarded_to(self, offices: list[str], status: str | None, limit: int,
                     before: str | None) -> tuple[list[Letter], str | None]:
        return [x for x in self.stored.values() if x.offices & set(offices)][:limit], None


class People:
    def get_people(self, userids: list[str]) -> dict[str, Any]:
        return {u: SimpleNamespace(name="王小明") for u in userids if u == "s001"}

    def holders(self, authority: str) -> list[str]:
        # s001 works part-time for logistics too: they must never be told of their own letter as its handler
        return {"role:student_affairs": ["xg01", "xg02"], "role:logistics": ["hq01", "s001"]}.get(authority, [])


@pytest.fixture
def mailbox() -> tuple[Mailbox, MemoryLetters, list[Any]]:
    store, sent = MemoryLetters(), []
    return Mailbox(letters=store, people=People(), notify=lambda n: sent.append(n) or 1, clock=lambda: NOW), store, sent


@pytest.mark.parametrize("anonymous", [False, True])
def test_owners_are_told_of_a_letter_without_the_writer_or_its_text(mailbox: Any, anonymous: bool) -> None:
    box, _, sent = mailbox
    # When s001 writes (signed or not)
    seen = box.write(WRITER, "宿舍热水", "热水经常停。", anonymous)
    # Then both owners are told, keyed by the letter id, and nothing in the message says who or what
    assert [(n.key, n.recipients) for n in sent] == [(f"mailbox:{seen.letter.letter_id}:new", ("xg01", "xg02"))]
    text = sent[0].key + sent[0].title + sent[0].body
    assert all(secret not in text for secret in ("s001", "王小明", "宿舍热水", "热水经常停"))
    # and the owners see who wrote it (the brief: anonymity hides the writer from everyone *but* them)
    listed = box.list_letters(OWNER, None, 10, None).items[0]
    assert (listed.writer, listed.writer_name, listed.authors_shown) == ("s001", "王小明", True)


def test_a_reply_by_an_owner_tells_the_writer_and_a_follow_up_the_owners(mailbox: Any) -> None:
    box, _, sent = mailbox
    letter_id = box.write(WRITER, "宿舍热水", "热水经常停。", True).letter.letter_id
    sent.clear()
    box.reply(OWNER, letter_id, "已联系后勤。")
    box.reply(WRITER, letter_id, "谢谢！")
    assert [(n.key, n.recipients) for n in sent] == [(f"mailbox:{letter_id}:reply:1", ("s001",)),
                                                     (f"mailbox:{letter_id}:reply:2", ("xg01", "xg02"))]
    assert all("s001" not in n.body and "王小明" not in n.body for n in sent)
    # the writer sees that student affairs answered, not which owner
    assert box.read(WRITER, letter_id).authors_shown is False


def test_an_owner_opening_a_letter_another_owner_just_answered_sees_the_answer(mailbox: Any) -> None:
    # Given a new letter, and another owner answering it while xg01 opens it
    box, store, _ = mailbox
    letter_id = box.write(WRITER, "s", "b", False).letter.letter_id
    store.race_once = True
    # When xg01 opens it, Then the read does not fail: it shows the letter as it is now
    seen = box.read(OWNER, letter_id)
    assert (seen.letter.status, [r.body for r in seen.letter.replies]) == ("replied", ["抢先回复"])


def test_forwarding_tells_the_office_but_never_the_writer_and_nobody_can_hold_nothing(mailbox: Any) -> None:
    box, store, sent = mailbox
    letter_id = box.write(WRITER, "宿舍热水", "热水经常停。", True).letter.letter_id
    sent.clear()
    # When an owner forwards it to an office nobody holds, Then it is refused and nothing is stored
    with pytest.raises(Invalid) as refused:
        box.forward(OWNER, letter_id, "dept_head:fl", None)
    assert refused.value.fields == {"to": "nobody holds it at the moment"}
    assert store.stored[letter_id].forwards == () and sent == []
    # When they forward it to logistics (which the writer works for too)
    seen = box.forward(OWNER, letter_id, "role:logistics", "请核实")
    # Then the office is told, the writer is not, and nothing names the writer or the letter
    assert [(n.key, n.recipients) for n in sent] == [(f"mailbox:{letter_id}:forward:1", ("hq01",))]
    assert all(secret not in sent[0].body for secret in ("s001", "王小明", "宿舍热水", "热水经常停", "请核实"))
    assert (seen.capacity, seen.letter.status, [f.to for f in seen.forwards]) == ("owner", "read", ["role:logistics"])


def test_a_handler_sees_and_lists_an_anonymous_letter_without_its_writer(mailbox: Any) -> None:
    box, _, sent = mailbox
    letter_id = box.write(WRITER, "宿舍热水", "热水经常停。", True).letter.letter_id
    box.reply(OWNER, letter_id, "王小明同学你好")
    box.forward(OWNER, letter_id, "role:logistics", None)
    sent.clear()
    # When the handler reads, lists and answers
    read = box.read(HANDLER, letter_id)
    listed = box.list_letters(HANDLER, None, 10, None, forwarded=True).items
    answered = box.reply(HANDLER, letter_id, "已处理")
    # Then no writer anywhere, and only their thread
    for seen in (read, *listed, answered):
        assert (seen.capacity, seen.writer, seen.writer_name, seen.authors_shown) == ("handler", None, None, True)
    assert read.replies == () and [r.body for r in answered.replies] == ["已处理"]
    assert [s.reply_count for s in listed] == [0] and answered.reply_count == 1
    # and the owners (not the writer) are told of the note
    assert [(n.key, n.recipients) for n in sent] == [(f"mailbox:{letter_id}:reply:2", ("xg01", "xg02"))]
    # Nothing is forwarded to people without an office, and the owners' own lists are unchanged
    assert box.list_letters(WRITER, None, 10, None, forwarded=True).items == []
    mine = box.list_letters(WRITER, None, 10, None).items
    assert [(s.capacity, s.reply_count, s.writer) for s in mine] == [("writer", 1, "s001")]


def test_an_owners_note_tells_the_office_and_not_the_writer(mailbox: Any) -> None:
    box, _, sent = mailbox
    letter_id = box.write(WRITER, "宿舍热水", "热水经常停。", False).letter.letter_id
    box.forward(OWNER, letter_id, "role:logistics", None)
    sent.clear()
    seen = box.reply(OWNER, letter_id, "请周五前完成", to="role:logistics")
    assert [(n.key, n.recipients) for n in sent] == [(f"mailbox:{letter_id}:reply:1", ("hq01",))]
    assert seen.letter.status == "read"
    assert box.read(WRITER, letter_id).replies == ()
