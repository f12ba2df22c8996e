"""Suggestions over HTTP: filings collected by the hook, listed by topic, exported as CSV for Excel."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import suggestions as suggestions_area
from chalicelib.api.deps import hall as service_hall
from chalicelib.catalogue import shipped_definitions
from chalicelib.db.suggestions import SuggestionModel
from chalicelib.domain.suggestions import CSV_HEADER
from tests.support.hall import open_campus
from tests.support.identity import call

NOW = datetime(2026, 12, 1, 2, 10, tzinfo=timezone.utc)  # 10:10 on campus
SERVICE = "five-year-plan-suggestions"


@pytest.fixture
def campus(client: Client) -> Iterator[dict[str, str]]:
    with time_machine.travel(NOW, tick=True):
        yield open_campus(client)


def suggest(client: Client, token: str, topic: str, title: str, content: str, **extra: Any) -> str:
    status, app = call(client, "POST", f"/services/{SERVICE}/applications", token,
                       {"data": {"topic": topic, "title": title, "content": content, **extra}})
    assert status == 201, app
    assert app["status"] == "approved"  # a filing: approved when filed
    return suggestions_area._pseudonym(app["id"])  # the suggestion's id: not the application's


def with_anonymity_field(client: Client, admin: str) -> None:
    """The IT centre publishes a version of the service whose form has an 'anonymous' checkbox."""
    definition = json.loads(shipped_definitions()[SERVICE].model_dump_json())
    definition["fields"].append({"name": "anonymous", "label": "匿名提交", "type": "bool"})
    status, body = call(client, "PUT", f"/admin/services/{SERVICE}", admin, definition)
    assert status == 200, body


def parse_csv(raw: bytes) -> list[list[str]]:
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def test_filings_are_collected_with_their_author_and_listed_newest_first(client: Client,
                                                                          campus: dict[str, str]) -> None:
    # Given a student, a teacher and a contractor file suggestions
    first = suggest(client, campus["s001"], "teaching", "增加实践课程", "建议每学期安排实践周。", mobile="13800138000")
    second = suggest(client, campus["t001"], "research", "科研平台", "共建联合实验室。")
    third = suggest(client, campus["w001"], "campus", "食堂", "延长晚餐时间。")

    # When a leader lists them
    status, page = call(client, "GET", "/suggestions", campus["leader01"])

    # Then they are there, newest first, with the topic label and the author; the mobile is never copied
    assert status == 200, page
    assert [s["id"] for s in page["items"]] == [third, second, first] and page["next"] is None
    oldest = page["items"][-1]
    assert (oldest["topic"], oldest["topic_label"], oldest["title"], oldest["author"], oldest["author_name"],
            oldest["author_department"], oldest["anonymous"]) == (
        "teaching", "人才培养", "增加实践课程", "s001", "学生01", "计算机学院", False)
    assert "13800138000" not in json.dumps(page, ensure_ascii=False)
    # and by topic, one page at a time
    assert [s["id"] for s in call(client, "GET", "/suggestions?topic=research", campus["xg01"])[1]["items"]] == [
        second]
    page = call(client, "GET", "/suggestions?limit=2", campus["admin"])[1]
    assert [s["id"] for s in page["items"]] == [third, second] and page["next"]
    page = call(client, "GET", f"/suggestions?limit=2&next={page['next']}", campus["admin"])[1]
    assert [s["id"] for s in page["items"]] == [first] and page["next"] is None


@pytest.mark.parametrize(("userid", "expected"), [("leader01", 200), ("admin", 200), ("xg01", 200), ("s001", 403),
                                                  ("t001", 403), ("dean01", 403), ("hr01", 403), ("hq01", 403)])
def test_only_leaders_the_it_centre_and_student_affairs_read_them(client: Client, campus: dict[str, str],
                                                                   userid: str, expected: int) -> None:
    # Given one suggestion
    suggest(client, campus["s001"], "other", "建议", "内容")
    # When each role lists and exports, then only the three reader roles may
    assert call(client, "GET", "/suggestions", campus[userid])[0] == expected
    assert client.http.get("/suggestions/export",
                           headers={"Authorization": f"Bearer {campus[userid]}"}).status_code == expected


def test_the_export_is_excel_friendly_csv_and_anonymous_authors_are_blank(client: Client,
                                                                           campus: dict[str, str]) -> None:
    # Given an attributed suggestion, then an anonymous one under the new version, with a formula-like text
    first = suggest(client, campus["t001"], "faculty", "引进人才", "建议设立青年英才计划，\n分三年实施。")
    with_anonymity_field(client, campus["admin"])
    second = suggest(client, campus["s016"], "governance", "=HYPERLINK(\"http://x\")", "匿名意见", anonymous=True)

    # When student affairs exports
    response = client.http.get("/suggestions/export", headers={"Authorization": f"Bearer {campus['xg01']}"})

    # Then it is a CSV attachment, UTF-8 with BOM, that parses back to the data, oldest first
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{SERVICE}-20261201.csv"')
    assert "X-Next-Cursor" not in response.headers
    rows = parse_csv(response.body)
    assert rows[0] == list(CSV_HEADER)
    assert rows[1][0] == first and rows[1][2:] == ["师资队伍", "引进人才", "建议设立青年英才计划，\n分三年实施。", "0",
                                                   "孙老师", "t001", "计算机学院"]
    assert rows[1][1].startswith("2026-12-01T10:1") and rows[1][1].endswith("+08:00")  # campus time
    # and the anonymous one has blank author columns; the formula is neutralised
    assert rows[2][0] == second and rows[2][2] == "治理体系" and rows[2][3] == "'=HYPERLINK(\"http://x\")"
    assert rows[2][6:] == ["", "", ""]
    assert len(rows) == 3
    # and nothing about the anonymous author is stored at all
    stored = SuggestionModel.get(second).record
    assert "s016" not in stored and "fl" not in json.loads(stored).values()
    # and the export is audited (who exported, not what)
    from chalicelib.db.audit import AuditRepository

    assert [e.action for e in AuditRepository().for_subject(f"suggestions#{SERVICE}")] == ["suggestions.export"]


def test_a_large_export_continues_in_the_next_file(client: Client, campus: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Given five suggestions and a file size that holds three of them
    ids = [suggest(client, campus["s001"], "campus", f"建议{n}", "内容" * 900) for n in range(5)]
    monkeypatch.setenv("SUGGESTIONS_EXPORT_MAX_BYTES", "20000")
    # When the leader exports file after file
    seen: list[str] = []
    next_cursor = None
    for _ in range(5):
        path = "/suggestions/export" + (f"?next={next_cursor}" if next_cursor else "")
        response = client.http.get(path, headers={"Authorization": f"Bearer {campus['leader01']}"})
        assert response.status_code == 200 and len(response.body) <= 20000
        rows = parse_csv(response.body)
        assert rows[0] == list(CSV_HEADER)  # every file stands alone
        seen += [row[0] for row in rows[1:]]
        next_cursor = response.headers.get("X-Next-Cursor")
        if not next_cursor:
            break
    # Then every suggestion came exactly once, in filing order
    assert seen == ids


def test_the_hook_collects_once_and_a_cancelled_filing_leaves(client: Client, campus: dict[str, str]) -> None:
    # Given a collected suggestion
    suggestion_id = suggest(client, campus["s001"], "culture", "校史馆", "扩建校史馆。")
    app_id = call(client, "GET", "/applications", campus["s001"])[1]["items"][0]["id"]
    assert suggestion_id != app_id
    app = service_hall().applications.get(app_id)
    assert app is not None
    # When the hook runs again for the same filing (a retry)
    suggestions_area.collect_suggestion(app, app.history[-1])
    suggestions_area.collect_suggestion(app, app.history[-1])
    # Then it is listed once
    assert [s["id"] for s in call(client, "GET", "/suggestions", campus["leader01"])[1]["items"]] == [suggestion_id]
    # and when its author cancels the filing, it is taken out (twice is harmless)
    assert call(client, "POST", f"/applications/{app_id}/cancel", campus["s001"])[1]["status"] == "cancelled"
    cancelled = service_hall().applications.get(app_id)
    suggestions_area.collect_suggestion(cancelled, cancelled.history[-1])
    assert call(client, "GET", "/suggestions", campus["leader01"])[1]["items"] == []


def test_bad_queries_are_refused_with_the_field(client: Client, campus: dict[str, str]) -> None:
    status, error = call(client, "GET", "/suggestions?topic=Bad%20Topic", campus["leader01"])
    assert (status, set(error["fields"])) == (422, {"topic"})
    status, error = call(client, "GET", "/suggestions?limit=0", campus["leader01"])
    assert (status, set(error["fields"])) == (422, {"limit"})
    status, error = call(client, "GET", "/suggestions/export?anything=1", campus["leader01"])
    assert (status, set(error["fields"])) == (422, {"anything"})
