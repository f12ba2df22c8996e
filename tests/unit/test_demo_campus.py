"""The generated demo population."""

from collections import Counter

import pytest

from infra.local.demo import CAST, CLASS_SIZE, CLASSES, DEPARTMENTS, generate_population


def test_the_named_cast_of_domain_md_is_complete():
    userids = {row[0] for row in CAST}
    assert {"admin", "hr01", "doc01", "xg01", "bw01", "hq01", "xl01", "leader01", "dean01", "fdy01", "fdy02",
            "t001", "t002", "w001"} <= userids
    assert {f"s{n:03d}" for n in range(1, 21)} <= userids
    students = {row[0]: row[4] for row in CAST if row[2] == "student"}
    assert [students[f"s{n:03d}"] for n in (1, 10, 11, 15, 16, 20)] == ["cs2001"] * 2 + ["cs2002"] * 2 + ["fl2001"] * 2


@pytest.mark.parametrize("size", [0, 1, 1000, 16022])
def test_population_size_mix_and_uniqueness(size):
    people, classes = generate_population(size)
    kinds = Counter(p.person_type for p in people)
    assert len(people) == size
    assert len({p.userid for p in people}) == size
    assert not {p.userid for p in people} & {row[0] for row in CAST}
    assert not {c.class_id for c in classes} & {row[0] for row in CLASSES}
    if size == 16022:
        assert kinds["student"] > 14_000 and 700 < kinds["staff"] < 800 and 400 < kinds["third_party"] < 450


def test_every_generated_student_is_in_a_class_of_their_department_with_a_counselor():
    people, classes = generate_population(1000)
    by_id = {c.class_id: c for c in classes}
    departments = {d for d, _, _ in DEPARTMENTS}
    counselors = {p.userid: p for p in people if "counselor" in p.roles}
    for person in people:
        assert person.department in departments
        if person.person_type == "student":
            school_class = by_id[person.class_id]
            assert school_class.department == person.department
            assert school_class.counselors and person.class_id in counselors[min(school_class.counselors)].counselor_of
    assert max(Counter(p.class_id for p in people if p.class_id).values()) <= CLASS_SIZE


def test_generation_is_deterministic():
    first = [p.attribute_values for p in generate_population(300)[0]]
    second = [p.attribute_values for p in generate_population(300)[0]]
    for a, b in zip(first, second):
        a.pop("updated_at"), b.pop("updated_at")
    assert first == second
