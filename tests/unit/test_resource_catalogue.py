"""The shipped resource catalogue and the rules of the resource wing (no AWS)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from chalicelib.catalogue import shipped_resources
from chalicelib.domain.access import Actor
from chalicelib.domain.resources import (CarsiProvider, Resource, ResourceDesk, ResourceFields, VisitCount,
                                         carsi_link, summarise)
from chalicelib.domain.webvpn import WebVpn, split_target

SHIPPED = shipped_resources()


def test_the_demo_campus_ships_the_26_databases_and_its_systems() -> None:
    literature = [r for r in SHIPPED.values() if r.category == "literature"]
    assert len(literature) == 26
    assert {"cnki", "cqvip", "wanfang", "calis-ccc", "ieee", "science"} <= {r.id for r in literature}
    assert {r.category for r in SHIPPED.values()} == {"literature", "campus_system", "virtual_lab", "course_platform",
                                                     "meeting_live"}
    for resource in SHIPPED.values():
        split_target(resource.url)  # every URL can go through the gateway
        assert resource.audience.types, resource.id
        assert (resource.carsi is not None) == (resource.access == "carsi"), resource.id
    hosts = [urlsplit(r.url).hostname for r in literature]
    assert len(set(hosts)) == 26  # one public host each


def test_a_carsi_link_is_the_providers_session_initiator_with_the_idp_and_target() -> None:
    provider = CarsiProvider(sp_host="fsso.cnki.net", target="https://kns.cnki.net/kns8s/?a=1&b=2")
    link = carsi_link(provider, "https://idp.example.edu.cn/idp/shibboleth")
    assert link.startswith("https://fsso.cnki.net/Shibboleth.sso/Login?entityID=")
    query = parse_qs(urlsplit(link).query)
    assert query == {"entityID": ["https://idp.example.edu.cn/idp/shibboleth"],
                     "target": ["https://kns.cnki.net/kns8s/?a=1&b=2"]}
    assert "&b=2" not in link  # the target is encoded whole


@pytest.mark.parametrize("change", [
    {"sp_host": "not a host"}, {"target": "http://kns.cnki.net/"}, {"login_path": "no-slash"},
    {"login_path": "/a?b=c"},
])
def test_bad_provider_data_is_refused(change: dict) -> None:
    with pytest.raises(ValidationError):
        CarsiProvider(**{"sp_host": "fsso.cnki.net", "target": "https://kns.cnki.net/", **change})


class NoStore:
    def all_latest(self) -> dict:
        return {}

    def latest(self, resource_id: str) -> None:
        return None

    def add(self, resource: Resource, changed_by: str, now: datetime) -> None:
        raise AssertionError("not in this test")


class Counters:
    def __init__(self) -> None:
        self.added: list[tuple] = []

    def add(self, day: date, resource_id: str, person_type: str, retention_days: int) -> None:
        self.added.append((day, resource_id, person_type))

    def of_day(self, day: date) -> list:
        return []


def desk(counters: Counters | None = None) -> ResourceDesk:
    return ResourceDesk(shipped=SHIPPED, store=NoStore(), counters=counters or Counters(),
                        gateway=WebVpn("https://webvpn.example.edu.cn"), idp_entity_id="https://idp.example.edu.cn/idp",
                        tz=ZoneInfo("Asia/Shanghai"))


def test_roles_widen_an_audience() -> None:
    auditor = Resource(id="audit-sys", name="审计系统", category="campus_system", url="https://audit.example.edu.cn/",
                       access="direct", audience={"roles": ["it_admin"]})
    ordinary = Actor(userid="t001", person_type="staff", department="cs")
    admin = Actor(userid="admin", person_type="staff", department="nic", roles=frozenset({"it_admin"}))
    assert not auditor.audience.admits(ordinary) and auditor.audience.admits(admin)


def test_an_opening_is_counted_on_the_campus_day_by_person_type() -> None:
    counters = Counters()
    student = Actor(userid="s001", person_type="student", department="cs")
    late = datetime(2026, 12, 7, 16, 30, tzinfo=timezone.utc)  # 00:30 on 12-08 in Jinan
    opening = desk(counters).open(student, "wanfang", on_campus=False, now=late)
    assert opening.via == "webvpn" and opening.location.startswith("https://webvpn.example.edu.cn/https/")
    assert counters.added == [(date(2026, 12, 8), "wanfang", "student")]
    assert desk().open(student, "wanfang", on_campus=True, now=late).location == "https://www.wanfangdata.com.cn/"


def test_summaries_add_up_by_resource_type_and_day() -> None:
    counts = [VisitCount("2026-12-07", "cnki", "student", 3), VisitCount("2026-12-07", "cnki", "staff", 1),
              VisitCount("2026-12-08", "ieee", "student", 5)]
    summary = summarise(counts, {"cnki": "中国知网", "ieee": "IEEE Xplore"})
    assert summary["total"] == 9
    assert summary["by_resource"] == [
        {"resource_id": "ieee", "name": "IEEE Xplore", "visits": 5, "by_person_type": {"student": 5}},
        {"resource_id": "cnki", "name": "中国知网", "visits": 4, "by_person_type": {"staff": 1, "student": 3}}]
    assert summary["by_day"] == [{"day": "2026-12-07", "visits": 4}, {"day": "2026-12-08", "visits": 5}]


def test_a_resource_body_sets_no_server_owned_field() -> None:
    body = SHIPPED["cnki"].model_dump(exclude={"id", "version"})
    ResourceFields.model_validate(body)
    for owned in ({"id": "x"}, {"version": 3}):
        with pytest.raises(ValidationError):
            ResourceFields.model_validate({**body, **owned})
