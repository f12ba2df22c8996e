"""Notices: who may publish to whom, audience resolution, the teaching column mapping, the card, and
the two-step publishing (accept, then fan out) with its idempotency."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pytest

from chalicelib.catalogue import shipped_definitions
from chalicelib.domain.access import Actor
from chalicelib.domain.notices import (
    Audience,
    Delivery,
    Draft,
    Notice,
    NoticeBoard,
    card,
    check_audience,
    check_may_publish,
    reaches_anyone,
    resolve_recipients,
    summary,
    teaching_notice,
)
from chalicelib.domain.notifications import Notification
from chalicelib.domain.workflow import Applicant, ChainStep, became_approved, decide, file_application
from chalicelib.errors import Conflict, Forbidden, Invalid

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


def actor(*roles: str, userid: str = "u1", dept_head_of: str | None = None) -> Actor:
    return Actor(userid=userid, person_type="staff", department=dept_head_of or "nic", roles=frozenset(roles),
                 dept_head_of=dept_head_of)


DEAN = actor("dept_head", dept_head_of="cs")
XG = actor("student_affairs")
HR = actor("hr")
ADMIN = actor("it_admin")
LEADER = actor("leader")

ALLOWED = [
    (DEAN, Audience(departments=("cs",))),
    (XG, Audience(types=("student",))),
    (HR, Audience(types=("staff",))),
    (ADMIN, Audience(departments=("cs", "fl"), types=("third_party",), roles=("hr",))),
    (LEADER, Audience(roles=("counselor", "dept_head"))),
    (actor("dept_head", "hr", dept_head_of="cs"), Audience(departments=("cs",), types=("staff",))),  # two roles
]
REFUSED = [
    (DEAN, Audience(departments=("fl",))),
    (DEAN, Audience(departments=("cs",), types=("student",))),
    (DEAN, Audience(roles=("counselor",))),
    (actor("dept_head"), Audience(departments=("cs",))),  # a head without a department
    (XG, Audience(types=("student", "staff"))),
    (XG, Audience(departments=("cs",))),
    (HR, Audience(types=("third_party",))),
    (HR, Audience(roles=("hr",))),
    (actor("logistics"), Audience(departments=("hq",))),
    (actor(), Audience(types=("staff",))),
]


@pytest.mark.parametrize(("who", "audience"), ALLOWED)
def test_publishers_within_their_scope(who: Actor, audience: Audience) -> None:
    check_may_publish(who, audience)  # no exception


@pytest.mark.parametrize(("who", "audience"), REFUSED)
def test_publishers_beyond_their_scope_are_forbidden(who: Actor, audience: Audience) -> None:
    with pytest.raises(Forbidden):
        check_may_publish(who, audience)


def test_an_audience_must_name_something_that_exists() -> None:
    with pytest.raises(Invalid) as caught:
        check_audience(Audience(), [])
    assert caught.value.fields == {"audience": "name at least one department, type or role"}
    with pytest.raises(Invalid) as caught:
        check_audience(Audience(departments=("cs", "zz", "aa")), ["cs"])
    assert caught.value.fields == {"audience.departments": "no such department: aa, zz"}
    check_audience(Audience(departments=("cs",), roles=("hr",)), ["cs"])


@dataclass
class Person:
    userid: str
    person_type: str
    status: str = "active"


class FakeDirectory:
    """A directory answering only the index-backed questions (no Scan to fall back on)."""

    def __init__(self) -> None:
        self.people = {p.userid: (p, dept) for p, dept in [
            (Person("dean01", "staff"), "cs"), (Person("s001", "student"), "cs"),
            (Person("s002", "student", "left"), "cs"), (Person("s016", "student"), "fl"),
            (Person("t002", "staff"), "fl"), (Person("w001", "third_party"), "hq"),
            (Person("w002", "third_party", "left"), "hq"), (Person("hr01", "staff"), "rsc")]}
        self.type_queries: list[str] = []

    def members_of_department(self, dept_id: str) -> Iterator[Person]:
        return (p for p, dept in self.people.values() if dept == dept_id)

    def userids_of_type(self, person_type: str) -> Iterator[str]:
        self.type_queries.append(person_type)
        return (p.userid for p, _ in self.people.values() if p.person_type == person_type)

    def get_people(self, userids: Sequence[str]) -> dict[str, Person]:
        return {u: self.people[u][0] for u in userids if u in self.people}

    def holders(self, authority: str) -> list[str]:
        return {"role:hr": ["hr01"], "role:dept_head": ["dean01"]}.get(authority, [])

    def known_departments(self, dept_ids) -> set[str]:
        return {"cs", "fl", "hq", "rsc"} & set(dept_ids)


def test_the_audience_is_a_union_of_active_people_each_once() -> None:
    directory = FakeDirectory()
    audience = Audience(departments=("cs", "hq"), types=("third_party",), roles=("hr", "dept_head"))
    assert resolve_recipients(audience, directory) == ["dean01", "hr01", "s001", "w001"]
    assert directory.type_queries == ["third_party"]


def test_member_types_narrow_the_departments_only() -> None:
    directory = FakeDirectory()
    audience = Audience(departments=("cs", "fl"), roles=("hr",), member_types=("student",))
    assert resolve_recipients(audience, directory) == ["hr01", "s001", "s016"]


def test_a_teaching_release_maps_to_its_department() -> None:
    definition = shipped_definitions()["teaching-release"]
    app = file_application(definition, Applicant("t001", "staff", "cs"),
                           {"title": "课程调整", "audience": "students", "body": "正文"},
                           (ChainStep("学院负责人审核", "dept_head:cs"),), NOW)
    assert not became_approved(app, app.history[-1])
    approved = decide(app, DEAN, "approve", "", NOW)
    assert became_approved(approved, approved.history[-1])
    notice = teaching_notice(approved, approved.history[-1])
    assert (notice.notice_id, notice.column, notice.publisher, notice.approved_by, notice.source) == (
        f"app-{app.app_id}", "teaching", "t001", "u1", app.app_id)
    assert notice.audience == Audience(departments=("cs",), member_types=("student",))
    for choice, types in (("staff", ("staff",)), ("department", ()), ("all", ())):
        other = decide(file_application(definition, Applicant("t001", "staff", "cs"),
                                        {"title": "t", "audience": choice, "body": "b"},
                                        (ChainStep("审核", "dept_head:cs"),), NOW), DEAN, "approve", "", NOW)
        assert teaching_notice(other, other.history[-1]).audience.member_types == types


def test_the_card_is_a_mass_textcard_with_a_short_summary() -> None:
    board_notice = teaching_notice(*_approved_release("很长的正文。" * 100))
    note = card(board_notice, ["s001", "s002"], "https://h5.example.edu/notices/x")
    assert (note.key, note.kind, note.mass, note.recipients, note.url) == (
        f"notice:{board_notice.notice_id}", "textcard", True, ("s001", "s002"), "https://h5.example.edu/notices/x")
    assert note.title == "【教学发布专栏】课程调整" and len(note.body) == 120 and note.body.endswith("…")
    assert summary("  多行\n\n文字  ") == "多行 文字"


def _approved_release(body: str):
    definition = shipped_definitions()["teaching-release"]
    app = file_application(definition, Applicant("t001", "staff", "cs"),
                           {"title": "课程调整", "audience": "students", "body": body},
                           (ChainStep("学院负责人审核", "dept_head:cs"),), NOW)
    approved = decide(app, DEAN, "approve", "", NOW)
    return approved, approved.history[-1]


def test_publishing_checks_scope_before_anything_is_read_or_written() -> None:
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"store.{name} must not be used")

    board = NoticeBoard(store=Untouchable(), directory=FakeDirectory(), notify=lambda n: 1,  # type: ignore[arg-type]
                        clock=lambda: NOW)
    draft = Draft(title="t", body="b", column="notice", audience=Audience(departments=("fl",)))
    with pytest.raises(Forbidden):
        board.publish(DEAN, draft)
    with pytest.raises(Invalid) as caught:
        board.publish(DEAN, Draft(title="x" * 65, body="b", column="notice", audience=Audience(departments=("cs",))))
    assert set(caught.value.fields) == {"title"}
    # and a department with nobody active in it but the publisher is refused
    with pytest.raises(Invalid) as caught:
        board.publish(actor("dept_head", userid="hr01", dept_head_of="rsc"),
                      Draft(title="t", body="b", column="notice", audience=Audience(departments=("rsc",))))
    assert caught.value.fields == {"audience": "names no active person"}


class CountingDirectory(FakeDirectory):
    """The fake directory, counting how many people it was asked for."""

    def __init__(self, students: int = 0) -> None:
        super().__init__()
        extra = {f"x{n:05d}": (Person(f"x{n:05d}", "student", "left" if n < students - 1 else "active"), "zz")
                 for n in range(students)}
        self.people = {**extra, **self.people}  # listed first by the type index
        self.people_read = 0

    def get_people(self, userids: Sequence[str]) -> dict[str, Person]:
        self.people_read += len(userids)
        return super().get_people(userids)


def test_whether_an_audience_reaches_anyone_reads_only_until_it_finds_someone() -> None:
    # Given a directory listing first 1000 extra students of whom only the last is active
    directory = CountingDirectory(students=1000)
    # Then a department reaches someone unless its only active member is the publisher
    assert reaches_anyone(Audience(departments=("cs",)), directory, excluding="x")
    assert not reaches_anyone(Audience(departments=("rsc",)), directory, excluding="hr01")
    assert not reaches_anyone(Audience(departments=("cs",), member_types=("third_party",)), directory, excluding="x")
    # and role holders count, but never the publisher
    assert reaches_anyone(Audience(roles=("hr",)), directory, excluding="x")
    assert not reaches_anyone(Audience(roles=("hr",)), directory, excluding="hr01")
    assert directory.people_read == 0
    # and a person type is read a hundred at a time until an active one turns up
    assert reaches_anyone(Audience(types=("third_party",)), directory, excluding="x")
    assert directory.people_read == 2
    directory.people_read = 0
    assert reaches_anyone(Audience(types=("student",)), directory, excluding="x00500")
    assert directory.people_read == 999  # ten reads of 100 (less the publisher): the active one is the 1000th
    assert not reaches_anyone(Audience(types=("third_party",)), directory, excluding="w001")


# -- publishing in two steps -------------------------------------------------------------------
class MemoryStore:
    """The notices repository's contract, in memory; ``fail_after`` rows makes a write die part-way."""

    def __init__(self) -> None:
        self.notices: dict[str, Notice] = {}
        self.rows: dict[tuple[str, str], Delivery] = {}
        self.fail_after: int | None = None

    def create(self, notice: Notice) -> bool:
        return self.notices.setdefault(notice.notice_id, notice) is notice

    def get(self, notice_id: str) -> Notice | None:
        return self.notices.get(notice_id)

    def discard(self, notice: Notice) -> None:
        if self.notices.get(notice.notice_id, notice).state == "publishing":
            self.notices.pop(notice.notice_id, None)

    def add_recipients(self, notice: Notice, userids: Sequence[str]) -> int:
        written = 0
        for userid in userids:
            if (userid, notice.notice_id) in self.rows:
                continue
            if self.fail_after is not None and written == self.fail_after:
                raise ConnectionError("the table stopped answering")
            self.rows[(userid, notice.notice_id)] = Delivery(userid, notice.notice_id, notice.published_at,
                                                             notice.column, notice.title)
            written += 1
        return written

    def mark_published(self, notice: Notice, recipients: int) -> Notice:
        self.notices[notice.notice_id] = replace(self.notices[notice.notice_id], state="published",
                                                 recipients=recipients)
        return self.notices[notice.notice_id]

    def delivery(self, userid: str, notice: Notice) -> Delivery | None:
        return self.rows.get((userid, notice.notice_id))

    def mark_read(self, delivery: Delivery, at: str) -> bool:
        if delivery.read:
            return False
        self.rows[(delivery.userid, delivery.notice_id)] = replace(delivery, read_at=at)
        notice = self.notices[delivery.notice_id]
        self.notices[notice.notice_id] = replace(notice, read=notice.read + 1)
        return True


