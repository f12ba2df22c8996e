"""WeCom directory changes: parsing callbacks, applying them, and the nightly reconciliation (no AWS)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from chalicelib.domain.directory import AuditEntry, PersonRecord
from chalicelib.domain.wecom_events import (
    SYNC_ACTOR,
    WECOM_ACTOR,
    ContactChange,
    Department,
    MalformedEvent,
    SyncAborted,
    accept_callback,
    apply_change,
    parse_event,
    sync_directory,
)
from chalicelib.errors import Conflict

# -- fakes ------------------------------------------------------------------------------------


class FakeStore:
    """The directory in memory, with the repository's conditional-write semantics."""

    def __init__(self, people: Iterable[PersonRecord] = (), departments: Iterable[Department] = ()) -> None:
        self.people = {p.userid: p for p in people}
        self.depts = {d.dept_id: d for d in departments}
        self.counselors: dict[str, set[str]] = {}
        self.writes = 0
        self.racing: set[str] = set()  # userids someone else changes just before our write

    def get_person(self, userid: str, *, consistent: bool = False) -> PersonRecord | None:
        return self.people.get(userid)

    def get_people(self, userids: Sequence[str]) -> dict[str, PersonRecord]:
        return {u: self.people[u] for u in userids if u in self.people}

    def members_of_department(self, dept_id: str) -> Iterator[PersonRecord]:
        return iter(sorted((p for p in self.people.values() if p.department == dept_id), key=lambda p: p.userid))

    def save_people(self, changes: Sequence[tuple[PersonRecord, int | None]]) -> set[str]:
        lost = set()
        for record, expected in changes:
            stored = self.people.get(record.userid)
            if expected is not None and (record.userid in self.racing or stored is None
                                         or stored.token_version != expected):
                lost.add(record.userid)
                continue
            self.people[record.userid] = record
            self.writes += 1
        return lost

    def move_counselors(self, changes: Mapping[str, tuple[set[str], set[str]]]) -> None:
        for class_id, (added, removed) in changes.items():
            members = self.counselors.setdefault(class_id, set())
            members |= added
            members -= removed - added

    def departments(self, dept_ids: Iterable[str]) -> dict[str, Department]:
        return {d: self.depts[d] for d in dept_ids if d in self.depts}

    def save_departments(self, departments: Sequence[Department]) -> None:
        for department in departments:
            self.depts[department.dept_id] = department
            self.writes += 1


class FakeAudit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, AuditEntry]] = []

    def record_many(self, actor: str, entries: Sequence[AuditEntry]) -> None:
        self.entries += [(actor, e) for e in entries]

    def actions(self) -> list[tuple[str, str]]:
        return [(e.subject, e.action) for _, e in self.entries]


class FakeWeCom:
    """WeCom's directory as user/get, user/list_id and department/simplelist describe it."""

    def __init__(self, members: Mapping[str, dict[str, Any]] = (), departments: Sequence[int] = (1,)) -> None:
        self.members = {k: dict(v) for k, v in dict(members).items()}
        self.department_ids = list(departments)
        self.lookups: list[str] = []
        self.failing: set[str] = set()

    def user_get(self, userid: str) -> dict[str, Any] | None:
        self.lookups.append(userid)
        if userid in self.failing:
            raise RuntimeError("WeCom busy")
        # Like WeCom, userids are compared case-insensitively.
        found = [(k, v) for k, v in self.members.items() if k.lower() == userid.lower()]
        return {"userid": found[0][0], **found[0][1]} if found else None

    def user_list_id(self) -> Iterator[dict[str, Any]]:
        for userid, member in self.members.items():
            for department in member.get("department", [1]):
                yield {"userid": userid, "department": department}

    def department_simplelist(self) -> list[dict[str, Any]]:
        return [{"id": d, "parentid": 0 if d == 1 else 1, "order": 100} for d in self.department_ids]


def member(name: str, *departments: int, status: int = 1, main: int | None = None) -> dict[str, Any]:
    return {"name": name, "department": list(departments), "main_department": main or departments[0],
            "status": status}


