"""Storage of door passes, gate passages, who is on campus and the passage counters.

Access patterns and the keys that serve them (no Scan anywhere):

* a pass                                  -> ``door_passes``, hash ``pass_id`` (the application id)
* granted passes whose window ends        -> GSI ``by_expiry``: sparse (``live`` only while
  granted), range ``valid_to``; the expiry job reads what ended
* passes not in sync with the door system -> GSI ``by_sync``: sparse (``sync_due`` is ``pending``
  or ``failed``), range ``updated_at``; the job re-queues what stalled
* the pass of an ID number                -> GSI ``by_credential`` (a keyed hash of the number,
  never the number): door events of ID cards are labelled with the visitor they belong to
* a passage                               -> ``door_passages``, hash ``event_id`` (the door
  system's id: storing is a conditional put, so a resent event is stored once)
* one person's passages in a period       -> GSI ``by_person`` (``person``, ``at``)
* a gate's passages in a period           -> GSI ``by_gate`` (``<gate>#<campus day>``, ``at``):
  one partition per gate and day
* who is on campus                        -> ``door_presence``, hash ``person``: the latest
  passage (conditional on being later); GSI ``on_campus`` is sparse (``inside`` only after an
  ``in``), so it lists exactly the people inside
* passages per gate and hour              -> ``door_counts``, hash ``day``, range ``gate``; one
  number attribute per hour, added to when a passage is first stored
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pynamodb.attributes import ListAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.operand import Path, Value
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName, conditional_failed, save_if
from chalicelib.domain.door import DoorPass, Passage, Presence


# -- passes -------------------------------------------------------------------------------------
class ByExpiry(GlobalSecondaryIndex["DoorPassModel"]):
    class Meta:
        index_name = "by_expiry"
        projection = KeysOnlyProjection()

    live = UnicodeAttribute(hash_key=True)
    valid_to = UnicodeAttribute(range_key=True)


class BySync(GlobalSecondaryIndex["DoorPassModel"]):
    class Meta:
        index_name = "by_sync"
        projection = IncludeProjection(["version"])

    sync_due = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class ByCredential(GlobalSecondaryIndex["DoorPassModel"]):
    class Meta:
        index_name = "by_credential"
        projection = IncludeProjection(["person", "name", "state"])

    credential_key = UnicodeAttribute(hash_key=True)
    valid_from = UnicodeAttribute(range_key=True)


class DoorPassModel(Model):
    class Meta(TableMeta):
        table_name = TableName("door_passes")

    pass_id = UnicodeAttribute(hash_key=True)
    version = NumberAttribute()
    person = UnicodeAttribute()
    name = UnicodeAttribute()
    kind = UnicodeAttribute()  # visitor | return
    host = UnicodeAttribute(null=True)
    credential_kind = UnicodeAttribute()
    credential_sealed = UnicodeAttribute()  # AES-GCM; opened only to call the door gateway
    credential_masked = UnicodeAttribute()
    credential_key = UnicodeAttribute(null=True)  # absent on a tombstone (an index key cannot be empty)
    gates = ListAttribute(of=UnicodeAttribute)
    valid_from = UnicodeAttribute()
    valid_to = UnicodeAttribute()
    state = UnicodeAttribute()  # granted | revoked
    revoked_because = UnicodeAttribute(null=True)
    sync_status = UnicodeAttribute()  # pending | synced | failed
    synced_version = NumberAttribute(default=0)
    sync_error = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    live = UnicodeAttribute(null=True)
    sync_due = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()

    by_expiry = ByExpiry()
    by_sync = BySync()
    by_credential = ByCredential()


_PASS_FIELDS = ("pass_id", "version", "person", "name", "kind", "host", "credential_kind", "credential_sealed",
                "credential_masked", "credential_key", "valid_from", "valid_to", "state", "revoked_because",
                "sync_status", "synced_version", "sync_error", "created_at", "updated_at")


def _pass_model(item: DoorPass, expires_at: datetime) -> DoorPassModel:
    model = DoorPassModel(**{name: getattr(item, name) for name in _PASS_FIELDS})
    model.gates = list(item.gates)
    model.credential_key = item.credential_key or None
    model.live = "granted" if item.state == "granted" else None
    model.sync_due = item.sync_status if item.sync_status != "synced" else None
    model.expires_at = expires_at
    return model


def _pass(model: DoorPassModel) -> DoorPass:
    values: dict[str, Any] = {name: getattr(model, name) for name in _PASS_FIELDS}
    values["version"] = int(model.version)
    values["synced_version"] = int(model.synced_version or 0)
    values["credential_key"] = model.credential_key or ""
    return DoorPass(gates=tuple(model.gates or ()), **values)


# -- passages -----------------------------------------------------------------------------------
class ByPerson(GlobalSecondaryIndex["PassageModel"]):
    class Meta:
        index_name = "by_person"
        projection = AllProjection()

    person = UnicodeAttribute(hash_key=True)
    at = UnicodeAttribute(range_key=True)


class ByGate(GlobalSecondaryIndex["PassageModel"]):
    class Meta:
        index_name = "by_gate"
        projection = AllProjection()

    gate_day = UnicodeAttribute(hash_key=True)
    at = UnicodeAttribute(range_key=True)


class PassageModel(Model):
    class Meta(TableMeta):
        table_name = TableName("door_passages")

    event_id = UnicodeAttribute(hash_key=True)
    person = UnicodeAttribute()
    person_kind = UnicodeAttribute()  # member | visitor | unknown
    gate = UnicodeAttribute()
    gate_day = UnicodeAttribute()
    direction = UnicodeAttribute()
    at = UnicodeAttribute()  # UTC, ISO-8601 with milliseconds and Z: sorts as time
    credential_kind = UnicodeAttribute()
    credential_masked = UnicodeAttribute(null=True)
    result = UnicodeAttribute()
    expires_at = TTLAttribute()

    by_person = ByPerson()
    by_gate = ByGate()


_PASSAGE_FIELDS = ("event_id", "person", "person_kind", "gate", "direction", "at", "credential_kind",
                   "credential_masked", "result")


def _passage(model: PassageModel) -> Passage:
    return Passage(**{name: getattr(model, name) for name in _PASSAGE_FIELDS})


class OnCampus(GlobalSecondaryIndex["PresenceModel"]):
    class Meta:
        index_name = "on_campus"
        projection = AllProjection()

    inside = UnicodeAttribute(hash_key=True)
    latest = UnicodeAttribute(range_key=True)


class PresenceModel(Model):
    class Meta(TableMeta):
        table_name = TableName("door_presence")

    person = UnicodeAttribute(hash_key=True)
    person_kind = UnicodeAttribute()
    latest = UnicodeAttribute()  # "<at>#<event_id>": later passages win, whatever order they arrive in
    gate = UnicodeAttribute()
    direction = UnicodeAttribute()
    inside = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()

    on_campus = OnCampus()


class DoorCountModel(Model):
    class Meta(TableMeta):
        table_name = TableName("door_counts")

    day = UnicodeAttribute(hash_key=True)
    gate = UnicodeAttribute(range_key=True)
    expires_at = TTLAttribute(null=True)


HOURS = tuple(f"h{hour:02d}" for hour in range(24))


class DoorRepository:
    """Reads and writes of passes, passages, presence and counters, in domain terms."""

    def __init__(self) -> None:
        self.items_read = 0  # passages read since built (the tracing benchmark reports it)

    # -- passes ---------------------------------------------------------------------------------
    def get_pass(self, pass_id: str) -> DoorPass | None:
        try:
            return _pass(DoorPassModel.get(pass_id, consistent_read=True))
        except DoesNotExist:
            return None

    def create_pass(self, item: DoorPass, expires_at: datetime) -> bool:
        """Store a new pass; ``False`` (nothing written) if the pass exists."""
        return save_if(_pass_model(item, expires_at), DoorPassModel.pass_id.does_not_exist())

    def save_pass(self, item: DoorPass, expected_version: int, expires_at: datetime) -> bool:
        """Store a new version of a pass; ``False`` if its version is no longer ``expected_version``."""
        return save_if(_pass_model(item, expires_at), DoorPassModel.version == expected_version)

    def mark_sync(self, pass_id: str, version: int, status: str, error: str | None, now: str,
                  due: str | None = None) -> bool:
        """Record the outcome of pushing ``version``; ``False`` if the pass moved on meanwhile (the
        newer version's own message reports its outcome). ``due`` is what the sweep looks for
        (``pending``, ``failed``; ``refused`` is left to a person); a synced pass is due nothing."""
        actions = [DoorPassModel.sync_status.set(status), DoorPassModel.updated_at.set(now)]
        if status == "synced":
            actions += [DoorPassModel.synced_version.set(version), DoorPassModel.sync_due.remove(),
                        DoorPassModel.sync_error.remove()]
        else:
            actions += [DoorPassModel.sync_due.set(due or status)]
            actions.append(DoorPassModel.sync_error.set(error) if error else DoorPassModel.sync_error.remove())
        try:
            DoorPassModel(pass_id).update(actions=actions, condition=DoorPassModel.version == version)
        except UpdateError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def ended_passes(self, before: str) -> list[str]:
        """Ids of granted passes whose window ended before ``before`` (UTC ISO)."""
        return [m.pass_id for m in DoorPassModel.by_expiry.query("granted", DoorPassModel.valid_to < before)]

    def stalled_passes(self, status: str, before: str) -> list[tuple[str, int]]:
        """``(pass_id, version)`` of passes ``pending`` or ``failed`` since before ``before``."""
        return [(m.pass_id, int(m.version)) for m in DoorPassModel.by_sync.query(
            status, DoorPassModel.updated_at < before)]

    def pass_of_credential(self, credential_key: str, at: str) -> tuple[str, str] | None:
        """``(person, name)`` of the latest pass of a credential that started by ``at``."""
        for model in DoorPassModel.by_credential.query(credential_key, DoorPassModel.valid_from <= at,
                                                         scan_index_forward=False, limit=1):
            return model.person, model.name
        return None

    # -- passages -------------------------------------------------------------------------------
    def add_passage(self, passage: Passage, gate_day: str, expires_at: datetime) -> bool:
        """Store a passage once: ``False`` if its event id is stored already (nothing written)."""
        model = PassageModel(**{name: getattr(passage, name) for name in _PASSAGE_FIELDS})
        model.gate_day = gate_day
        model.expires_at = expires_at
        return save_if(model, PassageModel.event_id.does_not_exist())

    def count_passage(self, day: str, gate: str, hour: int, expires_at: datetime) -> None:
        DoorCountModel._get_connection().update_item(
            day, gate, actions=[Path([HOURS[hour]]).add(Value(1, attribute=NumberAttribute())),
                                DoorCountModel.expires_at.set(expires_at)], return_values="NONE")

    def counts(self, day: str) -> dict[str, dict[int, int]]:
        """Passages of a campus day per gate and hour (one query; a day has a row per gate)."""
        out: dict[str, dict[int, int]] = {}
        # The hour attributes are not declared on the model (PynamoDB would drop them): read raw items.
        answer = DoorCountModel._get_connection().query(day)
        for item in answer.get("Items", []):
            out[item["gate"]["S"]] = {h: int(item[name]["N"]) for h, name in enumerate(HOURS) if name in item}
        return out

    def passages_of(self, person: str, first: str, last: str) -> Iterator[Passage]:
        """A person's passages with ``first <= at <= last``, in time order."""
        return self._read(PassageModel.by_person.query(person, PassageModel.at.between(first, last)))

    def passages_at(self, gate_day: str, first: str, last: str) -> Iterator[Passage]:
        """A gate's passages of one campus day with ``first <= at <= last``, in time order."""
        return self._read(PassageModel.by_gate.query(gate_day, PassageModel.at.between(first, last)))

    def _read(self, result: Any) -> Iterator[Passage]:
        for model in result:
            self.items_read += 1
            yield _passage(model)

    # -- presence -------------------------------------------------------------------------------
    def move(self, presence: Presence, expires_at: datetime) -> bool:
        """Record ``presence`` as the person's latest passage unless a later one is recorded."""
        model = PresenceModel(person=presence.person, person_kind=presence.person_kind, latest=presence.latest,
                              gate=presence.gate, direction=presence.direction,
                              inside="in" if presence.direction == "in" else None, expires_at=expires_at)
        return save_if(model, PresenceModel.person.does_not_exist() | (PresenceModel.latest < presence.latest))

    def inside(self, limit: int, after: str | None) -> tuple[list[Presence], str | None]:
        """People whose latest passage is ``in``, latest first, a page at a time."""
        last_key = None
        if after:
            latest, _, person = after.partition("|")
            last_key = {"inside": {"S": "in"}, "latest": {"S": latest}, "person": {"S": person}}
        result = PresenceModel.on_campus.query("in", scan_index_forward=False, limit=limit,
                                               last_evaluated_key=last_key)
        page = [Presence(m.person, m.person_kind, m.latest, m.gate, m.direction) for m in result]
        key = result.last_evaluated_key
        return page, (f"{key['latest']['S']}|{key['person']['S']}" if key and len(page) == limit else None)


MODELS: tuple[type[Model], ...] = (DoorPassModel, PassageModel, PresenceModel, DoorCountModel)
