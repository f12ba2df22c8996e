"""The door system: passes pushed to the gates, passages coming back, and tracing.

* **Passes.** An approved campus-entry application (or a student's return to campus) becomes a
  :class:`DoorPass`: a credential (an ID number or a campus card), the gates and the window. Each
  change (granted, revoked) is a new *version*; the pass is queued on ``door-sync`` as
  ``{pass_id, version}`` and :meth:`DoorPasses.sync` pushes the pass as it stands to the door
  gateway. A message for an older version, or for a version already pushed, does nothing; so
  retries and re-queues never grant twice, and a revoke that overtakes its grant wins.
* **Passages.** The door system posts batches of gate events (:class:`DoorEvent`), signed.
  :class:`DoorLog` stores each once (by event id), labels it with the person it belongs to
  (a directory member, a visitor by their pass, or an unknown credential), keeps who is on campus
  and counts passages per gate and hour.
* **Tracing.** :class:`Tracing` answers the security office and the hospital: a person's passages,
  who passed the same gate within minutes of them (:func:`contacts`), who is on campus. Every
  query is audited.

ID numbers reach only the door gateway: stored sealed, looked up by a keyed hash, shown masked.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from chalicelib.domain.access import Actor, Role
from chalicelib.domain.identity import InvalidIdentity, mask_id_number, normalise_id_number
from chalicelib.domain.notifications import Notification
from chalicelib.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from chalicelib.domain.door_commands import DoorCommand, DoorGateway, GatewayRejected, GatewayUnavailable
from chalicelib.observability import logger

PassState = Literal["granted", "revoked"]
SyncStatus = Literal["pending", "synced", "failed"]
CredentialKind = Literal["id_card", "campus_card"]
TRACERS = (Role.SECURITY, Role.HOSPITAL)
MAX_EVENTS = 500  # per webhook call


def utc_iso(moment: datetime) -> str:
    """UTC, milliseconds, ``Z``: strings that sort as the moments they name."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def id_person(lookup_key: str) -> str:
    """The person key of an ID number (a visitor's, or an unknown one): a keyed hash, not the number."""
    return f"idc-{lookup_key[:24]}"


def mask_card(number: str) -> str:
    return "*" * max(0, len(number) - 4) + number[-4:]


# -- passes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DoorPass:
    pass_id: str  # the application it came from
    version: int
    person: str
    name: str
    kind: str  # visitor | return
    host: str | None
    credential_kind: str
    credential_sealed: str
    credential_masked: str
    credential_key: str
    gates: tuple[str, ...]
    valid_from: str  # UTC ISO
    valid_to: str
    state: PassState
    revoked_because: str | None
    sync_status: SyncStatus
    synced_version: int
    sync_error: str | None
    created_at: str
    updated_at: str


class PassStore(Protocol):
    def get_pass(self, pass_id: str) -> DoorPass | None: ...
    def create_pass(self, item: DoorPass, expires_at: datetime) -> bool: ...
    def save_pass(self, item: DoorPass, expected_version: int, expires_at: datetime) -> bool: ...
    def mark_sync(self, pass_id: str, version: int, status: str, error: str | None, now: str,
                  due: str | None = None) -> bool: ...
    def ended_passes(self, before: str) -> list[str]: ...
    def stalled_passes(self, status: str, before: str) -> list[tuple[str, int]]: ...


class Sealer(Protocol):
    def seal(self, field: str, value: str) -> str: ...
    def open(self, field: str, token: str) -> str: ...
    def lookup_key(self, field: str, value: str) -> str: ...


class AuditLog(Protocol):
    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None: ...


class Leases(Protocol):
    def claim(self, key: str, ttl_seconds: float, value: str = "") -> bool: ...
    def release(self, key: str) -> None: ...


TOMBSTONE = "none"  # the kind of a pass revoked before it existed: it never opens a door


class RetryLater(Exception):
    """The door gateway is unavailable: try this message again after ``delay`` seconds."""

    def __init__(self, delay: int) -> None:
        super().__init__(f"door gateway unavailable; retry in {delay} s")
        self.delay = delay


CREDENTIAL_FIELD = "door.credential"
ID_LOOKUP_FIELD = "id_number"  # the directory keys members' ID numbers the same way
CARD_LOOKUP_FIELD = "door.card"
_MAX_DELAY = 900  # seconds; SQS's longest visibility change we use between tries


