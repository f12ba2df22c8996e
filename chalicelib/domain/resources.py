"""The resource wing: campus systems and literature databases, opened through WebVPN or CARSI.

A resource is catalogue data (``chalicelib/catalogue/resources.json``, changed by the IT centre
through ``PUT /admin/resources/{id}``, each change a new version, as for services). Opening one
answers the link that suits the resource and the caller:

* ``direct``: the URL itself (public sites, or systems meant to be reached from anywhere);
* ``webvpn``: the URL through the school's WebVPN gateway (:mod:`chalicelib.domain.webvpn`),
  unless the caller is on the campus network, where the URL works as it is;
* ``carsi``: a WAYFless link to the service provider's Shibboleth login naming the school's
  identity provider, so the reader lands on the resource signed in through CARSI.

Every opening adds one to a counter per resource, campus day and person type: the school sees
how much each resource is used and by which kind of reader, and nothing records who opened what.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.access import Actor, Role
from chalicelib.domain.directory import PersonType
from chalicelib.domain.webvpn import LinkError, WebVpn, split_target
from chalicelib.errors import Invalid, NotFound, UpstreamUnavailable
from chalicelib.observability import logger

Category = Literal["literature", "campus_system", "virtual_lab", "course_platform", "meeting_live"]
CATEGORIES: tuple[str, ...] = ("literature", "campus_system", "virtual_lab", "course_platform", "meeting_live")
AccessMode = Literal["direct", "webvpn", "carsi"]
RESOURCE_ID = r"^[a-z0-9][a-z0-9-]{1,47}$"
_HOST = re.compile(r"(?=.{1,253}$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}")
SHIBBOLETH_LOGIN = "/Shibboleth.sso/Login"


class CarsiProvider(BaseModel):
    """The CARSI service provider of a resource: where its Shibboleth login lives and where to land."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sp_host: str = Field(description="the service provider's host, e.g. fsso.cnki.net")
    login_path: str = Field(SHIBBOLETH_LOGIN, pattern=r"^/[A-Za-z0-9._~/-]*$",
                            description="the SP's session initiator (Shibboleth's default unless the SP says)")
    target: str = Field(description="the https URL the reader lands on once signed in", max_length=500)

    @field_validator("sp_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _HOST.fullmatch(value):
            raise ValueError("a host name such as fsso.cnki.net")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        try:
            scheme, *_ = split_target(value)
        except LinkError as exc:
            raise ValueError(str(exc)) from None
        if scheme != "https":
            raise ValueError("an https URL")
        return value


class Audience(BaseModel):
    """Who sees a resource: any of the person types, or anyone holding one of the roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: tuple[PersonType, ...] = ()
    roles: tuple[Role, ...] = ()

    def admits(self, actor: Actor) -> bool:
        return actor.person_type in self.types or any(actor.has(role) for role in self.roles)


class ResourceFields(BaseModel):
    """What the IT centre sets of a resource (the body of ``PUT /admin/resources/{id}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=60)
    category: Category
    url: str = Field(max_length=1000, description="the resource's own address (http, https, ssh, vnc or telnet)")
    access: AccessMode
    carsi: CarsiProvider | None = Field(None, description="required when access is carsi")
    audience: Audience
    description: str = Field("", max_length=500)
    order: int = Field(100, ge=0, le=9999, description="position within its category")
    enabled: bool = Field(True, description="false hides it from everyone")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            split_target(value)
        except LinkError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _access(self) -> ResourceFields:
        if self.access == "carsi" and self.carsi is None:
            raise ValueError("carsi: a CARSI resource names its service provider")
        if self.access == "direct" and split_target(self.url)[0] not in ("http", "https"):
            raise ValueError("url: a direct link is http or https (other schemes go through WebVPN)")
        return self


class Resource(ResourceFields):
    """A resource of the catalogue, with the version the server keeps."""

    id: str = Field(pattern=RESOURCE_ID)
    version: int = Field(1, ge=1)


@dataclass(frozen=True)
class Opening:
    """Where ``/go`` sends the caller, and how."""

    location: str
    via: AccessMode


@dataclass(frozen=True)
class VisitCount:
    day: str
    resource_id: str
    person_type: str
    visits: int


# -- collaborators ------------------------------------------------------------------------------
class ResourceStore(Protocol):
    def all_latest(self) -> dict[str, Resource]: ...
    def latest(self, resource_id: str) -> Resource | None: ...
    def add(self, resource: Resource, changed_by: str, now: datetime) -> None: ...


class VisitCounters(Protocol):
    def add(self, day: date, resource_id: str, person_type: str, retention_days: int) -> None: ...
    def of_day(self, day: date) -> Iterable[VisitCount]: ...


def carsi_link(provider: CarsiProvider, idp_entity_id: str) -> str:
    """The WAYFless login link: the SP's session initiator with the school's IdP and the target."""
    return (f"https://{provider.sp_host}{provider.login_path}?entityID={quote(idp_entity_id, safe='')}"
            f"&target={quote(provider.target, safe='')}")


@dataclass
class ResourceDesk:
    """The catalogue of resources, opening them, and their usage figures."""

    shipped: Mapping[str, Resource]
    store: ResourceStore
    counters: VisitCounters
    gateway: WebVpn | None
    idp_entity_id: str | None
    tz: ZoneInfo
    retention_days: int = 1100

    def catalogue(self) -> dict[str, Resource]:
        """Every resource at its newest version (a stored version wins over a shipped one of the same number)."""
        current = dict(self.shipped)
        for resource_id, stored in self.store.all_latest().items():
            if resource_id not in current or current[resource_id].version <= stored.version:
                current[resource_id] = stored
        return current

    def current(self, resource_id: str) -> Resource | None:
        """One resource at its newest version (one read, not the whole catalogue)."""
        shipped = self.shipped.get(resource_id)
        stored = self.store.latest(resource_id)
        if stored is not None and (shipped is None or shipped.version <= stored.version):
            return stored
        return shipped

    def visible(self, actor: Actor, category: str | None = None) -> list[Resource]:
        """What ``actor`` may open, by category (catalogue order), then order and name."""
        found = [r for r in self.catalogue().values()
                 if r.enabled and r.audience.admits(actor) and (category is None or r.category == category)]
        return sorted(found, key=lambda r: (CATEGORIES.index(r.category), r.order, r.name, r.id))

    def put(self, resource_id: str, fields: ResourceFields, actor: Actor, now: datetime) -> Resource:
        """Store ``fields`` as the next version of the resource (a new one starts at 1).

        Raises:
            Conflict: another change took that version first.
        """
        shipped = self.shipped.get(resource_id)
        stored = self.store.latest(resource_id)
        current = max(shipped.version if shipped else 0, stored.version if stored else 0)
        resource = Resource(id=resource_id, version=current + 1, **fields.model_dump())
        self.store.add(resource, actor.userid, now)
        return resource

    def open(self, actor: Actor, resource_id: str, on_campus: bool, now: datetime) -> Opening:
        """The link for ``actor``, counted as a visit. Counting is best-effort: a reader is never
        refused a database because a statistics write failed (the failure is logged as
        ``resource visit not counted``).

        Raises:
            NotFound: no such resource, or not one ``actor`` may see (the same answer).
            UpstreamUnavailable: the resource needs WebVPN or CARSI and the school has not configured it.
        """
        resource = self.current(resource_id)
        if resource is None or not resource.enabled or not resource.audience.admits(actor):
            raise NotFound("No such resource.")
        opening = self.link(resource, on_campus)
        try:
            self.counters.add(now.astimezone(self.tz).date(), resource.id, actor.person_type, self.retention_days)
        except Exception as exc:  # noqa: BLE001 - the reader gets the link; the figures lose one visit
            logger.error("resource visit not counted", extra={"resource_id": resource.id,
                                                              "error_type": type(exc).__name__})
        return opening

    def link(self, resource: Resource, on_campus: bool) -> Opening:
        if resource.access == "carsi":
            if not self.idp_entity_id:
                raise UpstreamUnavailable("CARSI is not configured (CARSI_IDP_ENTITY_ID).")
            return Opening(carsi_link(resource.carsi, self.idp_entity_id), "carsi")  # type: ignore[arg-type]
        if resource.access == "webvpn" and not on_campus:
            if self.gateway is None:
                raise UpstreamUnavailable("WebVPN is not configured (WEBVPN_GATEWAY).")
            return Opening(self.gateway.encode(resource.url), "webvpn")
        return Opening(resource.url, "direct")

    def stats(self, first: date, last: date, max_days: int = 92) -> list[VisitCount]:
        """Visits per day, resource and person type over ``first``..``last`` (one query a day).

        Raises:
            Invalid: the period is reversed or longer than ``max_days``.
        """
        if last < first:
            raise Invalid("The period ends before it starts.", {"to": "on or after from"})
        if (last - first).days + 1 > max_days:
            raise Invalid(f"At most {max_days} days at a time.", {"to": f"within {max_days} days of from"})
        counts: list[VisitCount] = []
        day = first
        while day <= last:
            counts.extend(self.counters.of_day(day))
            day += timedelta(days=1)
        return counts


def summarise(counts: Sequence[VisitCount], names: Mapping[str, str]) -> dict[str, object]:
    """Totals by resource (with their split by person type) and by day, from the raw counts."""
    by_resource: dict[str, dict[str, int]] = {}
    by_day: dict[str, int] = {}
    for count in counts:
        split = by_resource.setdefault(count.resource_id, {})
        split[count.person_type] = split.get(count.person_type, 0) + count.visits
        by_day[count.day] = by_day.get(count.day, 0) + count.visits
    resources = [{"resource_id": rid, "name": names.get(rid, rid), "visits": sum(split.values()),
                  "by_person_type": dict(sorted(split.items()))} for rid, split in by_resource.items()]
    resources.sort(key=lambda r: (-int(r["visits"]), str(r["resource_id"])))  # type: ignore[call-overload]
    return {"total": sum(by_day.values()), "by_resource": resources,
            "by_day": [{"day": d, "visits": v} for d, v in sorted(by_day.items())]}