class MemoryClaims:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def claim(self, key: str, ttl_seconds: float, value: str = "") -> bool:
        if key in self.values:
            return False
        self.values[key] = value
        return True

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def put(self, key: str, value: str, ttl_seconds: float) -> None:
        self.values[key] = value

    def release(self, key: str) -> None:
        self.values.pop(key, None)


@dataclass
class Wiring:
    board: NoticeBoard
    store: MemoryStore
    claims: MemoryClaims
    queued: list[str]
    cards: list[Notification]


@pytest.fixture
def wiring() -> Wiring:
    store, claims, queued, cards = MemoryStore(), MemoryClaims(), [], []
    board = NoticeBoard(store=store, directory=FakeDirectory(), notify=lambda n: cards.append(n) or 1,  # type: ignore[arg-type]
                        clock=lambda: NOW, claims=claims, queue_fan_out=queued.append)
    return Wiring(board, store, claims, queued, cards)


TO_CS_AND_HR = Draft(title="通知", body="正文", column="notice", audience=Audience(departments=("cs",), roles=("hr",)))


def test_publishing_stores_the_notice_publishing_and_queues_its_fan_out_only(wiring: Wiring) -> None:
    # When the IT centre publishes
    notice, replayed = wiring.board.publish(ADMIN, TO_CS_AND_HR)
    # Then the notice is stored publishing and queued, with no row and no card yet
    assert (replayed, notice.state, notice.recipients) == (False, "publishing", 0)
    assert wiring.store.notices == {notice.notice_id: notice}
    assert wiring.queued == [notice.notice_id]
    assert (wiring.store.rows, wiring.cards) == ({}, [])
    # When the fan-out runs, then the active recipients get a row and one card, and it is published
    published = wiring.board.fan_out(notice.notice_id)
    assert published is not None and (published.state, published.recipients) == ("published", 3)
    assert sorted(u for u, _ in wiring.store.rows) == ["dean01", "hr01", "s001"]
    assert [(c.key, c.recipients) for c in wiring.cards] == [(f"notice:{notice.notice_id}", ("dean01", "hr01", "s001"))]
    # and a second delivery of the message changes nothing and sends nothing
    assert wiring.board.fan_out(notice.notice_id) == published
    assert len(wiring.cards) == 1 and wiring.claims.values == {}


