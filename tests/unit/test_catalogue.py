"""The shipped service catalogue (chalicelib/catalogue/services.json): the 48 items of DOMAIN.md."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pydantic import ValidationError

from chalicelib.catalogue import CATALOGUE_FILE, shipped_definitions
from chalicelib.domain.forms import ServiceDefinition, validate_form
from infra.local.demo import CAST

# Copied from DOMAIN.md, "Service catalogue (48 items, three categories)", in its order.
NAMES = {
    "epidemic": ["每日健康填报", "入校申请(访客)", "学生返校申请", "学生出校申请", "学生请假", "离济备案(教职工)",
                 "假期去向登记", "核酸检测结果上报", "疫苗接种登记", "隔离观察登记", "体温异常复测登记",
                 "外来车辆入校申请", "快递/外卖入校登记", "防疫物资申领", "密接/次密接排查登记", "第三方人员健康登记"],
    "teaching": ["教学发布专栏", "调停课申请", "缓考申请", "成绩单开具", "在读证明开具", "实验室预约", "虚拟仿真实验预约",
                 "课程资源申请", "科研项目报备", "学术会议报备", "文献传递申请", "VPN账号申请", "校园邮箱申请",
                 "正版软件申请", "视频会议室预约", "课堂直播申请"],
    "life": ["学生公寓报修", "心理咨询预约", "学工部长信箱", '建言"十四五"', "校园卡挂失", "宿舍调换申请", "场地借用",
             "会议室预约", "用印申请", "公务用车申请", "出差报备", "在职证明开具", "收入证明开具", "网络故障报修",
             "失物招领登记", "访客邀请"],
}

# Items other areas serve with endpoints of their own: id -> area.
STABLE_IDS = {
    "daily-health-report": "health", "campus-entry": "entry", "student-leave": "leave", "leave-jinan": "travel",
    "dorm-repair": "repair", "counselling": "counselling", "mailbox": "mailbox",
    "five-year-plan-suggestions": "suggestions", "teaching-release": "notices",
}
# Plain services whose approval an area acts on (a returning student's campus card opens the gates).
ACTED_ON = {"student-return": "entry"}

# Recorded, not approved.
FILINGS = {"daily-health-report", "leave-jinan", "holiday-whereabouts", "nucleic-acid-report", "vaccination-record",
           "quarantine-record", "temperature-recheck", "delivery-entry", "close-contact-screening",
           "third-party-health", "academic-conference-filing", "five-year-plan-suggestions", "lost-and-found"}


def resolvers(definition: ServiceDefinition) -> list[str]:
    return [s.approver for s in definition.steps] + [c.to for c in definition.cc]


def shipped_item(service_id: str) -> dict:
    """The raw JSON of one shipped item, to modify."""
    return next(item for item in json.loads(CATALOGUE_FILE.read_text(encoding="utf-8")) if item["id"] == service_id)


def test_the_catalogue_holds_48_valid_items():
    # When the shipped file is loaded (every item is validated on the way)
    definitions = shipped_definitions()
    # Then there are 48, keyed by their own id
    assert len(definitions) == 48
    assert all(key == d.id for key, d in definitions.items())
    assert all(d.version == 1 for d in definitions.values())


def test_each_category_holds_16_items_ordered_1_to_16_as_in_domain_md():
    # Given the shipped definitions by category
    by_category: dict[str, list[ServiceDefinition]] = {}
    for definition in shipped_definitions().values():
        by_category.setdefault(definition.category, []).append(definition)
    # Then each category has 16 items, numbered 1..16 in DOMAIN.md's order
    assert {c: len(items) for c, items in by_category.items()} == {"epidemic": 16, "teaching": 16, "life": 16}
    for category, items in by_category.items():
        ordered = sorted(items, key=lambda d: d.order)
        assert [d.order for d in ordered] == list(range(1, 17))
        assert [d.name for d in ordered] == NAMES[category]


def test_the_names_are_the_48_of_domain_md():
    # Given the 48 names of DOMAIN.md
    expected = {name for names in NAMES.values() for name in names}
    assert len(expected) == 48
    # Then the catalogue names exactly those
    assert {d.name for d in shipped_definitions().values()} == expected


def test_stable_ids_exist_with_their_area_and_no_other_item_has_one():
    definitions = shipped_definitions()
    # Then every stable id is there, served by its area
    assert {service_id: definitions[service_id].area for service_id in STABLE_IDS} == STABLE_IDS
    # And the other items are plain data
    assert {d.id: d.area for d in definitions.values() if d.area} == {**STABLE_IDS, **ACTED_ON}


def test_the_stable_ids_name_the_items_other_areas_expect():
    definitions = shipped_definitions()
    assert {service_id: definitions[service_id].name for service_id in STABLE_IDS} == {
        "daily-health-report": "每日健康填报", "campus-entry": "入校申请(访客)", "student-leave": "学生请假",
        "leave-jinan": "离济备案(教职工)", "dorm-repair": "学生公寓报修", "counselling": "心理咨询预约",
        "mailbox": "学工部长信箱", "five-year-plan-suggestions": '建言"十四五"', "teaching-release": "教学发布专栏",
    }


def test_every_field_resolver_points_at_a_person_field():
    for definition in shipped_definitions().values():
        for resolver in resolvers(definition):
            if resolver.startswith("field:"):
                # Then the named field exists and holds a userid
                target = definition.field(resolver.removeprefix("field:"))
                assert target is not None and target.type == "person", (definition.id, resolver)
                assert target.required, (definition.id, resolver)


def test_every_item_has_a_required_field_and_3_to_13_fields():
    for definition in shipped_definitions().values():
        assert any(f.required for f in definition.fields), definition.id
        assert 3 <= len(definition.fields) <= 13, definition.id


def test_every_role_resolver_names_a_role_held_in_the_demo_cast():
    # Given the roles somebody in the demo campus holds
    held = {role for row in CAST for role in row[5]}
    # Then every role: step or cc reaches somebody there
    named = {r.removeprefix("role:") for d in shipped_definitions().values() for r in resolvers(d)
             if r.startswith("role:")}
    assert named and named <= held


def test_counselor_steps_only_in_services_for_students():
    for definition in shipped_definitions().values():
        if any(s.approver == "counselor_of_applicant" for s in definition.steps):
            assert definition.applicants.types == ("student",) and not definition.applicants.roles, definition.id


def test_chains_are_at_most_three_steps_and_filings_have_none():
    definitions = shipped_definitions()
    assert all(len(d.steps) <= 3 for d in definitions.values())
    # Then the filings are exactly the items without an approval chain
    assert {d.id for d in definitions.values() if not d.steps} == FILINGS


def test_the_catalogue_uses_every_field_type():
    used = Counter(f.type for d in shipped_definitions().values() for f in d.fields)
    assert set(used) == {"text", "textarea", "number", "date", "datetime", "select", "multiselect", "bool", "idcard",
                         "phone", "location", "attachment", "person"}


def test_pledges_must_be_ticked():
    pledges = [f for d in shipped_definitions().values() for f in d.fields if f.name == "pledge"]
    assert pledges and all(f.type == "bool" and f.required and f.must_be_true for f in pledges)


def test_campus_entry_is_approved_by_the_host_then_security():
    entry = shipped_definitions()["campus-entry"]
    assert entry.applicants.types == ("staff",)
    assert [s.approver for s in entry.steps] == ["field:host", "role:security"]
    assert entry.field("host").person_types == ("staff",)
    assert entry.field("id_number").type == "idcard" and entry.field("mobile").type == "phone"
    assert {f.name for f in entry.fields if not f.required} == {"vehicle_plate"}
    assert {o.value for o in entry.field("health_code").options} == {"green", "yellow", "red"}


def test_leaving_jinan_is_a_filing_told_to_the_dept_head_and_hr():
    travel = shipped_definitions()["leave-jinan"]
    assert travel.applicants.types == ("staff",) and travel.steps == ()
    assert {(c.on, c.to) for c in travel.cc} == {(("filed",), "dept_head_of_applicant"), (("filed",), "role:hr")}
    assert [o.value for o in travel.field("transport").options] == ["train", "plane", "coach", "car", "other"]


@pytest.mark.parametrize(("start", "end", "approvers"), [
    ("2020-10-12T08:00:00+08:00", "2020-10-14T08:00:00+08:00", ["counselor_of_applicant"]),
    ("2020-10-12T08:00:00+08:00", "2020-10-16T08:00:00+08:00",
     ["counselor_of_applicant", "dept_head_of_applicant"]),
    ("2020-10-12T08:00:00+08:00", "2020-10-22T08:00:00+08:00",
     ["counselor_of_applicant", "dept_head_of_applicant", "role:student_affairs"]),
])
def test_student_leave_chain_grows_with_its_length(start, end, approvers):
    # Given a student's leave form of the given length
    leave = shipped_definitions()["student-leave"]
    form = {"kind": "personal", "start": start, "end": end,
            "destination": {"province": "山东省", "city": "青岛市"}, "leaves_jinan": True, "transport": "train",
            "emergency_contact": "13800138000", "reason": "家中有事"}
    # When it is validated and its chain worked out
    clean = validate_form(leave, form)
    # Then the counselor always decides, the dept head over 3 days, student affairs over 7
    assert [step.approver for _, step in leave.applicable_steps(clean)] == approvers


def test_a_shipped_item_round_trips_through_validation():
    # Given a shipped item as raw JSON
    raw = shipped_item("student-leave")
    # Then validating it again gives the shipped definition
    assert ServiceDefinition.model_validate(raw) == shipped_definitions()["student-leave"]


@pytest.mark.parametrize("when", [
    "days(start, end) >",            # ends too early
    "days(start, reason) > 3",       # days() of a text field
    "holiday == 'yes'",              # unknown field
    "kind = 'sick'",                 # not an operator
    "__import__('os')",              # not the language
])
def test_a_broken_condition_is_refused(when):
    # Given the shipped student leave with a broken condition on its second step
    raw = shipped_item("student-leave")
    raw["steps"][1]["when"] = when
    # When it is validated, then it is refused
    with pytest.raises(ValidationError):
        ServiceDefinition.model_validate(raw)


@pytest.mark.parametrize("place", ["steps", "cc"])
def test_an_unknown_resolver_role_is_refused(place):
    # Given the shipped leaving-Jinan filing told to (or approved by) a role nobody has
    raw = shipped_item("leave-jinan")
    raw[place] = [{"name": "财务处审核", "approver": "role:finance"} if place == "steps"
                  else {"on": ["filed"], "to": "role:finance"}]
    # When it is validated, then it is refused
    with pytest.raises(ValidationError, match="unknown role"):
        ServiceDefinition.model_validate(raw)


@pytest.mark.parametrize(("service_id", "change"), [
    ("campus-entry", lambda raw: raw["steps"][0].update(approver="field:name")),         # not a person field
    ("campus-entry", lambda raw: raw["steps"][0].update(approver="field:nobody")),       # no such field
    ("leave-jinan", lambda raw: raw.update(steps=[{"name": "辅导员", "approver": "counselor_of_applicant"}])),
    ("student-leave", lambda raw: raw.update(extra="x")),                                # unknown key
])
def test_other_broken_definitions_are_refused(service_id, change):
    # Given a shipped item broken in one way
    raw = shipped_item(service_id)
    change(raw)
    # When it is validated, then it is refused
    with pytest.raises(ValidationError):
        ServiceDefinition.model_validate(raw)
