"""The demo campus of DOMAIN.md: the named cast (e2e tests rely on these ids) plus a generated
population in the reference campus's proportions (783 staff : 14,924 students : 432 third-party).

Generation is deterministic: the same ``size`` always gives the same people.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TextIO
from dataclasses import dataclass

from chalicelib.db.directory import ClassModel, DepartmentModel, DirectoryRepository, PersonModel
from chalicelib.domain.identity import id_check_char

DEPARTMENTS = [
    ("cs", "计算机学院", "college"),
    ("fl", "外国语学院", "college"),
    ("rsc", "人事处", "office"),
    ("xyy", "校医院", "office"),
    ("xgb", "学工部", "office"),
    ("bwc", "保卫处", "office"),
    ("nic", "网络信息中心", "office"),
    ("hq", "后勤处", "office"),
    ("xlzx", "心理健康教育中心", "office"),
]

CLASSES = [
    ("cs2001", "计算机2001班", "cs", ["fdy01"]),
    ("cs2002", "计算机2002班", "cs", ["fdy01"]),
    ("fl2001", "外语2001班", "fl", ["fdy02"]),
]

# userid, name, type, department, class, roles, counselor of, dept head of
CAST: list[tuple[str, str, str, str, str | None, set[str], set[str], str | None]] = [
    ("admin", "王建国", "staff", "nic", None, {"it_admin"}, set(), None),
    ("hr01", "李秀英", "staff", "rsc", None, {"hr"}, set(), None),
    ("doc01", "张医生", "staff", "xyy", None, {"hospital"}, set(), None),
    ("xg01", "刘学工", "staff", "xgb", None, {"student_affairs"}, set(), None),
    ("bw01", "陈保卫", "staff", "bwc", None, {"security"}, set(), None),
    ("hq01", "杨后勤", "staff", "hq", None, {"logistics"}, set(), None),
    ("xl01", "赵心理", "staff", "xlzx", None, {"psych_center"}, set(), None),
    ("leader01", "黄校长", "staff", "nic", None, {"leader"}, set(), None),
    ("dean01", "周院长", "staff", "cs", None, {"dept_head"}, set(), "cs"),
    ("fdy01", "吴辅导", "staff", "cs", None, {"counselor"}, {"cs2001", "cs2002"}, None),
    ("fdy02", "郑辅导", "staff", "fl", None, {"counselor"}, {"fl2001"}, None),
    ("t001", "孙老师", "staff", "cs", None, set(), set(), None),
    ("t002", "马老师", "staff", "fl", None, set(), set(), None),
    ("w001", "胡师傅", "third_party", "hq", None, set(), set(), None),
]
for _n in range(1, 21):
    _class = "cs2001" if _n <= 10 else "cs2002" if _n <= 15 else "fl2001"
    CAST.append((f"s{_n:03d}", f"学生{_n:02d}", "student", _class[:2], _class, set(), set(), None))

REFERENCE = {"staff": 783, "student": 14_924, "third_party": 432}
CLASS_SIZE = 40
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉玲建林宇浩然欣怡子涵梓轩佳琪思雨晨阳博文一诺雅婷"


@dataclass(frozen=True)
class DemoCounts:
    departments: int
    classes: int
    people: int


class LoadCancelled(Exception):
    """The load was cancelled (the stack is stopping)."""


def load_demo_campus(repo: DirectoryRepository, size: int = 1000, cancel: threading.Event | None = None) -> DemoCounts:
    """Write the cast and ``size`` generated people (upsert: safe to run on a loaded campus).

    Raises:
        LoadCancelled: ``cancel`` was set; what was written so far stays (every write is an upsert).
    """
    generated_people, generated_classes = generate_population(size)
    classes = [ClassModel(class_id=c, name=n, department=d, counselors=set(f)) for c, n, d, f in CLASSES]
    classes += generated_classes
    departments = repo.put_departments(DepartmentModel(dept_id=d, name=n, kind=k) for d, n, k in DEPARTMENTS)
    class_count = repo.put_classes(classes)
    people = repo.put_people(_cast_people())
    people += repo.put_people(_until(cancel, generated_people))
    return DemoCounts(departments=departments, classes=class_count, people=people)


def wecom_members(size: int) -> dict[str, dict[str, Any]]:
    """The demo campus as WeCom's contacts would list it (for the fake WeCom peer): everyone in
    the root department, active."""
    people = [(row[0], row[1]) for row in CAST] + [(p.userid, p.name) for p in generate_population(size)[0]]
    return {userid: {"name": name, "department": [1], "main_department": 1, "status": 1} for userid, name in people}


def _until(cancel: threading.Event | None, items: list[PersonModel]) -> Iterator[PersonModel]:
    for number, item in enumerate(items):
        if cancel is not None and number % 250 == 0 and cancel.is_set():
            raise LoadCancelled()
        yield item


def _cast_people() -> Iterator[PersonModel]:
    for number, (userid, name, ptype, dept, class_id, roles, counselor_of, head_of) in enumerate(CAST, start=1):
        yield PersonModel(
            userid=userid,
            name=name,
            person_type=ptype,
            department=dept,
            class_id=class_id,
            roles=roles,
            counselor_of=counselor_of,
            dept_head_of=head_of,
            card_no=f"D{number:07d}",
        )


def _split(size: int) -> tuple[int, int, int]:
    """(staff, students, third party) for ``size`` people in the reference proportions."""
    total = sum(REFERENCE.values())
    staff = round(size * REFERENCE["staff"] / total)
    third_party = round(size * REFERENCE["third_party"] / total)
    return staff, size - staff - third_party, third_party


REFERENCE_SIZE = 16_022


def generate_population(size: int, seed: int = 2020) -> tuple[list[PersonModel], list[ClassModel]]:
    """``size`` people split like the reference campus, students in classes of 40.

    The classes are always those of the reference campus (or more, past its size), whatever
    ``size`` is, so that a generated import file of any size up to 16,022 finds its classes in a
    stack started with fewer people. A class has a counselor when its generated counselor exists.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    rng = random.Random(seed)
    staff, students, third_party = _split(size)
    colleges = [d for d, _, kind in DEPARTMENTS if kind == "college"]
    offices = [d for d, _, kind in DEPARTMENTS if kind == "office"]

    people: list[PersonModel] = []
    classes: list[ClassModel] = []
    class_count = -(-max(students, _split(REFERENCE_SIZE)[1]) // CLASS_SIZE)
    counselors = [f"gt{n:05d}" for n in range(1, class_count + 1)]
    for index in range(class_count):
        college = colleges[index % len(colleges)]
        year = 21 + (index // len(colleges)) % 4
        class_id = f"{college}{year}{index // (len(colleges) * 4) + 1:02d}"
        classes.append(
            ClassModel(
                class_id=class_id,
                name=f"{college.upper()}{year}级{index // (len(colleges) * 4) + 1}班",
                department=college,
                counselors={counselors[index]} if index < staff else set(),
            )
        )

    def name() -> str:
        return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))

    counselor_classes: dict[str, list[ClassModel]] = {}
    for school_class in classes:
        for userid in school_class.counselors:
            counselor_classes.setdefault(userid, []).append(school_class)
    for n in range(1, staff + 1):
        userid = f"gt{n:05d}"
        own_classes = counselor_classes.get(userid, [])
        department = own_classes[0].department if own_classes else rng.choice(colleges + offices)
        people.append(
            PersonModel(
                userid=userid,
                name=name(),
                person_type="staff",
                department=department,
                roles={"counselor"} if own_classes else set(),
                counselor_of={c.class_id for c in own_classes},
                card_no=f"T{n:07d}",
            )
        )
    for n in range(1, students + 1):
        school_class = classes[(n - 1) // CLASS_SIZE]
        people.append(
            PersonModel(
                userid=f"gs{n:06d}",
                name=name(),
                person_type="student",
                department=school_class.department,
                class_id=school_class.class_id,
                card_no=f"S{n:07d}",
            )
        )
    for n in range(1, third_party + 1):
        people.append(
            PersonModel(
                userid=f"gw{n:05d}",
                name=name(),
                person_type="third_party",
                department="hq",
                card_no=f"W{n:07d}",
            )
        )
    return people, classes


CSV_COLUMNS = ["userid", "name", "type", "department", "class_id", "roles", "counselor_of", "dept_head_of",
               "status", "card_no", "id_number"]


def demo_id_number(n: int) -> str:
    """A well-formed (GB 11643 checksum) but fictitious ID number, distinct for each ``n``."""
    born = date(1970, 1, 1) + timedelta(days=n % 15_000)
    first17 = f"370102{born:%Y%m%d}{n % 1000:03d}"
    return first17 + id_check_char(first17)


def write_people_csv(people: Iterable[PersonModel], stream: TextIO) -> int:
    """Write people in the directory import's CSV format, with fictitious ID numbers; return the count."""
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for p in people:
        writer.writerow([p.userid, p.name, p.person_type, p.department, p.class_id or "",
                         ";".join(sorted(p.roles or ())), ";".join(sorted(p.counselor_of or ())),
                         p.dept_head_of or "", p.status, p.card_no or "", demo_id_number(count)])
        count += 1
    return count


if __name__ == "__main__":
    # python -m infra.local.demo <people> <file.csv>: a generated import file (for `make import`).
    people_count, target = int(sys.argv[1]), sys.argv[2]
    with open(target, "w", encoding="utf-8", newline="") as out:
        written = write_people_csv(generate_population(people_count)[0], out)
    print(f"wrote {written} people to {target}")