@dataclass
class DoorPasses:
    """The life of door passes: grant, revoke, expire and push to the door gateway.

    ``queue_sync(pass_id, version)`` enqueues on ``door-sync``; if it fails the pass stays
    ``pending`` and :meth:`sweep` queues it again. ``gateway()`` builds the adapter the settings
    choose (only when a message is handled).
    """

    store: PassStore
    sealer: Sealer
    leases: Leases
    queue_sync: Callable[[str, int], None]
    gateway: Callable[[], DoorGateway]
    notify: Callable[[Notification], int]
    security: Callable[[], list[str]]  # the security office's members
    clock: Callable[[], datetime]
    audit: AuditLog | None = None
    retention: timedelta = timedelta(days=180)
    retry_base_seconds: int = 30
    max_attempts: int = 5

    # -- changes --------------------------------------------------------------------------------
    def grant(self, *, pass_id: str, person: str, name: str, kind: str, host: str | None,
              credential_kind: CredentialKind, credential_number: str, gates: Sequence[str],
              valid_from: datetime, valid_to: datetime) -> DoorPass:
        """Create the pass of an approved application and queue its grant (idempotent: a second
        call returns the stored pass and queues it again only if it is not in sync)."""
        existing = self.store.get_pass(pass_id)
        if existing is not None:
            self._queue_if_due(existing)
            return existing
        now = utc_iso(self.clock())
        lookup_field = ID_LOOKUP_FIELD if credential_kind == "id_card" else CARD_LOOKUP_FIELD
        masked = mask_id_number(credential_number) if credential_kind == "id_card" else mask_card(credential_number)
        item = DoorPass(
            pass_id=pass_id, version=1, person=person, name=name, kind=kind, host=host,
            credential_kind=credential_kind, credential_sealed=self.sealer.seal(CREDENTIAL_FIELD, credential_number),
            credential_masked=masked, credential_key=self.sealer.lookup_key(lookup_field, credential_number),
            gates=tuple(gates), valid_from=utc_iso(valid_from), valid_to=utc_iso(valid_to), state="granted",
            revoked_because=None, sync_status="pending", synced_version=0, sync_error=None, created_at=now,
            updated_at=now)
        if not self.store.create_pass(item, self._expires(item)):
            stored = self.store.get_pass(pass_id)
            assert stored is not None
            self._queue_if_due(stored)
            return stored
        self._queue(item)
        return item

    def revoke(self, pass_id: str, because: str) -> DoorPass | None:
        """Revoke a pass (a new version, queued); a revoked pass stays as it is. ``None``: no pass.

        Raises:
            Conflict: the pass kept changing under us.
        """
        for _ in range(3):
            current = self.store.get_pass(pass_id)
            if current is None:
                # No pass yet: leave a revoked one, so a grant racing this (an approval saved just
                # before the cancel, or a hook rerun) finds it and grants nothing.
                if self.store.create_pass(self._tombstone(pass_id, because), self.clock() + self.retention):
                    return None
                continue
            if current.state == "revoked":
                self._queue_if_due(current)
                return current
            moved = replace(current, version=current.version + 1, state="revoked", revoked_because=because,
                            sync_status="pending", sync_error=None, updated_at=utc_iso(self.clock()))
            if self.store.save_pass(moved, current.version, self._expires(moved)):
                self._queue(moved)
                return moved
        raise Conflict("The pass changed while it was being revoked; try again.")

    def expire(self) -> int:
        """Revoke every granted pass whose window has ended. Returns how many."""
        ended = self.store.ended_passes(utc_iso(self.clock()))
        revoked = 0
        for pass_id in ended:
            try:
                self.revoke(pass_id, "expired")
                revoked += 1
            except Conflict:  # busy with another change: the next run sees it again
                logger.warning("pass not expired this run", extra={"pass_id": pass_id})
        return revoked

    def sweep(self, older_than: timedelta = timedelta(minutes=15)) -> int:
        """Queue again passes left ``pending`` (a lost enqueue) or ``failed`` (the gateway was down
        longer than the retries) for longer than ``older_than``. Returns how many."""
        before = utc_iso(self.clock() - older_than)
        # Passes the gateway refused (``refused``) are left to a person: the security office was told.
        stalled = self.store.stalled_passes("pending", before) + self.store.stalled_passes("failed", before)
        for pass_id, version in stalled:
            self.queue_sync(pass_id, version)
        return len(stalled)

    # -- people -------------------------------------------------------------------------------
    def read(self, actor: Actor, pass_id: str) -> DoorPass:
        """A pass, for the security office, its host or its holder; others' reads are audited.

        Raises:
            NotFound: no such pass, or not one ``actor`` may see (indistinguishable).
        """
        item = self.store.get_pass(pass_id)
        if item is None or item.kind == TOMBSTONE or not (
                actor.has(Role.SECURITY) or actor.userid in (item.host, item.person)):
            raise NotFound("No such pass.")
        if actor.userid != item.person and self.audit is not None:
            self.audit.record(subject=f"person#{item.person}", actor=actor.userid, action="door_pass.read",
                              detail={"pass_id": pass_id})
        return item

    def revoke_now(self, actor: Actor, pass_id: str, reason: str) -> DoorPass:
        """The security office revokes a pass at once (audited).

        Raises:
            Forbidden: not the security office. NotFound: no such pass. Conflict: it kept changing.
        """
        if not actor.has(Role.SECURITY):
            raise Forbidden("Only the security office revokes passes.")
        self.read(actor, pass_id)
        item = self.revoke(pass_id, f"revoked by security: {reason}")
        assert item is not None  # a stored pass is never deleted before its TTL
        if self.audit is not None:
            self.audit.record(subject=f"person#{item.person}", actor=actor.userid, action="door_pass.revoke",
                              detail={"pass_id": pass_id})
        return item

    # -- the door-sync consumer ----------------------------------------------------------------
    def sync(self, pass_id: str, version: int, attempt: int) -> str:
        """Push the pass to the door gateway if ``version`` is its current, unpushed version.

        Returns what happened: ``synced``, ``superseded`` (a newer version is queued), ``already``
        (pushed before), ``gone`` (no such pass) or ``failed`` (the gateway refused it, or was
        unavailable on the last attempt: the security office is told).

        Raises:
            RetryLater: the gateway is unavailable; the message should come back after the delay.
        """
        # One push of a pass at a time: a slow grant must not land after the revoke that followed
        # it (a door system like ISAPI has no versions to sort them out).
        lease = f"door-sync:{pass_id}"
        if not self.leases.claim(lease, 120):
            raise RetryLater(5)
        try:
            return self._sync(pass_id, version, attempt)
        finally:
            self.leases.release(lease)

    def _sync(self, pass_id: str, version: int, attempt: int) -> str:
        item = self.store.get_pass(pass_id)
        if item is None or item.kind == TOMBSTONE:
            return "gone"
        if version < item.version:
            return "superseded"
        if item.synced_version >= item.version:
            return "already"
        command = DoorCommand(
            op="grant" if item.state == "granted" else "revoke", pass_id=item.pass_id, version=item.version,
            name=item.name, credential_kind=item.credential_kind,  # type: ignore[arg-type]
            credential_number=self.sealer.open(CREDENTIAL_FIELD, item.credential_sealed), gates=item.gates,
            valid_from=parse_utc(item.valid_from), valid_to=parse_utc(item.valid_to))
        try:
            self.gateway().apply(command)
        except GatewayRejected as exc:
            return self._failed(item, f"refused: {exc}", due="refused")
        except GatewayUnavailable as exc:
            if attempt >= self.max_attempts:
                return self._failed(item, f"unavailable: {exc}")
            self.store.mark_sync(item.pass_id, item.version, "pending", f"unavailable: {exc}",
                                 utc_iso(self.clock()), due="pending")
            raise RetryLater(min(_MAX_DELAY, self.retry_base_seconds * 2 ** (attempt - 1))) from None
        self.store.mark_sync(item.pass_id, item.version, "synced", None, utc_iso(self.clock()))
        return "synced"

    def _failed(self, item: DoorPass, reason: str, due: str = "failed") -> str:
        if self.store.mark_sync(item.pass_id, item.version, "failed", reason[:200], utc_iso(self.clock()), due=due):
            officers = self.security()
            if officers:
                what = "开通" if item.state == "granted" else "撤销"
                self.notify(Notification(
                    key=f"door-pass:{item.pass_id}:v{item.version}:failed", recipients=tuple(officers),
                    title="门禁同步失败",
                    body=f"通行证 {item.pass_id}（{item.name}，{item.credential_masked}）{what}未能同步到门禁系统："
                         f"{reason[:100]}。系统会继续重试，请核查门禁网关。"))
        return "failed"

    # -- internals ------------------------------------------------------------------------------
    def _queue(self, item: DoorPass) -> None:
        try:
            self.queue_sync(item.pass_id, item.version)
        except Exception as exc:  # the pass is stored pending: the sweep queues it again
            logger.error("door sync not queued; the sweep will", extra={"pass_id": item.pass_id,
                                                                        "error_type": type(exc).__name__})

    def _queue_if_due(self, item: DoorPass) -> None:
        if item.synced_version < item.version:
            self._queue(item)

    def _expires(self, item: DoorPass) -> datetime:
        return parse_utc(item.valid_to) + self.retention

    def _tombstone(self, pass_id: str, because: str) -> DoorPass:
        now = utc_iso(self.clock())
        return DoorPass(pass_id=pass_id, version=1, person="", name="", kind=TOMBSTONE, host=None,
                        credential_kind="", credential_sealed="", credential_masked="", credential_key="",
                        gates=(), valid_from=now, valid_to=now, state="revoked", revoked_because=because,
                        sync_status="synced", synced_version=1, sync_error=None, created_at=now, updated_at=now)