def test_a_fan_out_that_dies_part_way_is_finished_by_the_next_run_without_rewriting_a_row(wiring: Wiring) -> None:
    notice, _ = wiring.board.publish(ADMIN, TO_CS_AND_HR)
    # Given a first run that dies after writing one row, and that recipient reading the notice meanwhile
    wiring.store.fail_after = 1
    with pytest.raises(ConnectionError):
        wiring.board.fan_out(notice.notice_id)
    assert list(wiring.store.rows) == [("dean01", notice.notice_id)] and wiring.cards == []
    assert wiring.store.notices[notice.notice_id].state == "publishing"
    opened, delivery = wiring.board.open(actor(userid="dean01"), notice.notice_id)
    assert delivery is not None and delivery.read
    # When the message comes back
    wiring.store.fail_after = None
    published = wiring.board.fan_out(notice.notice_id)
    # Then each recipient has one row, the early reader's receipt stands, and one card went out
    assert published is not None and (published.state, published.recipients, published.read) == ("published", 3, 1)
    assert len(wiring.store.rows) == 3 and wiring.store.rows[("dean01", notice.notice_id)].read
    assert len(wiring.cards) == 1


def test_a_fan_out_run_leaves_a_notice_another_run_holds(wiring: Wiring) -> None:
    notice, _ = wiring.board.publish(ADMIN, TO_CS_AND_HR)
    wiring.claims.claim(f"notice-fanout#{notice.notice_id}", 300)
    assert wiring.board.fan_out(notice.notice_id) is None
    assert (wiring.store.rows, wiring.cards) == ({}, [])
    assert wiring.board.fan_out("20261201T000000-000000000000") is None  # taken back, or never was


