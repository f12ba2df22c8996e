"""POST /admin/directory/import: per-row errors by line, good rows land, nothing half-applied."""

from __future__ import annotations

import json

import pytest

from chalicelib.api import deps  # noqa: F401  (protector for the sealed-field check)
from chalicelib.db.audit import AuditRepository
from chalicelib.db.directory import ClassModel, DirectoryRepository, PersonModel
from tests.support.identity import call, load_cast, login

VALID_ID = "11010519491231002X"


@pytest.fixture
def admin(client):
    load_cast()
    return login(client, "admin")


def person(userid: str, **fields) -> dict:
    return {"userid": userid, "name": "新同学", "type": "student", "department": "cs", "class_id": "cs2001", **fields}


def test_good_rows_land_and_bad_rows_are_reported_by_line(client, admin):
    rows = [
        person("n001", id_number=VALID_ID),                # line 1: fine
        {"name": "无名", "type": "staff", "department": "cs"},  # line 2: missing userid
        person("n003", department="zz", class_id=None, type="staff"),  # line 3: unknown department
        person("n004", id_number="110105194912310021"),    # line 4: bad check character
        person("n001"),                                    # line 5: duplicate of line 1
        person("n006", class_id="fl2001"),                 # line 6: class of another department
        person("n007", roles=["superuser"]),               # line 7: unknown role
        person("n008"),                                    # line 8: fine
    ]
    status, report = call(client, "POST", "/admin/directory/import", admin, {"rows": rows})
    assert status == 200
    assert (report["created"], report["updated"], report["rejected"]) == (2, 0, 6)
    reasons = {e["line"]: e["reason"] for e in report["errors"]}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert "userid" in reasons[2] and "unknown department 'zz'" in reasons[3]
    assert "check character" in reasons[4] and "duplicate userid (first on line 1)" in reasons[5]
    assert "belongs to department 'fl'" in reasons[6] and "superuser" in reasons[7]
    assert VALID_ID not in json.dumps(report)
    repo = DirectoryRepository()
    assert sorted(repo.get_people(["n001", "n003", "n004", "n006", "n007", "n008"])) == ["n001", "n008"]
    stored = PersonModel.get("n001")
    assert stored.id_number_masked == "110105********002X"
    assert VALID_ID not in stored.id_number_sealed
    assert deps.protector().open("id_number", stored.id_number_sealed) == VALID_ID


def test_csv_uploads_report_file_lines(client, admin):
    csv_text = (
        "userid,name,type,department,class_id,roles,counselor_of,dept_head_of,status,card_no,id_number\n"
        "c001,甲,student,cs,cs2002,,,,active,S1,\n"
        "c002,乙,staff,cs,,counselor,cs2002;fl2001,,active,,\n"
        "c003,丙,student,cs,cs9999,,,,active,,\n"
    )
    status, report = call(client, "POST", "/admin/directory/import?first_line=100", admin, csv_text,
                          headers={"Content-Type": "text/csv"})
    assert status == 200, report
    assert report["created"] == 2
    assert report["errors"] == [{"line": 103, "userid": "c003", "reason": "unknown class 'cs9999'"}]
    assert ClassModel.get("fl2001").counselors == {"fdy02", "c002"}


def test_reimporting_changes_only_what_changed_and_ends_sessions_on_role_changes(client, admin):
    call(client, "POST", "/admin/directory/import", admin, {"rows": [person("r001"), person("r002")]})
    old_session = login(client, "r001")
    status, report = call(client, "POST", "/admin/directory/import", admin, {"rows": [
        person("r001", type="staff", class_id=None, roles=["counselor"], counselor_of=["cs2001"]),
        person("r002"),
    ]})
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 1, 1)
    assert PersonModel.get("r001").token_version == 1 and PersonModel.get("r002").token_version == 0
    assert call(client, "GET", "/me", old_session)[0] == 401
    assert "r001" in ClassModel.get("cs2001").counselors


def test_limits_and_mass_assignment(client, admin):
    status, body = call(client, "POST", "/admin/directory/import", admin, {"rows": [person(f"x{n}") for n in range(1001)]})
    assert (status, body["code"]) == (422, "invalid")
    assert call(client, "POST", "/admin/directory/import", admin, {"rows": []})[0] == 422
    assert call(client, "POST", "/admin/directory/import", admin, {"rows": [], "status": "x"})[0] == 422
    status, report = call(client, "POST", "/admin/directory/import", admin,
                          {"rows": [person("m001", token_version=99)]})
    assert report["rejected"] == 1 and "token_version" in report["errors"][0]["reason"]
    assert PersonModel.count("m001") == 0


def test_every_import_and_change_is_audited(client, admin):
    call(client, "POST", "/admin/directory/import", admin, {"rows": [person("a001")]})
    call(client, "PATCH", "/admin/people/a001", admin, {"status": "left"})
    events = AuditRepository().for_subject("person#a001")
    assert [(e.action, e.actor) for e in events] == [("person.change", "admin"), ("person.create", "admin")]
    assert events[0].detail == {"status": ["active", "left"]}
    assert events[1].detail["roles"] == [None, []] and events[1].detail["class_id"] == [None, "cs2001"]