# -- passages -----------------------------------------------------------------------------------
class DoorEvent(BaseModel):
    """One gate event as the door system posts it."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    gate: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    direction: Literal["in", "out"]
    at: AwareDatetime
    credential_kind: Literal["campus_card", "id_card", "face"]
    card_number: str | None = Field(None, pattern=r"^[A-Za-z0-9]{1,32}$")
    id_number: str | None = Field(None, max_length=18)
    userid: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    result: Literal["granted", "denied"]

    @model_validator(mode="after")
    def _credential_present(self) -> DoorEvent:
        if self.credential_kind == "id_card":
            if not self.id_number:
                raise ValueError("an id_card event needs id_number")
            try:
                self.id_number = normalise_id_number(self.id_number)
            except InvalidIdentity:
                raise ValueError("id_number is not a valid ID number") from None
        if self.credential_kind == "campus_card" and not (self.card_number or self.userid):
            raise ValueError("a campus_card event needs card_number or userid")
        return self


@dataclass(frozen=True)
class Passage:
    event_id: str
    person: str
    person_kind: str  # member | visitor | unknown
    gate: str
    direction: str
    at: str  # UTC ISO
    credential_kind: str
    credential_masked: str | None
    result: str


@dataclass(frozen=True)
class Presence:
    person: str
    person_kind: str
    latest: str  # "<at>#<event_id>"
    gate: str
    direction: str

    @property
    def at(self) -> str:
        return self.latest.split("#", 1)[0]


class PassageStore(Protocol):
    def add_passage(self, passage: Passage, gate_day: str, expires_at: datetime) -> bool: ...
    def count_passage(self, day: str, gate: str, hour: int, expires_at: datetime) -> None: ...
    def move(self, presence: Presence, expires_at: datetime) -> bool: ...
    def pass_of_credential(self, credential_key: str, at: str) -> tuple[str, str] | None: ...
    def passages_of(self, person: str, first: str, last: str) -> Iterator[Passage]: ...
    def passages_at(self, gate_day: str, first: str, last: str) -> Iterator[Passage]: ...
    def inside(self, limit: int, after: str | None) -> tuple[list[Presence], str | None]: ...
    def counts(self, day: str) -> dict[str, dict[int, int]]: ...


class Claims(Protocol):
    def claim(self, key: str, ttl_seconds: float, value: str = "") -> bool: ...
    def release(self, key: str) -> None: ...


MAX_EVENT_AGE = timedelta(days=30)  # a door system catching up after an outage
MAX_EVENT_AHEAD = timedelta(hours=1)  # clock drift of a gate controller


@dataclass(frozen=True)
class Receipt:
    stored: int
    duplicates: int
    rejected: tuple[dict[str, Any], ...] = ()


def gate_day(gate: str, day: date) -> str:
    return f"{gate}#{day.isoformat()}"


@dataclass
class DoorLog:
    """Receives the door system's event batches (their signature checked by the caller:
    :func:`chalicelib.domain.door_signature.verify`)."""

    store: PassageStore
    sealer: Sealer
    claims: Claims
    is_member: Callable[[str], bool]
    member_of_id: Callable[[str], str | None]  # the member whose ID number has this lookup key
    member_of_card: Callable[[str], str | None]  # the member holding this campus card
    tz: tzinfo
    clock: Callable[[], datetime]
    max_skew_seconds: int = 300
    retention: timedelta = timedelta(days=180)

    def receive(self, events: Sequence[Any], body: bytes, signed_at: int) -> Receipt:
        """Store the good ``events`` of a batch whose signature was verified (each once), and list
        the bad ones. ``body`` and ``signed_at`` are what was signed (the raw body, its ``t``).

        Raises:
            Unauthorized: this body with this signed time was received before (a replay; nothing is
                stored).
        """
        # What was signed is "<t>.<body>": remembered as long as the signature is good, it stops
        # replays however the header is spelled. It is forgotten if this call fails, so the door
        # system's retry of the same request is not taken for a replay.
        replay = "door-webhook:" + hashlib.sha256(f"{signed_at}.".encode() + body).hexdigest()
        if not self.claims.claim(replay, 2 * self.max_skew_seconds + 60):
            raise Unauthorized("Door signature rejected: this batch was received already (replay).")
        try:
            return self._store(events)
        except Exception:
            self.claims.release(replay)
            raise

    def _store(self, events: Sequence[Any]) -> Receipt:
        now = self.clock()
        stored = duplicates = 0
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(events):
            event_id = raw.get("event_id") if isinstance(raw, dict) and isinstance(raw.get("event_id"), str) \
                and len(raw["event_id"]) <= 64 else None
            try:
                event = DoorEvent.model_validate(raw)
            except ValidationError as exc:
                rejected.append({"index": index, "event_id": event_id,
                                 "errors": sorted({".".join(str(p) for p in e["loc"]) or "event"
                                                   for e in exc.errors(include_input=False, include_url=False)})})
                continue
            if not now - MAX_EVENT_AGE <= event.at <= now + MAX_EVENT_AHEAD:
                rejected.append({"index": index, "event_id": event_id, "errors": ["at"]})
                continue
            if self.record(event):
                stored += 1
            else:
                duplicates += 1
        return Receipt(stored, duplicates, tuple(rejected))

    def record(self, event: DoorEvent) -> bool:
        """Store one event (``False``: stored before), keep presence and the hour's count."""
        person, kind, masked = self._who(event)
        at = utc_iso(event.at)
        passage = Passage(event_id=event.event_id, person=person, person_kind=kind, gate=event.gate,
                          direction=event.direction, at=at, credential_kind=event.credential_kind,
                          credential_masked=masked, result=event.result)
        local = event.at.astimezone(self.tz)
        expires = event.at + self.retention
        new = self.store.add_passage(passage, gate_day(event.gate, local.date()), expires)
        if new:
            # A crash between the two writes loses this one count (never doubles it): a retry finds
            # the passage stored and does not count again.
            self.store.count_passage(local.date().isoformat(), event.gate, local.hour, expires)
        if event.result == "granted":
            self.store.move(Presence(person, kind, f"{at}#{event.event_id}", event.gate, event.direction), expires)
        return new

    def _who(self, event: DoorEvent) -> tuple[str, str, str | None]:
        """The person key, their kind and the masked credential of an event."""
        if event.userid and self.is_member(event.userid):
            masked = mask_card(event.card_number) if event.card_number else None
            return event.userid, "member", masked
        if event.credential_kind == "id_card" and event.id_number:
            key = self.sealer.lookup_key(ID_LOOKUP_FIELD, event.id_number)
            member = self.member_of_id(key)
            if member is not None:
                return member, "member", mask_id_number(event.id_number)
            known = self.store.pass_of_credential(key, utc_iso(event.at))
            return (known[0] if known else id_person(key)), ("visitor" if known else "unknown"), \
                mask_id_number(event.id_number)
        if event.card_number:
            member = self.member_of_card(event.card_number)
            if member is None and self.is_member(event.card_number):
                member = event.card_number  # a card numbered with its holder's userid
            if member is not None:
                return member, "member", mask_card(event.card_number)
            key = self.sealer.lookup_key(CARD_LOOKUP_FIELD, event.card_number)
            return f"card-{key[:24]}", "unknown", mask_card(event.card_number)
        return f"unknown-{hashlib.sha256(event.event_id.encode()).hexdigest()[:24]}", "unknown", None


