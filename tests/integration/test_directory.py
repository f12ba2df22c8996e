"""The directory tables and the demo campus, on moto's DynamoDB."""

from chalicelib.db.directory import ClassModel, DepartmentModel, DirectoryRepository, PersonModel
from infra.local.demo import load_demo_campus
from tests.support.aws_calls import recorded_aws_calls


def test_the_demo_campus_loads_the_cast_and_the_population():
    counts = load_demo_campus(DirectoryRepository(), size=200)
    assert (counts.departments, counts.people) == (9, 34 + 200)
    assert DepartmentModel.count() == 9
    assert ClassModel.get("cs2001").counselors == {"fdy01"}
    fdy01 = PersonModel.get("fdy01")
    assert (fdy01.roles, fdy01.counselor_of) == ({"counselor"}, {"cs2001", "cs2002"})
    assert PersonModel.get("dean01").dept_head_of == "cs"


def test_loading_twice_upserts_without_duplicates():
    repo = DirectoryRepository()
    load_demo_campus(repo, size=50)
    load_demo_campus(repo, size=50)
    assert PersonModel.count() == 34 + 50


def test_class_and_department_queries_use_the_indexes_not_scan():
    repo = DirectoryRepository()
    load_demo_campus(repo, size=100)
    with recorded_aws_calls() as calls:
        cs2001 = [p.userid for p in repo.students_of_class("cs2001")]
        xyy = [p.userid for p in repo.members_of_department("xyy")]
        missing = repo.get_person("nobody")
    assert cs2001 == [f"s{n:03d}" for n in range(1, 11)]
    assert "doc01" in xyy
    assert missing is None
    assert {op for _, op in calls} <= {"Query", "GetItem"}
