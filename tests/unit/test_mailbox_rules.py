"""Mailbox rules without AWS: who sees a letter and its writer, the status machine, what the owners
are told (with in-memory collaborators and a fixed clock)."""

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
    MAX_REPLIES,
    Letter,
    LetterSummary,
    Mailbox,
    add_reply,
    can_view,
    check_writer,
    close,
    mark_read,
    new_letter,
    writer_visible,
)
from chalicelib.errors import Conflict, Forbidden, NotFound

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


def letter(anonymous: bool = False) -> Letter:
    return new_letter(WRITER, "宿舍热水", "热水经常停。", anonymous, NOW)


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


ACTIONS = st.lists(st.tuples(st.sampled_from(["read", "reply", "close"]), st.sampled_from([WRITER, OWNER])),
                   max_size=12)


@settings(max_examples=200, deadline=None)
@given(ACTIONS)
def test_any_sequence_of_actions_keeps_the_machine_consistent(actions: list[tuple[str, Actor]]) -> None:
    current = letter()
    for verb, actor in actions:
        before = current
        try:
            moved = {"read": lambda: mark_read(current, actor, NOW),
                     "reply": lambda: add_reply(current, actor, "text", NOW),
                     "close": lambda: close(current, actor, NOW)}[verb]()
        except Conflict:
            # Then only a closed letter (or a full conversation) refuses a change
            assert before.status == "closed"
            continue
        if moved is None:
            continue
        current = moved
        # every accepted change moves the version by exactly one, never back out of closed
        assert current.version == before.version + 1
        assert before.status != "closed"
    # replied exactly when an owner has answered and it is not closed
    owner_answered = any(r.by_owner for r in current.replies)
    assert (current.status == "replied") == (owner_answered and current.status != "closed")
    assert current.status in ("new", "read", "replied", "closed")
    assert current.status != "new" or not owner_answered


# -- the mailbox, with in-memory collaborators -------------------------------------------------------
@dataclass
class MemoryLetters:
    stored: dict[str, Letter] = field(default_factory=dict)
    race_once: bool = False  # the next save loses to another owner's change

    def get(self, letter_id: str) -> Letter | None:
        return self.stored.get(letter_id)

    def save(self, changed: Letter, expected_version: int | None) -> None:
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


class People:
    def get_people(self, userids: list[str]) -> dict[str, Any]:
        return {u: SimpleNamespace(name="王小明") for u in userids if u == "s001"}

    def holders(self, authority: str) -> list[str]:
        return ["xg01", "xg02"] if authority == "role:student_affairs" else []


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
