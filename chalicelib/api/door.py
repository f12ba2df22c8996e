"""The door system's events and tracing.

* ``POST /webhooks/door/events``: signed batches of gate events from the door system (no login:
  ``X-Door-Signature`` instead);
* ``GET /trace/people/{person}/passages``, ``/contacts``, ``GET /trace/on-campus`` and
  ``GET /door/stats``: the security office and the hospital only, every query audited.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from chalice.app import Request
from chalice import Response
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel, json_response
from chalicelib.api.schemas import PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.door import MAX_EVENTS, Contact, Passage
from chalicelib.domain.door_signature import SignatureError, signed_time, verify
from chalicelib.errors import BadRequest, DomainError, Invalid, NotFound, Unauthorized
from chalicelib.settings import get_settings

area = Area("door")
TRACERS = authenticated(Role.SECURITY, Role.HOSPITAL)
PERSON = r"^[A-Za-z0-9_.@-]{1,64}$"
MAX_BATCH_BYTES = 512 * 1024
MAX_TIMES = 20  # overlaps listed per contact (all are counted): a response stays well under 6 MB


@dataclass
class SignedDoor:
    """Admits requests the door system signed: ``X-Door-Signature: t=<unix seconds>,v1=<hex
    HMAC-SHA256 of "<t>.<raw body>">`` under ``DOOR_WEBHOOK_SECRET``, ``t`` within
    ``DOOR_WEBHOOK_MAX_SKEW_SECONDS`` of ``clock`` (compared in constant time).

    Raises (from ``check``):
        Unauthorized: no header, a bad signature, or a stale or future timestamp.
    """

    clock: Callable[[], float] = time.time
    name: str = "signed:door"
    errors: tuple[type[DomainError], ...] = field(default=(Unauthorized,))

    def check(self, request: Request) -> None:
        settings = get_settings()
        try:
            verify(settings.secret("door_webhook_secret"), request.headers.get("x-door-signature"),
                   request.raw_body or b"", self.clock(), settings.door_webhook_max_skew_seconds)
        except SignatureError as exc:
            raise Unauthorized(f"Door signature rejected: {exc}.") from None
        return None


SIGNED_DOOR = SignedDoor()


class DoorBatch(RequestModel):
    """A batch of gate events; each is checked on its own (see ``DoorEvent``), bad ones are listed."""

    events: list[Any] = Field(max_length=MAX_EVENTS, description=(
        "objects with event_id, gate, direction (in|out), at (ISO-8601 with offset), credential_kind "
        "(campus_card|id_card|face), card_number, id_number, userid, result (granted|denied)"))


class ReceiptView(BaseModel):
    stored: int = Field(description="events stored now")
    duplicates: int = Field(description="events stored by an earlier delivery (ignored)")


@area.route("/webhooks/door/events", "POST", summary="Gate events from the door system (signed batch)",
            policy=SIGNED_DOOR, body=DoorBatch, response=ReceiptView, errors=(Unauthorized,),
            max_body=MAX_BATCH_BYTES)
def receive_door_events(body: DoorBatch, request: Request) -> Response:
    """Body ``{"events": [...]}`` (at most 500), signed with ``X-Door-Signature: t=<unix
    seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` under ``DOOR_WEBHOOK_SECRET``. A bad
    signature, a timestamp more than 5 minutes off or a batch received before: 401, nothing stored.
    Events with bad fields: 400 listing them (``rejected``: index, event id, fields) while the
    good ones of the batch are stored. An event id stored before is not stored again."""
    receipt = deps.door_log().receive(body.events, request.raw_body or b"",
                                      signed_time(request.headers["x-door-signature"]))
    if receipt.rejected:
        return json_response({"code": "bad_events", "message": f"{len(receipt.rejected)} event(s) were not stored.",
                              "stored": receipt.stored, "duplicates": receipt.duplicates,
                              "rejected": list(receipt.rejected)}, 400)
    return json_response({"stored": receipt.stored, "duplicates": receipt.duplicates}, 200)


# -- tracing ------------------------------------------------------------------------------------
class PeriodQuery(RequestModel):
    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime

    @field_validator("from_", "to")
    @classmethod
    def _plausible(cls, value: datetime) -> datetime:
        if not 2000 <= value.year <= 2100:
            raise ValueError("must be between the years 2000 and 2100")
        return value


class ContactsQuery(PeriodQuery):
    window_minutes: int = Field(10, ge=1, le=120)
    limit: int = Field(200, ge=1, le=1000, description="contacts returned, most overlaps first")


class StatsQuery(RequestModel):
    day: date = Field(alias="date")


class PassageView(BaseModel):
    event_id: str
    person: str
    person_kind: str
    gate: str
    direction: str
    at: str
    credential_kind: str
    credential: str | None = Field(description="masked")
    result: str

    @classmethod
    def of(cls, passage: Passage) -> PassageView:
        return cls(event_id=passage.event_id, person=passage.person, person_kind=passage.person_kind,
                   gate=passage.gate, direction=passage.direction, at=passage.at,
                   credential_kind=passage.credential_kind, credential=passage.credential_masked,
                   result=passage.result)


class PassageList(BaseModel):
    person: str
    items: list[PassageView]


class OverlapView(BaseModel):
    gate: str
    mine: str = Field(description="the traced person's passage")
    theirs: str = Field(description="the contact's passage")


class ContactView(BaseModel):
    person: str
    person_kind: str
    name: str | None
    overlaps: int
    times: list[OverlapView] = Field(description=f"the first {MAX_TIMES} overlaps")


class ContactsView(BaseModel):
    person: str
    window_minutes: int
    passages: list[PassageView]
    contacts: list[ContactView]
    total_contacts: int = Field(description="all contacts found; ``contacts`` holds the first ``limit``")


class PresenceView(BaseModel):
    person: str
    person_kind: str
    name: str | None
    gate: str
    since: str


class OnCampusPage(BaseModel):
    items: list[PresenceView]
    next: str | None


class GateHours(BaseModel):
    gate: str
    hours: list[int] = Field(description="24 counts, campus hours 00-23")
    total: int


class DoorStats(BaseModel):
    date: str
    gates: list[GateHours]
    total: int


def _check_person(person: str) -> None:
    if not re.match(PERSON, person):
        raise NotFound("No such person.")


@area.route("/trace/people/{person}/passages", "GET", summary="A person's gate passages in a period (audited)",
            policy=TRACERS, query=PeriodQuery, response=PassageList, errors=(BadRequest, NotFound))
def trace_passages(person: str, query: PeriodQuery, actor: Actor) -> PassageList:
    """``person`` is a userid, or the key a visitor's pass or an unknown credential carries. At
    most 31 days."""
    _check_person(person)
    items = deps.tracing().passages(actor, person, query.from_, query.to)
    return PassageList(person=person, items=[PassageView.of(p) for p in items])


@area.route("/trace/people/{person}/contacts", "GET",
            summary="Who passed the same gate within minutes of a person's passages (audited)",
            policy=TRACERS, query=ContactsQuery, response=ContactsView, errors=(BadRequest, NotFound))
def trace_contacts(person: str, query: ContactsQuery, actor: Actor) -> ContactsView:
    """Each contact with the number of overlaps (their passage, the traced person's passage, same
    gate, at most ``window_minutes`` apart) and their times; most overlaps first."""
    _check_person(person)
    mine, found = deps.tracing().contacts(actor, person, query.from_, query.to,
                                          timedelta(minutes=query.window_minutes))
    shown = found[:query.limit]
    names = _names([c.person for c in shown if c.person_kind == "member"])
    return ContactsView(person=person, window_minutes=query.window_minutes,
                        passages=[PassageView.of(p) for p in mine],
                        contacts=[_contact(c, names.get(c.person)) for c in shown], total_contacts=len(found))


def _contact(contact: Contact, name: str | None) -> ContactView:
    return ContactView(person=contact.person, person_kind=contact.person_kind, name=name,
                       overlaps=len(contact.overlaps),
                       times=[OverlapView(gate=o.gate, mine=o.mine, theirs=o.theirs)
                              for o in contact.overlaps[:MAX_TIMES]])


def _names(userids: list[str]) -> dict[str, str]:
    if not userids:
        return {}
    return {userid: person.name for userid, person in deps.directory().get_people(userids).items()}


@area.route("/trace/on-campus", "GET", summary="People whose latest passage is in (audited)", policy=TRACERS,
            query=PageQuery, response=OnCampusPage)
def trace_on_campus(query: PageQuery, actor: Actor) -> OnCampusPage:
    """Latest arrivals first, a page at a time."""
    after = query.position()
    if after is not None and not re.match(r"^[0-9T:.Z-]{10,30}#[A-Za-z0-9_.:-]{1,64}\|[A-Za-z0-9_.@-]{1,64}$", after):
        raise Invalid("The cursor is not valid.", {"next": "not a cursor from a previous page"})
    page, position = deps.tracing().on_campus(actor, query.limit, after)
    names = _names([p.person for p in page if p.person_kind == "member"])
    return OnCampusPage(items=[PresenceView(person=p.person, person_kind=p.person_kind, name=names.get(p.person),
                                            gate=p.gate, since=p.at) for p in page], next=cursor(position))


@area.route("/door/stats", "GET", summary="Passages of a campus day by gate and hour", policy=TRACERS,
            query=StatsQuery, response=DoorStats)
def door_stats(query: StatsQuery, actor: Actor) -> DoorStats:
    counts = deps.tracing().stats(actor, query.day)
    gates = [GateHours(gate=gate, hours=[hours.get(h, 0) for h in range(24)], total=sum(hours.values()))
             for gate, hours in sorted(counts.items())]
    return DoorStats(date=query.day.isoformat(), gates=gates, total=sum(g.total for g in gates))