def staff(userid: str, department: str = "2", **fields: Any) -> PersonRecord:
    return PersonRecord(userid=userid, name=fields.pop("name", f"{userid}的名字"), person_type="staff",
                        department=department, **fields)


def student(userid: str, department: str = "2", class_id: str = "c1", **fields: Any) -> PersonRecord:
    return PersonRecord(userid=userid, name=f"{userid}同学", person_type="student", department=department,
                        class_id=class_id, **fields)


CAMPUS = [Department("1", "某大学", "office"), Department("2", "计算机学院", "college"),
          Department("3", "人事处", "office"), Department("cs", "计算机学院(导入)", "college")]


def xml(change_type: str, **fields: str) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return ("<xml><ToUserName><![CDATA[wwcorp]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            "<CreateTime>1717000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[change_contact]]></Event><ChangeType>{change_type}</ChangeType>{body}</xml>")


def change(change_type: str, **fields: Any) -> ContactChange:
    return ContactChange(change_type=change_type, **fields)


# -- parsing ----------------------------------------------------------------------------------


def test_a_create_user_event_is_read_with_every_field_wecom_sends():
    parsed = parse_event(xml("create_user", UserID="ZhangSan", Name="张三", Department="1,2,3", MainDepartment="2",
                             Status="1", Mobile="13800000000", Position="产品经理"))
    assert parsed == ContactChange(change_type="create_user", created_at=1717000000, userid="zhangsan", name="张三",
                                   departments=(1, 2, 3), main_department=2, status=1)
    # Fields the directory does not keep (phone, position) are not carried to the queue.
    assert "13800000000" not in str(parsed.to_message())


def test_an_update_carries_only_what_wecom_sent_and_survives_the_queue():
    parsed = parse_event(xml("update_user", UserID="lisi", NewUserID="LiSi2", MainDepartment="35"))
    assert parsed.to_message() == {"event": "change_contact", "change_type": "update_user", "created_at": 1717000000,
                                   "userid": "lisi", "new_userid": "lisi2", "main_department": 35}
    assert ContactChange.from_message(parsed.to_message()) == parsed


def test_party_events_are_read():
    created = parse_event(xml("create_party", Id="12", Name="数学学院", ParentId="1", Order="1"))
    assert (created.party_id, created.name, created.parent_id) == (12, "数学学院", 1)
    assert parse_event(xml("delete_party", Id="12")).change_type == "delete_party"


def test_other_events_are_not_ours_to_act_on():
    assert parse_event(xml("update_tag", TagId="1")) is None
    assert parse_event("<xml><MsgType>text</MsgType><Content>你好</Content></xml>") is None
    assert parse_event("<xml><MsgType>event</MsgType><Event>enter_agent</Event></xml>") is None


@pytest.mark.parametrize("text", [
    "not xml at all",
    "<xml><MsgType>event</MsgType>",
    '<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><MsgType>&a;</MsgType></xml>',
    xml("create_user", Name="无名"),                 # no UserID
    xml("update_user", UserID="has space"),          # not a userid
    xml("update_user", UserID="u1", Status="one"),   # not a number
    xml("create_party", Name="无编号"),              # no Id
])
def test_unusable_events_are_refused_without_echoing_values(text):
    with pytest.raises(MalformedEvent) as caught:
        parse_event(text)
    assert "无名" not in str(caught.value) and "has space" not in str(caught.value)


# -- accepting a callback ---------------------------------------------------------------------


class FakeGuard:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def claim(self, key: str, ttl_seconds: float) -> bool:
        if key in self.keys:
            return False
        self.keys.add(key)
        return True

    def release(self, key: str) -> None:
        self.keys.discard(key)