def test_the_same_idempotency_key_answers_with_the_first_notice(wiring: Wiring) -> None:
    # Given a notice published with a key
    first, replayed = wiring.board.publish(ADMIN, TO_CS_AND_HR, "k-1")
    assert not replayed
    # When the publisher retries with the same key (even with another body) before the fan-out ran
    again, replayed = wiring.board.publish(ADMIN, replace(TO_CS_AND_HR, title="改"), "k-1")
    # Then it is the same notice, and its fan-out is queued again in case the first message was lost
    assert (again, replayed) == (first, True)
    assert wiring.queued == [first.notice_id, first.notice_id]
    # and once published, a retry queues nothing more
    wiring.board.fan_out(first.notice_id)
    published, replayed = wiring.board.publish(ADMIN, TO_CS_AND_HR, "k-1")
    assert (published.notice_id, published.state, replayed) == (first.notice_id, "published", True)
    assert len(wiring.queued) == 2
    # and another publisher's same key, or another key, is another notice
    other, _ = wiring.board.publish(actor("leader", userid="u2"), TO_CS_AND_HR, "k-1")
    assert other.notice_id != first.notice_id
    assert wiring.board.publish(ADMIN, TO_CS_AND_HR, "k-2")[0].notice_id not in (first.notice_id, other.notice_id)


def test_a_key_is_freed_when_nothing_was_stored_and_busy_while_the_first_request_runs(wiring: Wiring) -> None:
    # A refused notice stores nothing and leaves the key free for the corrected retry
    with pytest.raises(Invalid):
        wiring.board.publish(ADMIN, replace(TO_CS_AND_HR, audience=Audience(departments=("nowhere",))), "k")
    assert wiring.claims.values == {}
    # A notice whose fan-out cannot be queued is taken back, and the key freed
    def unavailable(notice_id: str) -> None:
        raise ConnectionError("SQS is not answering")
    wiring.board.queue_fan_out = unavailable
    with pytest.raises(ConnectionError):
        wiring.board.publish(ADMIN, TO_CS_AND_HR, "k")
    assert wiring.store.notices == {} and wiring.claims.values == {}
    # and while a first request holds the key without a notice stored yet, a retry is told to wait
    wiring.claims.claim(f"notice#{ADMIN.userid}#k", 60, value="20261201T020000-0123456789ab")
    with pytest.raises(Conflict):
        wiring.board.publish(ADMIN, TO_CS_AND_HR, "k")