# -- tracing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Overlap:
    gate: str
    mine: str  # my passage's time
    theirs: str


@dataclass(frozen=True)
class Contact:
    person: str
    person_kind: str
    overlaps: tuple[Overlap, ...]


def campus_days(first: datetime, last: datetime, tz: tzinfo) -> list[date]:
    day, end = first.astimezone(tz).date(), last.astimezone(tz).date()
    days = []
    while day <= end:
        days.append(day)
        day += timedelta(days=1)
    return days


def merge_windows(times: Iterable[datetime], window: timedelta) -> list[tuple[datetime, datetime]]:
    """The union of ``[t - window, t + window]`` over ``times``, as sorted disjoint intervals."""
    merged: list[tuple[datetime, datetime]] = []
    for moment in sorted(times):
        start, end = moment - window, moment + window
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def contacts(mine: Sequence[Passage], read_gate: Callable[[str, datetime, datetime], Iterable[Passage]],
             window: timedelta) -> list[Contact]:
    """Everyone who passed a gate within ``window`` of one of ``mine`` there, with each overlap.

    Only passages that went through count (``granted``): a denied swipe is not a passage.

    Each gate is read once per merged stretch of time (nearby passages of mine share one query),
    and an overlap is a pair (my passage, their passage) at the same gate at most ``window`` apart.
    Ordered by number of overlaps (most first), then person.
    """
    mine = [p for p in mine if p.result == "granted"]
    if not mine:
        return []
    me = mine[0].person
    by_gate: dict[str, list[datetime]] = defaultdict(list)
    for passage in mine:
        by_gate[passage.gate].append(parse_utc(passage.at))
    found: dict[str, tuple[str, list[Overlap]]] = {}
    for gate, times in by_gate.items():
        times.sort()
        for start, end in merge_windows(times, window):
            for other in read_gate(gate, start, end):
                if other.person == me or other.result != "granted":
                    continue
                theirs = parse_utc(other.at)
                near = [t for t in times if abs(t - theirs) <= window]
                if near:
                    kind, overlaps = found.setdefault(other.person, (other.person_kind, []))
                    if kind == "unknown" and other.person_kind != "unknown":
                        # An ID card swiped before its visitor's pass started reads "unknown".
                        found[other.person] = (other.person_kind, overlaps)
                    overlaps.extend(Overlap(gate, utc_iso(t), other.at) for t in near)
    result = [Contact(person, kind, tuple(sorted(overlaps, key=lambda o: (o.mine, o.theirs))))
              for person, (kind, overlaps) in found.items()]
    return sorted(result, key=lambda c: (-len(c.overlaps), c.person))