def test_a_callback_is_queued_once_however_often_it_arrives():
    guard, published = FakeGuard(), []
    message = xml("delete_user", UserID="u1")
    assert accept_callback(message, guard, published.append, replay_ttl_seconds=600) == "queued"
    assert accept_callback(message, guard, published.append, replay_ttl_seconds=600) == "duplicate"
    assert published == [{"event": "change_contact", "change_type": "delete_user", "created_at": 1717000000,
                          "userid": "u1"}]


def test_an_event_that_is_not_a_directory_change_stores_and_queues_nothing():
    guard, published = FakeGuard(), []
    assert accept_callback(xml("update_tag", TagId="1"), guard, published.append, replay_ttl_seconds=600) == "ignored"
    assert guard.keys == set() and published == []


def test_a_failed_publish_releases_the_claim_so_wecoms_retry_gets_through():
    guard, published = FakeGuard(), []

    def broken(message: dict) -> None:
        raise ConnectionError("SQS unreachable")

    with pytest.raises(ConnectionError):
        accept_callback(xml("delete_user", UserID="u1"), guard, broken, replay_ttl_seconds=600)
    assert accept_callback(xml("delete_user", UserID="u1"), guard, published.append, replay_ttl_seconds=600) == "queued"


# -- applying user changes --------------------------------------------------------------------


def test_a_new_member_is_created_as_staff_from_wecoms_description():
    # Given a create_user event carrying only UserID and Department (WeCom's post-2022 callbacks)
    store, audit = FakeStore(departments=CAMPUS), FakeAudit()
    wecom = FakeWeCom({"zhangsan": member("张三", 3)})
    # When it is applied
    outcome = apply_change(change("create_user", userid="zhangsan", departments=(3,)), store, wecom, audit)
    # Then the person exists, named as WeCom names them, and the creation is audited
    assert outcome == "created"
    assert store.people["zhangsan"] == PersonRecord(userid="zhangsan", name="张三", person_type="staff", department="3")
    assert audit.entries[0][0] == WECOM_ACTOR and audit.actions() == [("person#zhangsan", "person.create")]


def test_a_member_in_an_unknown_department_brings_the_department_along():
    store, audit = FakeStore(departments=CAMPUS), FakeAudit()
    apply_change(change("create_user", userid="u9"), store, FakeWeCom({"u9": member("新人", 44)}), audit)
    assert store.people["u9"].department == "44"
    assert store.depts["44"] == Department("44", "企业微信部门 44", "office")


def test_a_member_gone_from_wecom_or_added_disabled_is_not_created():
    store = FakeStore(departments=CAMPUS)
    wecom = FakeWeCom({"off": member("停用", 2, status=2)})
    assert apply_change(change("create_user", userid="gone"), store, wecom, FakeAudit()) == "ignored"
    assert apply_change(change("create_user", userid="off"), store, wecom, FakeAudit()) == "ignored"
    assert store.people == {}


def test_a_rename_changes_the_name_and_keeps_the_session():
    store, audit = FakeStore([staff("lisi", name="李四")], CAMPUS), FakeAudit()
    assert apply_change(change("update_user", userid="lisi", name="李思"), store, FakeWeCom(), audit) == "updated"
    assert (store.people["lisi"].name, store.people["lisi"].token_version) == ("李思", 0)
    assert audit.entries == []  # a name is not authority


def test_a_move_to_another_wecom_department_ends_the_session():
    store, audit = FakeStore([staff("lisi", "2")], CAMPUS), FakeAudit()
    apply_change(change("update_user", userid="lisi", main_department=3), store, FakeWeCom(), audit)
    assert (store.people["lisi"].department, store.people["lisi"].token_version) == ("3", 1)
    assert audit.entries[0][1].detail == {"department": ["2", "3"]}


def test_membership_of_several_departments_is_not_a_move():
    store = FakeStore([staff("lisi", "2")], CAMPUS)
    outcome = apply_change(change("update_user", userid="lisi", departments=(3, 2)), store, FakeWeCom(), FakeAudit())
    assert outcome == "unchanged" and store.writes == 0