def test_a_person_changed_during_the_import_is_not_overwritten(client, admin):
    # Given the import read s004 as active, and s004 left before the import wrote
    repo = DirectoryRepository()
    stale = repo.get_person("s004")
    call(client, "PATCH", "/admin/people/s004", admin, {"status": "left"})

    class StaleRead(DirectoryRepository):
        def get_people(self, userids):
            return {**super().get_people(userids), "s004": stale}

    from chalicelib.domain.access import Actor
    from chalicelib.domain.directory import import_people

    result = import_people([person("s004", name="改名"), person("n100")], StaleRead(), deps.protector(),
                           AuditRepository(), Actor("admin", "staff", "nic", frozenset({"it_admin"})))
    # Then that row is reported, the leaver stays left, and the other row landed
    assert [(e.userid, "changed by someone else" in e.reason) for e in result.errors] == [("s004", True)]
    assert (repo.get_person("s004").status, repo.get_person("s004").name) == ("left", "学生04")
    assert result.created == 1 and repo.get_person("n100") is not None


def test_nobody_changes_their_own_authority(client, admin):
    status, body = call(client, "PATCH", "/admin/people/admin", admin, {"roles": ["it_admin", "hospital"]})
    assert (status, body["code"]) == (403, "forbidden")
    status, report = call(client, "POST", "/admin/directory/import", admin, {"rows": [
        {"userid": "admin", "name": "王建国", "type": "staff", "department": "nic", "roles": ["it_admin", "hospital"]}]})
    assert report["rejected"] == 1 and "your own roles" in report["errors"][0]["reason"]
    assert PersonModel.get("admin").roles == {"it_admin"}


def test_absent_columns_keep_what_is_stored(client, admin):
    call(client, "POST", "/admin/directory/import", admin, {"rows": [person("k001", id_number=VALID_ID, card_no="C9")]})
    call(client, "PATCH", "/admin/people/k001", admin, {"status": "left"})
    status, report = call(client, "POST", "/admin/directory/import", admin, {"rows": [person("k001", name="新名字")]})
    stored = PersonModel.get("k001")
    assert (report["updated"], stored.name, stored.status, stored.card_no) == (1, "新名字", "left", "C9")
    assert stored.id_number_masked == "110105********002X"


def test_userids_ignore_case_like_wecom(client, admin):
    status, report = call(client, "POST", "/admin/directory/import", admin,
                          {"rows": [person("Case01"), person("CASE01")]})
    assert report["created"] == 1 and "duplicate userid" in report["errors"][0]["reason"]
    assert PersonModel.get("case01").name == "新同学"


def test_a_rerun_repairs_the_class_counselor_lists(client, admin):
    row = person("k2", type="staff", class_id=None, roles=["counselor"], counselor_of=["cs2002"])
    call(client, "POST", "/admin/directory/import", admin, {"rows": [row]})
    # Given an interrupted earlier run left the class without its counselor
    DirectoryRepository().move_counselors({"cs2002": (set(), {"k2"})})
    # When the same file is imported again, then the person is unchanged but the class is repaired
    status, report = call(client, "POST", "/admin/directory/import", admin, {"rows": [row]})
    assert report["unchanged"] == 1
    assert "k2" in ClassModel.get("cs2002").counselors


def test_malformed_inputs_are_4xx_not_500(client, admin):
    for change in ({"roles": None}, {"status": None}, {"class_id": ""}, {"dept_head_of": ""},
                   {"counselor_of": ["x" * 40]}, {"status": "gone"}):
        status, body = call(client, "PATCH", "/admin/people/t002", admin, change)
        assert status == 422, (change, body)
    assert call(client, "PATCH", "/admin/people/t002", admin, {})[0] == 422
    assert call(client, "GET", "/admin/people/" + "x" * 3000, admin)[0] == 404
    huge = "userid,name\n" + '"' + "x" * 200_000 + '",y\n'
    status, body = call(client, "POST", "/admin/directory/import", admin, huge, headers={"Content-Type": "text/csv"})
    assert (status, body["code"]) == (400, "bad_request")
    assert call(client, "POST", "/admin/directory/import", admin, b"\xff\xfe", headers={"Content-Type": "text/csv"})[0] == 400


def test_leaving_through_an_import_ends_the_session_at_the_next_request(client, admin):
    session = login(client, "s005")
    assert call(client, "GET", "/me", session)[0] == 200
    status, report = call(client, "POST", "/admin/directory/import", admin,
                          {"rows": [person("s005", name="学生05", status="left")]})
    assert report["updated"] == 1
    assert call(client, "GET", "/me", session)[0] == 401
    assert call(client, "POST", "/auth/dev-login", body={"userid": "s005"})[0] == 403
