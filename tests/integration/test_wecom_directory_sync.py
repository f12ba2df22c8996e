"""sync_wecom_directory under moto: the scheduled event from events/, WeCom's directory injected."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.api import wecom_callback
from chalicelib.db.audit import AuditRepository
from chalicelib.db.directory import DepartmentModel, DirectoryRepository, PersonModel
from tests.conftest import PROJECT_DIR
from tests.support.aws_calls import recorded_aws_calls
from tests.support.identity import call, login

SCHEDULED_EVENT = json.loads((PROJECT_DIR / "events" / "wecom_scheduled_sync_wecom_directory.json").read_text())
WRITES = {"PutItem", "BatchWriteItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}


class FakeWeCom:
    """WeCom's directory API (department/simplelist, user/list_id, user/get), in memory."""

    def __init__(self, departments: list[int], members: dict[str, dict[str, Any]]) -> None:
        self.departments = departments
        self.members = members
        self.lookups: list[str] = []

    def department_simplelist(self) -> list[dict[str, Any]]:
        return [{"id": d, "parentid": 0 if d == 1 else 1, "order": 1} for d in self.departments]

    def user_list_id(self) -> Iterator[dict[str, Any]]:
        for userid, member in self.members.items():
            for department in member["department"]:
                yield {"userid": userid, "department": department}

    def user_get(self, userid: str) -> dict[str, Any] | None:
        self.lookups.append(userid)
        member = next((m for u, m in self.members.items() if u.lower() == userid), None)
        return {"userid": userid, **member} if member else None


def member(name: str, *departments: int, status: int = 1) -> dict[str, Any]:
    return {"name": name, "department": list(departments), "main_department": departments[0], "status": status}


@pytest.fixture
def campus() -> DirectoryRepository:
    """A campus onboarded from WeCom: its departments are WeCom's numbers."""
    repo = DirectoryRepository()
    repo.put_departments([DepartmentModel(dept_id="1", name="某大学", kind="office"),
                          DepartmentModel(dept_id="2", name="计算机学院", kind="college"),
                          DepartmentModel(dept_id="3", name="网络信息中心", kind="office")])
    repo.put_people([
        PersonModel(userid="admin", name="王建国", person_type="staff", department="3", roles={"it_admin"}),
        PersonModel(userid="t001", name="孙老师", person_type="staff", department="2"),
        PersonModel(userid="t002", name="马老师", person_type="staff", department="2"),
        PersonModel(userid="t003", name="赵老师", person_type="staff", department="3"),
    ])
    return repo


@pytest.fixture
def wecom(monkeypatch) -> FakeWeCom:
    fake = FakeWeCom([1, 2, 3, 4], {
        "admin": member("王建国", 3),
        "t001": member("孙老师", 3),        # moved from 2 to 3
        "t003": member("赵老师", 3),
        "T004": member("钱老师", 4),        # new, in a department the directory lacks
        # t002 is gone from WeCom
    })
    monkeypatch.setattr(wecom_callback, "wecom_api", lambda: fake)
    return fake


def sync(client) -> dict[str, Any]:
    return client.lambda_.invoke("sync_wecom_directory", SCHEDULED_EVENT).payload


def test_the_nightly_sync_adds_moves_and_marks_leavers(client, campus, wecom):
    t002_session = login(client, "t002")
    # When the scheduled event fires
    with recorded_aws_calls() as calls:
        report = sync(client)
    # Then the directory follows WeCom
    t004 = campus.get_person("t004")
    assert (t004.name, t004.person_type, t004.department, t004.status) == ("钱老师", "staff", "4", "active")
    assert DepartmentModel.get("4").name == "企业微信部门 4"
    t001 = campus.get_person("t001")
    assert (t001.department, t001.token_version) == ("3", 1)
    t002 = campus.get_person("t002")
    assert (t002.status, t002.token_version) == ("left", 1)
    assert call(client, "GET", "/me", t002_session)[0] == 401
    assert campus.get_person("admin").token_version == 0
    # And the counts are reported (no names), having looked up only the new and the moved
    assert {k: report[k] for k in ("departments_created", "people_created", "people_updated", "people_left",
                                   "unchanged", "wecom_members")} == {
        "departments_created": 1, "people_created": 1, "people_updated": 1, "people_left": 1, "unchanged": 2,
        "wecom_members": 4}
    assert sorted(wecom.lookups) == ["t001", "t004"]
    # And the directory was read through keys and indexes, never scanned
    assert "Scan" not in {op for _, op in calls}
    # And every change is audited under the sync's name
    assert [e.action for e in AuditRepository().for_subject("person#t002")] == ["person.change"]
    assert {e.actor for e in AuditRepository().for_subject("person#t004")} == {"wecom-sync"}


def test_a_second_run_writes_nothing(client, campus, wecom):
    sync(client)
    wecom.lookups.clear()
    with recorded_aws_calls() as calls:
        report = sync(client)
    assert not WRITES & {op for _, op in calls}
    assert wecom.lookups == []
    assert (report["people_created"], report["people_updated"], report["people_left"]) == (0, 0, 0)


def test_people_of_import_owned_departments_keep_their_department_and_are_never_marked_left(client, campus, wecom):
    # Given a department imported under the campus's own code, with a teacher and a class of which
    # only one student has joined WeCom so far
    campus.put_departments([DepartmentModel(dept_id="cs", name="计算机学院", kind="college")])
    campus.put_people([PersonModel(userid="fdy09", name="吴辅导", person_type="staff", department="cs"),
                       PersonModel(userid="gone09", name="未加入", person_type="staff", department="cs"),
                       *(PersonModel(userid=f"s2101{n:02d}", name=f"学生{n}", person_type="student", department="cs",
                                     class_id="cs2101") for n in range(1, 6))])
    wecom.members["fdy09"] = member("吴辅导", 2)
    wecom.members["s210101"] = member("学生1", 2)
    student_session = login(client, "s210102")
    # When the nightly sync runs
    report = sync(client)
    # Then they keep their department, and nobody there is marked left (only t002, of WeCom's own)
    assert campus.get_person("fdy09").department == "cs"
    imported = ["fdy09", "gone09", *(f"s2101{n:02d}" for n in range(1, 6))]
    assert {campus.get_person(u).status for u in imported} == {"active"}
    assert report["people_left"] == 1 and campus.get_person("t002").status == "left"
    assert call(client, "GET", "/me", student_session)[0] == 200


def test_an_empty_wecom_listing_changes_nobody(client, campus, monkeypatch):
    monkeypatch.setattr(wecom_callback, "wecom_api", lambda: FakeWeCom([1, 2, 3], {}))
    with pytest.raises(Exception, match="no members"):
        sync(client)
    assert {p.status for p in PersonModel.batch_get(["admin", "t001", "t002", "t003"])} == {"active"}