def test_students_and_import_owned_departments_are_not_moved_by_wecom():
    store = FakeStore([student("s1", "2"), staff("t1", "cs")], CAMPUS)
    for userid in ("s1", "t1"):
        apply_change(change("update_user", userid=userid, main_department=3), store, FakeWeCom(), FakeAudit())
    assert (store.people["s1"].department, store.people["t1"].department) == ("2", "cs")
    assert store.writes == 0


@pytest.mark.parametrize("status", [2, 5])
def test_disabled_or_quit_members_leave(status):
    store = FakeStore([staff("lisi", roles=frozenset({"counselor"}), counselor_of=frozenset({"c1"}))], CAMPUS)
    assert apply_change(change("update_user", userid="lisi", status=status), store, FakeWeCom(), FakeAudit()) == "left"
    person = store.people["lisi"]
    assert (person.status, person.token_version) == ("left", 1)
    assert person.roles == {"counselor"}  # nothing else is taken away: the record stays whole


def test_an_update_with_status_1_does_not_revive_a_leaver():
    # Old callback URLs get every field on every change: Status=1 comes with a mere rename.
    store = FakeStore([staff("lisi", status="left", token_version=3)], CAMPUS)
    apply_change(change("update_user", userid="lisi", name="李四", status=1), store, FakeWeCom(), FakeAudit())
    assert (store.people["lisi"].status, store.people["lisi"].token_version) == ("left", 3)


def test_a_leaver_wecom_adds_again_comes_back_once_wecom_confirms():
    store = FakeStore([staff("lisi", status="left", token_version=3)], CAMPUS)
    stale = FakeWeCom({})  # a stale create_user, redelivered after the delete: WeCom no longer has them
    assert apply_change(change("create_user", userid="lisi"), store, stale, FakeAudit()) == "unchanged"
    assert store.people["lisi"].status == "left"
    rehired = FakeWeCom({"lisi": member("李四", 3)})
    assert apply_change(change("create_user", userid="lisi"), store, rehired, FakeAudit()) == "updated"
    assert (store.people["lisi"].status, store.people["lisi"].department, store.people["lisi"].token_version) == \
        ("active", "3", 4)


def test_a_delete_applied_after_the_re_add_that_followed_it_is_skipped():
    # Given WeCom deleted lisi and added her again, and the queue hands over create_user first
    store, audit = FakeStore([staff("lisi", name="李四", token_version=2)], CAMPUS), FakeAudit()
    wecom = FakeWeCom({"lisi": member("李四", 2)})
    assert apply_change(change("create_user", userid="lisi"), store, wecom, audit) == "unchanged"
    # When the older delete_user arrives
    outcome = apply_change(change("delete_user", userid="lisi"), store, wecom, audit)
    # Then WeCom, asked, still lists her as active: the stale delete is skipped, nothing written
    assert outcome == "still_active"
    assert (store.people["lisi"].status, store.people["lisi"].token_version) == ("active", 2)
    assert store.writes == 0 and audit.entries == [] and wecom.lookups == ["lisi"]


@pytest.mark.parametrize("wecom_status", [1, 4])
def test_an_update_that_makes_someone_leave_is_skipped_while_wecom_lists_them_active(wecom_status):
    # Given lisi was disabled and enabled again, and the disabling update arrives last
    store = FakeStore([staff("lisi", name="李四")], CAMPUS)
    wecom = FakeWeCom({"lisi": member("李四", 2, status=wecom_status)})
    outcome = apply_change(change("update_user", userid="lisi", name="旧名", status=2), store, wecom, FakeAudit())
    assert outcome == "still_active"
    assert (store.people["lisi"].status, store.people["lisi"].name, store.writes) == ("active", "李四", 0)


@pytest.mark.parametrize("wecom_status", [2, 5, None])
def test_a_leaving_wecom_confirms_is_applied(wecom_status):
    # None: WeCom no longer has the member at all
    store = FakeStore([staff("lisi")], CAMPUS)
    wecom = FakeWeCom({} if wecom_status is None else {"lisi": member("李四", 2, status=wecom_status)})
    assert apply_change(change("update_user", userid="lisi", status=5), store, wecom, FakeAudit()) == "left"
    assert apply_change(change("delete_user", userid="lisi"), store, wecom, FakeAudit()) == "unchanged"
    assert store.people["lisi"].status == "left"


