"""Notices: who may publish to whom, audience resolution, the teaching column mapping, the card."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from chalicelib.catalogue import shipped_definitions
from chalicelib.domain.access import Actor
from chalicelib.domain.notices import (
    Audience,
    Draft,
    NoticeBoard,
    card,
    check_audience,
    check_may_publish,
    resolve_recipients,
    summary,
    teaching_notice,
)
from chalicelib.domain.workflow import Applicant, ChainStep, became_approved, decide, file_application
from chalicelib.errors import Forbidden, Invalid

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