@dataclass
class Tracing:
    """The security office's and the hospital's questions about passages; every one audited."""

    store: PassageStore
    audit: AuditLog
    tz: tzinfo
    max_days: int = 31

    def passages(self, actor: Actor, person: str, first: datetime, last: datetime) -> list[Passage]:
        self._check(actor, first, last)
        self.audit.record(subject=f"person#{person}", actor=actor.userid, action="trace.passages",
                          detail={"from": utc_iso(first), "to": utc_iso(last)})
        return list(self.store.passages_of(person, utc_iso(first), utc_iso(last)))

    def contacts(self, actor: Actor, person: str, first: datetime, last: datetime,
                 window: timedelta) -> tuple[list[Passage], list[Contact]]:
        """The person's passages in the period and the contacts they had at the gates."""
        self._check(actor, first, last)
        self.audit.record(subject=f"person#{person}", actor=actor.userid, action="trace.contacts",
                          detail={"from": utc_iso(first), "to": utc_iso(last),
                                  "window_minutes": int(window.total_seconds() // 60)})
        mine = list(self.store.passages_of(person, utc_iso(first), utc_iso(last)))
        return mine, contacts(mine, self._read_gate, window)

    def _read_gate(self, gate: str, start: datetime, end: datetime) -> Iterator[Passage]:
        for day in campus_days(start, end, self.tz):
            yield from self.store.passages_at(gate_day(gate, day), utc_iso(start), utc_iso(end))

    def on_campus(self, actor: Actor, limit: int, after: str | None) -> tuple[list[Presence], str | None]:
        self._check(actor)
        self.audit.record(subject="door#on-campus", actor=actor.userid, action="trace.on_campus")
        return self.store.inside(limit, after)

    def stats(self, actor: Actor, day: date) -> dict[str, dict[int, int]]:
        self._check(actor)
        self.audit.record(subject="door#stats", actor=actor.userid, action="door.stats",
                          detail={"date": day.isoformat()})
        return self.store.counts(day.isoformat())

    def _check(self, actor: Actor, first: datetime | None = None, last: datetime | None = None) -> None:
        if not any(actor.has(role) for role in TRACERS):
            raise Forbidden("Only the security office and the hospital may trace passages.")
        if first is not None and last is not None:
            if last < first:
                raise BadRequest("'to' is before 'from'.")
            if last - first > timedelta(days=self.max_days):
                raise BadRequest(f"Ask for at most {self.max_days} days at a time.")