def test_a_leaving_is_retried_not_guessed_when_wecom_cannot_confirm_it():
    store, wecom = FakeStore([staff("lisi")], CAMPUS), FakeWeCom({})
    wecom.failing.add("lisi")
    with pytest.raises(RuntimeError):
        apply_change(change("delete_user", userid="lisi"), store, wecom, FakeAudit())
    assert store.people["lisi"].status == "active" and store.writes == 0


def test_delete_user_marks_left_never_deletes_and_is_idempotent():
    store, audit = FakeStore([staff("wangwu", token_version=2)], CAMPUS), FakeAudit()
    assert apply_change(change("delete_user", userid="wangwu"), store, FakeWeCom(), audit) == "left"
    assert apply_change(change("delete_user", userid="wangwu"), store, FakeWeCom(), audit) == "unchanged"
    assert apply_change(change("delete_user", userid="nobody"), store, FakeWeCom(), audit) == "ignored"
    assert (store.people["wangwu"].status, store.people["wangwu"].token_version) == ("left", 3)
    assert audit.actions() == [("person#wangwu", "person.change")]


def test_every_user_change_applied_twice_changes_nothing_the_second_time():
    store = FakeStore([staff("a"), staff("b"), staff("c", status="left")], CAMPUS)
    wecom = FakeWeCom({"n": member("新", 2), "c": member("丙", 2)})
    changes = [change("create_user", userid="n"), change("update_user", userid="a", name="甲", main_department=3),
               change("update_user", userid="b", status=5), change("create_user", userid="c"),
               change("update_user", userid="a", new_userid="a2")]
    for item in changes:
        apply_change(item, store, wecom, FakeAudit())
    snapshot, writes = dict(store.people), store.writes
    for item in changes:
        assert apply_change(item, store, wecom, FakeAudit()) in ("unchanged", "ignored")
    assert store.people == snapshot and store.writes == writes


def test_a_new_userid_continues_the_person_and_retires_the_old_record():
    old = staff("lisi", token_version=2, card_no="T1", id_number_sealed="sealed", id_number_masked="m", id_lookup="k",
                roles=frozenset({"counselor"}), counselor_of=frozenset({"c1"}))
    store, audit = FakeStore([old], CAMPUS), FakeAudit()
    store.counselors["c1"] = {"lisi"}
    assert apply_change(change("update_user", userid="lisi", new_userid="li.si"), store, FakeWeCom(), audit) == "renamed"
    new, retired = store.people["li.si"], store.people["lisi"]
    assert (new.name, new.card_no, new.id_lookup, new.counselor_of, new.status) == \
        (old.name, "T1", "k", {"c1"}, "active")
    assert (retired.status, retired.token_version, retired.card_no, retired.id_lookup) == ("left", 3, None, None)
    assert store.counselors["c1"] == {"li.si"}
    assert ("person#lisi", "person.renamed") in audit.actions()


@pytest.mark.parametrize("existing_status", ["left", "active"])
def test_a_rename_onto_a_userid_the_directory_already_holds_is_refused_for_review(existing_status):
    # Given an active person with card and ID number, and another record under the target userid
    lisi = staff("lisi", token_version=2, card_no="T1", id_number_sealed="sealed", id_number_masked="m",
                 id_lookup="k", counselor_of=frozenset({"c1"}))
    other = staff("li.si", name="另一个李四", status=existing_status, token_version=5, card_no="T9", id_lookup="k9")
    store, audit = FakeStore([lisi, other], CAMPUS), FakeAudit()
    store.counselors["c1"] = {"lisi"}
    # When WeCom renames lisi to li.si
    with pytest.raises(Conflict) as refused:
        apply_change(change("update_user", userid="lisi", new_userid="li.si", name="李四"), store, FakeWeCom(), audit)
    # Then nothing is merged or written: both records stay whole (the record goes to the DLQ for review)
    assert store.people == {"lisi": lisi, "li.si": other}
    assert store.writes == 0 and audit.entries == [] and store.counselors["c1"] == {"lisi"}
    assert "lisi" not in str(refused.value) and "li.si" not in str(refused.value)


