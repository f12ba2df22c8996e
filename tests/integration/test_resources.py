"""The resource wing over HTTP: the catalogue by audience, opening through WebVPN, CARSI or
directly, the IT centre's changes, and visit statistics equal to the openings made."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from threading import Barrier
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.catalogue import shipped_resources
from chalicelib.domain.webvpn import WebVpn
from tests.support.hall import Tokens, open_campus
from tests.support.identity import call

MORNING = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 on campus
GATEWAY = WebVpn("https://webvpn.sdwu.edu.cn")  # the local stage's gateway, vendor key
IDP = "https://idp.sdwu.edu.cn/idp/shibboleth"
SHIPPED = shipped_resources()


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


def go(client: Client, token: str, resource_id: str, accept: str | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"}
    if accept:
        headers["Accept"] = accept
    response = client.http.get(f"/resources/{resource_id}/go", headers=headers)
    body = response.body.decode() if isinstance(response.body, bytes) else response.body
    return response.status_code, response.headers, body


def listed(client: Client, token: str, query: str = "") -> dict[str, list[str]]:
    status, body = call(client, "GET", f"/resources{query}", token)
    assert status == 200, body
    return {group["category"]: [item["id"] for item in group["items"]] for group in body["categories"]}


# -- the catalogue by audience -----------------------------------------------------------------
@pytest.mark.parametrize(("userid", "person_type"), [("s001", "student"), ("t001", "staff"), ("w001", "third_party")])
def test_each_reader_sees_exactly_the_resources_meant_for_them(client: Client, tokens: Tokens, userid: str,
                                                                person_type: str) -> None:
    seen = listed(client, tokens[userid])
    expected = {r.id for r in SHIPPED.values() if person_type in r.audience.types}
    assert {rid for ids in seen.values() for rid in ids} == expected
    assert list(seen) == [c for c in ("literature", "campus_system", "virtual_lab", "course_platform", "meeting_live")
                          if c in seen]  # catalogue order


def test_a_student_gets_the_26_databases_and_no_staff_system(client: Client, tokens: Tokens) -> None:
    seen = listed(client, tokens["s001"])
    assert len(seen["literature"]) == 26
    assert seen["literature"][:3] == ["cnki", "cqvip", "wanfang"]
    assert not {"finance", "oa", "mail", "meeting"} & {rid for ids in seen.values() for rid in ids}
    assert listed(client, tokens["s001"], "?category=course_platform") == {"course_platform": ["fanya", "icourse"]}
    for staff_only in ("finance", "oa", "mail", "meeting"):
        assert go(client, tokens["s001"], staff_only)[0] == 404  # not for me: the same as unknown
    assert go(client, tokens["s001"], "no-such-resource")[0] == 404
    assert go(client, tokens["s001"], "BAD_ID!")[0] == 404
    assert call(client, "GET", "/resources?category=games", tokens["s001"])[0] == 422


def test_opening_needs_a_session(client: Client, tokens: Tokens) -> None:
    assert client.http.get("/resources/cnki/go").status_code == 401
    assert client.http.get("/resources").status_code == 401


# -- opening -------------------------------------------------------------------------------------
def test_a_webvpn_resource_opens_through_the_gateway(client: Client, tokens: Tokens) -> None:
    status, headers, body = go(client, tokens["s001"], "wanfang")
    assert status == 302 and body == ""
    assert headers["Location"] == GATEWAY.encode("https://www.wanfangdata.com.cn/")
    assert headers["Location"].startswith("https://webvpn.sdwu.edu.cn/https/77726476706e69737468656265737421")
    assert GATEWAY.decode(headers["Location"]) == "https://www.wanfangdata.com.cn/"
    status, headers, _ = go(client, tokens["t001"], "opac")  # a campus system on port 8080
    assert headers["Location"] == GATEWAY.encode("http://opac.sdwu.edu.cn:8080/opac/")
    assert "/http-8080/" in headers["Location"]


def test_a_carsi_resource_opens_at_the_providers_login_naming_the_school(client: Client, tokens: Tokens) -> None:
    status, headers, _ = go(client, tokens["s001"], "cnki")
    assert status == 302
    link = urlsplit(headers["Location"])
    assert (link.scheme, link.netloc, link.path) == ("https", "fsso.cnki.net", "/Shibboleth.sso/Login")
    assert parse_qs(link.query) == {"entityID": [IDP], "target": ["https://kns.cnki.net/kns8s/"]}
    assert "entityID=https%3A%2F%2Fidp.sdwu.edu.cn%2Fidp%2Fshibboleth&target=https%3A%2F%2Fkns.cnki.net%2Fkns8s%2F" \
        in headers["Location"]


def test_a_direct_resource_opens_as_it_is(client: Client, tokens: Tokens) -> None:
    status, headers, _ = go(client, tokens["t001"], "meeting")
    assert status == 302 and headers["Location"] == "https://meeting.tencent.com/"


def test_on_the_campus_network_webvpn_resources_open_directly(client: Client, tokens: Tokens,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPUS_NETWORKS", "10.0.0.0/8,127.0.0.0/8")  # the test client calls from 127.0.0.1
    assert go(client, tokens["s001"], "wanfang")[1]["Location"] == "https://www.wanfangdata.com.cn/"
    assert go(client, tokens["s001"], "cnki")[1]["Location"].startswith("https://fsso.cnki.net/")  # CARSI as ever
    monkeypatch.setenv("CAMPUS_NETWORKS", "10.0.0.0/8")
    assert go(client, tokens["s001"], "wanfang")[1]["Location"].startswith("https://webvpn.sdwu.edu.cn/")


def test_the_h5_can_ask_for_the_link_as_json(client: Client, tokens: Tokens) -> None:
    status, headers, body = go(client, tokens["s001"], "ieee", accept="application/json")
    assert status == 200 and "Location" not in headers
    assert json.loads(body) == {"location": GATEWAY.encode("https://ieeexplore.ieee.org/"), "via": "webvpn"}


def test_without_a_configured_gateway_or_idp_the_answer_says_so(client: Client, tokens: Tokens,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # (The test client puts the stage's variables back on every request: unconfigure the desk itself.)
    configured = deps.resource_desk
    monkeypatch.setattr(deps, "resource_desk", lambda: dataclasses.replace(configured(), gateway=None,
                                                                           idp_entity_id=None))
    status, _, body = go(client, tokens["s001"], "wanfang")
    assert status == 503 and "WEBVPN_GATEWAY" in json.loads(body)["message"]
    status, _, body = go(client, tokens["s001"], "cnki")
    assert status == 503 and "CARSI_IDP_ENTITY_ID" in json.loads(body)["message"]
    assert go(client, tokens["s001"], "icourse")[0] == 302  # direct ones still open
    stats = call(client, "GET", "/resources/stats?from=2026-12-07&to=2026-12-07", tokens["admin"])[1]
    assert stats["total"] == 1  # only the opening that answered a link was counted


def test_a_failed_visit_count_does_not_keep_the_reader_from_the_resource(
        client: Client, tokens: Tokens, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Given the counters' table refusing writes (throttled)
    from pynamodb.exceptions import UpdateError

    class ThrottledCounters:
        def add(self, *args: object) -> None:
            raise UpdateError("Failed to update item", cause=RuntimeError("ProvisionedThroughputExceededException"))

    configured = deps.resource_desk
    monkeypatch.setattr(deps, "resource_desk", lambda: dataclasses.replace(configured(), counters=ThrottledCounters()))
    caplog.set_level("ERROR", logger="campus-platform")
    # When a student opens a database, then the link is answered all the same
    status, headers, _ = go(client, tokens["s001"], "ieee")
    assert status == 302 and headers["Location"] == GATEWAY.encode("https://ieeexplore.ieee.org/")
    # And the lost count is logged as an error, naming the resource and the failure
    lost = [r for r in caplog.records if r.getMessage() == "resource visit not counted"]
    assert [(r.resource_id, r.error_type) for r in lost] == [("ieee", "UpdateError")]


# -- the IT centre changes the catalogue ----------------------------------------------------------
NEW = {"name": "中国裁判文书网", "category": "literature", "url": "https://wenshu.court.gov.cn/", "access": "direct",
       "audience": {"types": ["staff"]}, "description": "裁判文书公开", "order": 300}


def test_the_it_centre_adds_hides_and_changes_resources(client: Client, tokens: Tokens) -> None:
    status, added = call(client, "PUT", "/admin/resources/wenshu", tokens["admin"], NEW)
    assert status == 200 and added["version"] == 1 and added["id"] == "wenshu"
    assert "wenshu" in listed(client, tokens["t001"])["literature"]
    assert "wenshu" not in listed(client, tokens["s001"])["literature"]
    # Hiding a shipped resource: a new version, gone for everyone, /go 404
    hidden = {**SHIPPED["wanfang"].model_dump(exclude={"id", "version"}), "enabled": False}
    status, changed = call(client, "PUT", "/admin/resources/wanfang", tokens["admin"], hidden)
    assert status == 200 and changed["version"] == 2 and changed["enabled"] is False
    assert "wanfang" not in listed(client, tokens["s001"])["literature"]
    assert go(client, tokens["s001"], "wanfang")[0] == 404
    admin_view = call(client, "GET", "/admin/resources", tokens["admin"])[1]["items"]
    assert {r["id"]: r["version"] for r in admin_view}["wanfang"] == 2 and len(admin_view) == len(SHIPPED) + 1
    # Switching a database to CARSI with its provider
    carsi = {**SHIPPED["ieee"].model_dump(exclude={"id", "version"}), "access": "carsi",
             "carsi": {"sp_host": "ieeexplore.ieee.org", "login_path": "/servlet/wayf.jsp",
                       "target": "https://ieeexplore.ieee.org/Xplore/home.jsp"}}
    assert call(client, "PUT", "/admin/resources/ieee", tokens["admin"], carsi)[0] == 200
    assert go(client, tokens["s001"], "ieee")[1]["Location"].startswith(
        "https://ieeexplore.ieee.org/servlet/wayf.jsp?entityID=https%3A%2F%2Fidp.sdwu.edu.cn")


@pytest.mark.parametrize(("change", "field"), [
    ({"access": "carsi"}, "carsi"),
    ({"url": "ftp://files.example.edu.cn/"}, "url"),
    ({"url": "ssh://jump.sdwu.edu.cn", "access": "direct"}, "direct"),
    ({"category": "games"}, "category"),
    ({"audience": {"types": ["alien"]}}, "audience"),
    ({"version": 9}, "version"),
    ({"carsi": {"sp_host": "fsso.cnki.net", "target": "http://kns.cnki.net/"}, "access": "carsi"}, "carsi"),
    ({"order": -1}, "order"),
])
def test_a_bad_resource_is_refused_with_the_reason(client: Client, tokens: Tokens, change: dict, field: str) -> None:
    status, body = call(client, "PUT", "/admin/resources/wenshu", tokens["admin"], {**NEW, **change})
    assert status == 422, body
    assert field in json.dumps(body, ensure_ascii=False)
    assert call(client, "GET", "/admin/resources", tokens["admin"])[1]["items"][-1]["id"] != "wenshu"


@pytest.mark.parametrize("userid", ["s001", "t001", "leader01", "xg01"])
def test_only_the_it_centre_changes_the_catalogue(client: Client, tokens: Tokens, userid: str) -> None:
    assert call(client, "PUT", "/admin/resources/wenshu", tokens[userid], NEW)[0] == 403
    assert call(client, "GET", "/admin/resources", tokens[userid])[0] == 403


# -- statistics ----------------------------------------------------------------------------------
def test_stats_equal_the_openings_made_at_once(client: Client, tokens: Tokens) -> None:
    plan = [("s001", "cnki")] * 12 + [("s002", "cnki")] * 8 + [("t001", "cnki")] * 5 + [("s001", "wanfang")] * 7 \
        + [("t001", "finance")] * 4 + [("w001", "ecard")] * 4
    tokens_of = {u: tokens[u] for u, _ in plan}
    barrier = Barrier(len(plan))

    def open_one(step: tuple[str, str]) -> int:
        barrier.wait(timeout=60)
        return go(client, tokens_of[step[0]], step[1])[0]

    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        statuses = list(pool.map(open_one, plan))
    assert statuses == [302] * len(plan)
    status, stats = call(client, "GET", "/resources/stats?from=2026-12-07&to=2026-12-07", tokens["admin"])
    assert status == 200, stats
    kinds = {"s001": "student", "s002": "student", "t001": "staff", "w001": "third_party"}
    expected = Counter((rid, kinds[u]) for u, rid in plan)
    assert {(i["resource_id"], i["person_type"]): i["visits"] for i in stats["items"]} == dict(expected)
    assert stats["total"] == len(plan) and stats["by_day"] == [{"day": "2026-12-07", "visits": len(plan)}]
    top = stats["by_resource"][0]
    assert top == {"resource_id": "cnki", "name": "中国知网", "visits": 25, "by_person_type": {"staff": 5, "student": 20}}
    # Nobody's identity is in the counters
    assert "s001" not in json.dumps(stats)


def test_stats_are_per_campus_day_and_for_it_and_leaders_only(client: Client, tokens: Tokens) -> None:
    go(client, tokens["s001"], "cnki")
    with time_machine.travel(datetime(2026, 12, 7, 16, 30, tzinfo=timezone.utc), tick=True):  # 00:30 Tuesday
        again = Tokens(client)
        go(client, again["s001"], "cnki")
        go(client, again["s001"], "cnki")
        status, stats = call(client, "GET", "/resources/stats?from=2026-12-07&to=2026-12-08", again["leader01"])
    assert status == 200
    assert stats["by_day"] == [{"day": "2026-12-07", "visits": 1}, {"day": "2026-12-08", "visits": 2}]
    for userid in ("s001", "t001", "xg01", "hr01"):
        assert call(client, "GET", "/resources/stats?from=2026-12-07&to=2026-12-07", tokens[userid])[0] == 403
    assert call(client, "GET", "/resources/stats?from=2026-12-08&to=2026-12-07", tokens["admin"])[0] == 422
    assert call(client, "GET", "/resources/stats?from=2026-01-01&to=2026-12-07", tokens["admin"])[0] == 422
    assert call(client, "GET", "/resources/stats?from=2026-12-07", tokens["admin"])[0] == 422
