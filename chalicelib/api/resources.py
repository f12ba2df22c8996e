"""The resource wing: campus systems and literature databases through WebVPN and CARSI.

* ``GET /resources``: what I may open, by category;
* ``GET /resources/{id}/go``: 302 to the link for me (WebVPN-encoded off campus, CARSI, or
  direct), counted; ``Accept: application/json`` gets the link as JSON instead, for the H5 to
  open it in WeCom's browser (a redirect answered to a script cannot be read);
* ``GET /resources/stats``: visits by resource, day and person type (it_admin, leader);
* ``GET /admin/resources``, ``PUT /admin/resources/{id}``: the catalogue, for the IT centre.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timezone
from typing import Any

from chalice import Response
from chalice.app import Request
from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.health import CampusDate
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.resources import CATEGORIES, RESOURCE_ID, AccessMode, Category, Resource, ResourceFields, \
    summarise
from chalicelib.errors import Conflict, Invalid, NotFound, UpstreamUnavailable
from chalicelib.settings import get_settings

area = Area("resources")
ANYONE = authenticated()


class ResourceCard(BaseModel):
    id: str
    name: str
    category: Category
    description: str
    access: AccessMode = Field(description="how it opens: direct, through WebVPN, or by CARSI login")
    go: str = Field(description="the path that opens it")

    @classmethod
    def of(cls, resource: Resource) -> ResourceCard:
        return cls(id=resource.id, name=resource.name, category=resource.category, description=resource.description,
                   access=resource.access, go=f"/resources/{resource.id}/go")


class CategoryGroup(BaseModel):
    category: Category
    items: list[ResourceCard]


class ResourceList(BaseModel):
    categories: list[CategoryGroup] = Field(description="non-empty categories in catalogue order")


class ResourceQuery(RequestModel):
    category: Category | None = None


class Opened(BaseModel):
    location: str
    via: AccessMode


class AdminResources(BaseModel):
    items: list[Resource]


class StatsQuery(RequestModel):
    from_: CampusDate = Field(alias="from")
    to: CampusDate


class ResourceVisits(BaseModel):
    resource_id: str
    name: str
    visits: int
    by_person_type: dict[str, int]


class DayVisits(BaseModel):
    day: str
    visits: int


class VisitRow(BaseModel):
    day: str
    resource_id: str
    person_type: str
    visits: int


class ResourceStats(BaseModel):
    first_day: str
    last_day: str
    total: int
    by_resource: list[ResourceVisits] = Field(description="most visited first")
    by_day: list[DayVisits]
    items: list[VisitRow] = Field(description="every counter: day, resource, person type")


@area.route("/resources", "GET", summary="The resources I may open, by category", policy=ANYONE,
            query=ResourceQuery, response=ResourceList)
def list_resources(query: ResourceQuery, actor: Actor) -> ResourceList:
    visible = deps.resource_desk().visible(actor, query.category)
    groups = [CategoryGroup(category=c, items=[ResourceCard.of(r) for r in visible if r.category == c])  # type: ignore[arg-type]
              for c in CATEGORIES]
    return ResourceList(categories=[g for g in groups if g.items])


@area.route("/resources/{resource_id}/go", "GET", summary="Open a resource: 302 to my link (counted)",
            policy=ANYONE, status=302, headers=("Location",), errors=(NotFound, UpstreamUnavailable),
            also=((200, "the link, when asked with Accept: application/json", Opened),))
def open_resource(resource_id: str, actor: Actor, request: Request) -> Response:
    """Off the campus network a WebVPN resource opens through the gateway, on it directly; a CARSI
    resource opens at its provider's login naming the school. Unknown resources and resources not
    meant for me are both 404. The visit is counted per resource, day and person type, never per
    person. With ``Accept: application/json`` the answer is 200 ``{location, via}``."""
    if not _is_id(resource_id):
        raise NotFound("No such resource.")
    opening = deps.resource_desk().open(actor, resource_id, _on_campus(request), datetime.now(timezone.utc))
    if "application/json" in (request.headers.get("accept") or "").lower():
        return Response(body=Opened(location=opening.location, via=opening.via).model_dump(), status_code=200,
                        headers={"Content-Type": "application/json", "Cache-Control": "no-store"})
    return Response(body="", status_code=302, headers={"Location": opening.location, "Cache-Control": "no-store"})


@area.route("/resources/stats", "GET", summary="Visits by resource and day (it_admin, leaders)",
            policy=authenticated(Role.IT_ADMIN, Role.LEADER), query=StatsQuery, response=ResourceStats)
def resource_stats(query: StatsQuery) -> ResourceStats:
    """At most 92 days. Counts only: how often each resource was opened, by which kind of reader."""
    desk = deps.resource_desk()
    counts = desk.stats(query.from_, query.to)
    names = {r.id: r.name for r in desk.catalogue().values()}
    summary: dict[str, Any] = summarise(counts, names)
    return ResourceStats.model_validate({"first_day": query.from_.isoformat(), "last_day": query.to.isoformat(),
                                         **summary, "items": [vars(c) for c in counts]})


@area.route("/admin/resources", "GET", summary="The whole resource catalogue, hidden ones too (it_admin)",
            policy=authenticated(Role.IT_ADMIN), response=AdminResources)
def admin_resources() -> AdminResources:
    catalogue = deps.resource_desk().catalogue().values()
    return AdminResources(items=sorted(catalogue, key=lambda r: (CATEGORIES.index(r.category), r.order, r.id)))


@area.route("/admin/resources/{resource_id}", "PUT", summary="Create or change a resource (a new version)",
            policy=authenticated(Role.IT_ADMIN), body=ResourceFields, response=Resource, errors=(Conflict,))
def put_resource(resource_id: str, body: ResourceFields, actor: Actor) -> Resource:
    """``enabled: false`` hides it from everyone; the audience decides who sees it. Each change is
    stored as the next version with who made it."""
    if not _is_id(resource_id):
        raise Invalid("A resource id is 2-48 of a-z, 0-9 and '-'.", {"resource_id": "a-z, 0-9, '-'"})
    return deps.resource_desk().put(resource_id, body, actor, datetime.now(timezone.utc))


def _is_id(value: str) -> bool:
    return re.fullmatch(RESOURCE_ID, value) is not None


def _on_campus(request: Request) -> bool:
    networks = get_settings().campus_cidrs
    source = ((request.context or {}).get("identity") or {}).get("sourceIp")
    if not networks or not source:
        return False
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return False
    return any(address in network for network in networks)