def test_a_rename_that_also_makes_someone_leave_is_skipped_while_wecom_lists_them_active():
    store = FakeStore([staff("lisi", card_no="T1")], CAMPUS)
    wecom = FakeWeCom({"li.si": member("李四", 2)})
    outcome = apply_change(change("update_user", userid="lisi", new_userid="li.si", status=5), store, wecom,
                           FakeAudit())
    assert outcome == "still_active" and set(store.people) == {"lisi"} and store.writes == 0


def test_a_change_that_loses_a_race_is_retried_not_forced():
    store = FakeStore([staff("lisi")], CAMPUS)
    store.racing.add("lisi")
    with pytest.raises(Conflict):
        apply_change(change("delete_user", userid="lisi"), store, FakeWeCom(), FakeAudit())


# -- applying party changes -------------------------------------------------------------------


def test_parties_are_created_renamed_and_kept_when_deleted():
    store, audit = FakeStore(departments=CAMPUS), FakeAudit()
    assert apply_change(change("create_party", party_id=12, name="数学学院"), store, FakeWeCom(), audit) == \
        "department_created"
    assert store.depts["12"] == Department("12", "数学学院", "college")
    assert apply_change(change("update_party", party_id=12, name="数学与统计学院"), store, FakeWeCom(), audit) == \
        "department_renamed"
    assert apply_change(change("update_party", party_id=12, name="数学与统计学院"), store, FakeWeCom(), audit) == \
        "unchanged"
    assert apply_change(change("delete_party", party_id=12), store, FakeWeCom(), audit) == "ignored"
    assert store.depts["12"] == Department("12", "数学与统计学院", "college")  # kind kept, record kept
    assert audit.actions() == [("department#12", "department.create"), ("department#12", "department.rename")]


# -- the nightly reconciliation ---------------------------------------------------------------


def campus_store() -> FakeStore:
    return FakeStore([staff("a", "2"), staff("b", "2"), staff("c", "3"), staff("gone", "3"),
                      staff("old", "3", status="left"), student("s1", "2"), staff("imp", "cs")], CAMPUS)


def campus_wecom() -> FakeWeCom:
    return FakeWeCom({
        "a": member("a的名字", 2), "b": member("b的名字", 2, 3), "c": member("c的名字", 2),  # c moved to 2
        "s1": member("s1同学", 9), "imp": member("imp", 2), "old": member("old", 3),
        "new1": member("新一", 3), "New2": member("新二", 7),
    }, departments=[1, 2, 3, 7])


def test_the_sync_adds_moves_and_marks_leavers_touching_only_what_changed():
    store, wecom, audit = campus_store(), campus_wecom(), FakeAudit()
    report = sync_directory(wecom, store, audit)
    assert store.people["new1"] == PersonRecord(userid="new1", name="新一", person_type="staff", department="3")
    assert store.people["new2"].department == "7" and store.depts["7"].name == "企业微信部门 7"
    assert (store.people["c"].department, store.people["c"].token_version) == ("2", 1)
    assert (store.people["gone"].status, store.people["gone"].token_version) == ("left", 1)
    assert store.people["old"].status == "left"          # not revived
    assert store.people["s1"].department == "2"          # a student's department follows the class
    assert store.people["imp"].department == "cs"        # import-owned department keeps its people
    # Only the new and the moved were looked up: unchanged members cost no user/get
    assert sorted(wecom.lookups) == ["c", "new1", "new2"]
    assert (report.people_created, report.people_updated, report.people_left, report.departments_created) == \
        (2, 1, 1, 1)
    assert (report.left_here_listed_in_wecom, report.unchanged, report.wecom_members) == (1, 4, 8)
    assert {actor for actor, _ in audit.entries} == {SYNC_ACTOR}


