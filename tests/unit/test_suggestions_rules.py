"""Suggestions: what the hook collects, anonymity, and the CSV shaping (BOM, campus time, injection, size)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from chalicelib.catalogue import shipped_definitions
from chalicelib.domain.suggestions import (
    BOM,
    CSV_HEADER,
    Suggestion,
    SuggestionBox,
    export_filename,
    render_csv,
    safe_cell,
    suggestion_from,
    topic_labels,
)
from chalicelib.domain.workflow import Applicant, act_as_applicant, became_approved, file_application, was_cancelled
from chalicelib.domain.access import Actor

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFINITION = shipped_definitions()["five-year-plan-suggestions"]
LABELS = topic_labels(DEFINITION)


def filing(**data):
    form = {"topic": "teaching", "title": "标题", "content": "内容", **data}
    return file_application(DEFINITION, Applicant("t001", "staff", "cs"), form, (), NOW)


def test_the_shipped_form_is_a_filing_collected_at_once_and_dropped_when_cancelled() -> None:
    app = filing()
    assert app.status == "approved" and became_approved(app, app.history[-1])
    author = Actor(userid="t001", person_type="staff", department="cs")
    cancelled = act_as_applicant(app, author, "cancel", "", NOW)
    assert not became_approved(cancelled, cancelled.history[-1]) and was_cancelled(cancelled, cancelled.history[-1])


def test_topic_labels_come_from_the_shipped_form() -> None:
    assert LABELS["teaching"] == "人才培养" and LABELS["governance"] == "治理体系" and len(LABELS) == 7


def test_an_attributed_suggestion_keeps_its_author_and_never_the_mobile() -> None:
    s = suggestion_from(filing(mobile="13800138000", attachments=["uploads/a"]), LABELS, "孙老师", "计算机学院")
    assert (s.author, s.author_name, s.author_department, s.anonymous, s.attachments, s.topic_label) == (
        "t001", "孙老师", "计算机学院", False, 1, "人才培养")
    assert "13800138000" not in repr(s)


def test_an_anonymous_suggestion_has_no_author_at_all() -> None:
    s = suggestion_from(filing(anonymous=True), LABELS, "孙老师", "计算机学院")
    assert (s.anonymous, s.author, s.author_name, s.author_department) == (True, None, None, None)
    # only a real true counts: a string or a missing flag is not a request for anonymity
    assert suggestion_from(filing(anonymous="yes"), LABELS, "孙老师", None).author == "t001"


def test_the_box_does_not_even_look_up_an_anonymous_author() -> None:
    looked_up: list[str] = []

    class Directory:
        def get_person(self, userid, *, consistent=False):
            looked_up.append(userid)
            return SimpleNamespace(name="孙老师")

        def departments(self, ids):
            return {d: SimpleNamespace(name="计算机学院") for d in ids}

    stored: list[Suggestion] = []
    store = SimpleNamespace(create=lambda s: stored.append(s) or True)
    box = SuggestionBox(store=store, directory=Directory(),  # type: ignore[arg-type]
                        definition_of=lambda service_id, version: DEFINITION, tz=SHANGHAI,
                        pseudonym=lambda app_id: f"p-{app_id[::-1]}")
    anonymous = filing(anonymous=True)
    box.on_transition(anonymous, anonymous.history[-1])
    assert looked_up == [] and stored[0].author is None
    assert stored[0].suggestion_id == f"p-{anonymous.app_id[::-1]}"  # not the application id
    named = filing()
    box.on_transition(named, named.history[-1])
    assert looked_up == ["t001"] and (stored[1].author_name, stored[1].author_department) == ("孙老师", "计算机学院")


@pytest.mark.parametrize(("value", "cell"), [("=1+1", "'=1+1"), ("+86", "'+86"), ("-2", "'-2"),
                                             ("@SUM(A1)", "'@SUM(A1)"), ("普通文字", "普通文字"), (None, ""), (3, "3")])
def test_cells_that_excel_would_run_are_neutralised(value, cell) -> None:
    assert safe_cell(value) == cell


def sample(n: int, **changes) -> Suggestion:
    base = Suggestion(suggestion_id=f"id{n}", campaign="five-year-plan-suggestions", topic="campus",
                      topic_label="校园建设", title=f"标题{n}", content="内容，含逗号,和\"引号\"\n换行",
                      filed_at=(NOW + timedelta(minutes=n)).isoformat(), attachments=0, anonymous=False,
                      author="s001", author_name="学生01", author_department="计算机学院")
    return replace(base, **changes)


def test_csv_is_utf8_with_bom_in_campus_time_and_parses_back() -> None:
    rows = [("k0", sample(0)), ("k1", sample(1, anonymous=True, author=None, author_name=None,
                                                  author_department=None))]
    text, position = render_csv(rows, SHANGHAI, 1_000_000)
    assert text.startswith(BOM) and position is None
    parsed = list(csv.reader(io.StringIO(text[1:], newline="")))
    assert parsed[0] == list(CSV_HEADER)
    assert parsed[1] == ["id0", "2026-12-01T10:00:00+08:00", "校园建设", "标题0", "内容，含逗号,和\"引号\"\n换行", "0",
                         "学生01", "s001", "计算机学院"]
    assert parsed[2][6:] == ["", "", ""]


def test_csv_stops_before_the_size_limit_and_says_where_to_go_on() -> None:
    rows = [(f"k{n}", sample(n)) for n in range(10)]
    whole, _ = render_csv(rows, SHANGHAI, 1_000_000)
    line = (len(whole.encode()) - len(render_csv([], SHANGHAI, 1_000_000)[0].encode())) // 10
    header = len(render_csv([], SHANGHAI, 1_000_000)[0].encode())
    text, position = render_csv(iter(rows), SHANGHAI, header + 3 * line + line // 2)
    assert position == "k2" and len(list(csv.reader(io.StringIO(text[1:], newline="")))) == 4
    # and a single row larger than the limit is still exported (a file is never empty)
    text, position = render_csv(iter(rows), SHANGHAI, 10)
    assert position == "k0" and "id0" in text


def test_the_file_name_is_ascii_and_dated_by_the_campus_day() -> None:
    late = datetime(2026, 12, 1, 17, 0, tzinfo=timezone.utc)  # already the 2nd in Shanghai
    assert export_filename("five-year-plan-suggestions", "campus", late, SHANGHAI) == (
        "five-year-plan-suggestions-campus-20261202.csv")