def test_a_second_sync_finds_nothing_to_do():
    store, wecom = campus_store(), campus_wecom()
    sync_directory(wecom, store, FakeAudit())
    writes, wecom.lookups = store.writes, []
    report = sync_directory(wecom, store, FakeAudit())
    assert store.writes == writes and wecom.lookups == []
    assert (report.people_created, report.people_updated, report.people_left, report.departments_created) == (0,) * 4


def test_the_sync_never_marks_leavers_in_import_owned_departments():
    # Given an imported class (department cs) of which only one student has joined WeCom so far,
    # an imported teacher not in WeCom, and a WeCom department member who is gone from WeCom
    store = FakeStore([student("s1", "cs", "cs2101"), student("s2", "cs", "cs2101"), student("s3", "cs", "cs2101"),
                       staff("imp-teacher", "cs"), staff("a", "2"), staff("gone", "2")], CAMPUS)
    wecom = FakeWeCom({"s1": member("s1同学", 2), "a": member("a的名字", 2)}, departments=[1, 2])
    # When the nightly sync runs
    report = sync_directory(wecom, store, FakeAudit())
    # Then nobody of the import-owned department is marked left: WeCom's listing says nothing about them
    assert {u: store.people[u].status for u in ("s1", "s2", "s3", "imp-teacher")} == dict.fromkeys(
        ("s1", "s2", "s3", "imp-teacher"), "active")
    assert store.people["s1"].department == "cs"
    # And a member of WeCom's own department whom WeCom no longer lists still is
    assert store.people["gone"].status == "left" and report.people_left == 1


def test_a_second_night_still_leaves_the_imported_class_alone():
    store = FakeStore([student(f"s{n}", "cs", "cs2101") for n in range(30)], CAMPUS)
    wecom = FakeWeCom({"s0": member("s0同学", 2)}, departments=[1, 2])
    for _ in range(2):
        report = sync_directory(wecom, store, FakeAudit())
        assert report.people_left == 0 and report.leavers_withheld == 0
    assert all(p.status == "active" for p in store.people.values())


def test_a_mass_departure_is_withheld_not_applied():
    # Given WeCom suddenly lists 1 of 40 people (the app's visible range shrank)
    store = FakeStore([staff(f"p{n:02d}", "2") for n in range(40)], CAMPUS)
    wecom = FakeWeCom({"p00": member("p00的名字", 2)}, departments=[1, 2])
    report = sync_directory(wecom, store, FakeAudit(), leaver_floor=10)
    assert report.leavers_withheld == 39 and report.people_left == 0
    assert all(p.status == "active" for p in store.people.values())


def test_an_empty_listing_aborts_before_touching_people():
    store = campus_store()
    with pytest.raises(SyncAborted):
        sync_directory(FakeWeCom({}, departments=[1, 2, 3]), store, FakeAudit())
    assert all(p == campus_store().people[u] for u, p in store.people.items())


def test_a_member_wecom_fails_to_describe_is_skipped_and_counted():
    store, wecom = campus_store(), campus_wecom()
    wecom.failing.add("new1")
    report = sync_directory(wecom, store, FakeAudit())
    assert "new1" not in store.people and "new2" in store.people
    assert report.lookups_failed == 1


def test_a_sync_write_that_loses_a_race_is_counted_and_left_for_next_night():
    store, wecom = campus_store(), campus_wecom()
    store.racing.add("gone")
    report = sync_directory(wecom, store, FakeAudit())
    assert report.conflicts == 1 and store.people["gone"].status == "active"


def test_the_report_holds_counts_only():
    report = sync_directory(campus_wecom(), campus_store(), FakeAudit()).as_dict()
    flat = str(report)
    assert all(name not in flat for name in ("新一", "new1", "gone"))
