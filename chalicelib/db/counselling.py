"""Storage of counselling appointments: slots (each holding at most one booking) and per-person holdings.

Access patterns and the keys that serve them (no Scan anywhere):

* a slot (and the booking on it)        -> ``counselling_slots`` table, hash ``slot_id``
* the centre's calendar of a period     -> GSI ``by_month`` (campus month, ``<start UTC>#<slot_id>``)
* open slots of a period                -> GSI ``by_open`` on ``open_month``: sparse, only open unbooked
  slots carry it, so nobody's list ever touches a booked slot
* upcoming bookings (the centre)        -> GSI ``by_booked`` on ``booked_month``: sparse, booked slots
* my bookings, latest first             -> GSI ``by_booker`` on ``booked_by``: sparse, booked slots
* a person's booked slots (the quota)   -> ``counselling_bookers`` table, hash ``booker``

A booking is one transaction of two conditional writes: the slot (``booked_by`` must not exist and
the slot must be open: of any number of simultaneous bookers exactly one passes) and the booker's
holdings (``version`` unchanged since read: one person's simultaneous bookings cannot both pass
the quota). Cancelling or withdrawing clears the booking from the slot in the same transaction as
it leaves the booker's holdings.

The topic and the contact number are sealed (AES-GCM, see :mod:`chalicelib.domain.protection`):
counselling data is never readable in the table, a backup or an export.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.db.base import TableMeta, TableName, transaction_connection
from chalicelib.domain.counselling import Booking, Holdings, Slot
from chalicelib.errors import Conflict


class ByMonth(GlobalSecondaryIndex["SlotModel"]):
    class Meta:
        index_name = "by_month"
        projection = AllProjection()

    month = UnicodeAttribute(hash_key=True)
    start_key = UnicodeAttribute(range_key=True)


class ByOpen(GlobalSecondaryIndex["SlotModel"]):
    class Meta:
        index_name = "by_open"
        projection = AllProjection()

    open_month = UnicodeAttribute(hash_key=True)
    start_key = UnicodeAttribute(range_key=True)


class ByBooked(GlobalSecondaryIndex["SlotModel"]):
    class Meta:
        index_name = "by_booked"
        projection = AllProjection()

    booked_month = UnicodeAttribute(hash_key=True)
    start_key = UnicodeAttribute(range_key=True)


class ByBooker(GlobalSecondaryIndex["SlotModel"]):
    class Meta:
        index_name = "by_booker"
        projection = AllProjection()

    booked_by = UnicodeAttribute(hash_key=True)
    start_key = UnicodeAttribute(range_key=True)


class SlotModel(Model):
    class Meta(TableMeta):
        table_name = TableName("counselling_slots")

    slot_id = UnicodeAttribute(hash_key=True)
    month = UnicodeAttribute()
    start_key = UnicodeAttribute()
    start = UnicodeAttribute()
    end = UnicodeAttribute()
    counsellor = UnicodeAttribute()
    place = UnicodeAttribute()
    mode = UnicodeAttribute()
    status = UnicodeAttribute()
    version = NumberAttribute()
    published_by = UnicodeAttribute()
    published_at = UnicodeAttribute()
    open_month = UnicodeAttribute(null=True)  # only while open and unbooked
    # Only while booked:
    booked_month = UnicodeAttribute(null=True)
    booked_by = UnicodeAttribute(null=True)
    booking_id = UnicodeAttribute(null=True)
    booked_at = UnicodeAttribute(null=True)
    topic = UnicodeAttribute(null=True)  # sealed
    contact = UnicodeAttribute(null=True)  # sealed

    by_month = ByMonth()
    by_open = ByOpen()
    by_booked = ByBooked()
    by_booker = ByBooker()


class BookerModel(Model):
    """The keys of the slots one person holds, and a version for the quota check."""

    class Meta(TableMeta):
        table_name = TableName("counselling_bookers")

    booker = UnicodeAttribute(hash_key=True)
    holdings = UnicodeSetAttribute(null=True)
    version = NumberAttribute(default=0)


MODELS: tuple[type[Model], ...] = (SlotModel, BookerModel)

# The ids we hand out (uuid4 hex): anything else cannot exist, and is not sent to DynamoDB (a key
# over its size limit would be an error there, not an absence).
_ID = re.compile(r"^[0-9a-f]{32}$")
_BOOKING_ATTRIBUTES = ("booked_month", "booked_by", "booking_id", "booked_at", "topic", "contact")


class Sealer(Protocol):
    def seal(self, field: str, value: str) -> str: ...
    def open(self, field: str, token: str) -> str: ...


class SlotRepository:
    """Slots and bookings, in domain records. ``sealer`` seals the topic and contact at rest."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def add(self, slot: Slot) -> None:
        """Raises: Conflict when the id exists (never, with random ids; the condition makes sure)."""
        row = SlotModel(slot_id=slot.slot_id, month=slot.month, start_key=slot.key, start=slot.start.isoformat(),
                        end=slot.end.isoformat(), counsellor=slot.counsellor, place=slot.place, mode=slot.mode,
                        status=slot.status, version=slot.version, published_by=slot.published_by,
                        published_at=slot.published_at, open_month=slot.month if slot.status == "open" else None)
        try:
            row.save(condition=SlotModel.slot_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict("A slot with this id exists already.") from None
            raise

    def get(self, slot_id: str) -> Slot | None:
        if not _ID.match(slot_id):
            return None
        try:
            return self._slot(SlotModel.get(slot_id, consistent_read=True))
        except SlotModel.DoesNotExist:
            return None

    def in_period(self, months: Sequence[str], after: str, until: str, limit: int,
                  open_only: bool) -> tuple[list[Slot], str | None]:
        """Slots with ``after < key < until``, soonest first, one month partition after the other."""
        index = SlotModel.by_open if open_only else SlotModel.by_month
        return self._ascending(index, months, after, until, limit)

    def booked_from(self, months: Sequence[str], after: str, limit: int) -> tuple[list[Slot], str | None]:
        """Booked slots with ``key > after``, soonest first."""
        return self._ascending(SlotModel.by_booked, months, after, "\uffff", limit)

    def of_booker(self, booker: str, limit: int, before: str | None) -> tuple[list[Slot], str | None]:
        """A person's booked slots, latest start first."""
        condition = SlotModel.start_key < before if before else None
        rows = list(SlotModel.by_booker.query(booker, condition, scan_index_forward=False, limit=limit + 1))
        return self._page(rows, limit)

    def holdings(self, booker: str) -> Holdings:
        try:
            row = BookerModel.get(booker, consistent_read=True)
        except BookerModel.DoesNotExist:
            return Holdings(booker=booker)
        return Holdings(booker=booker, keys=frozenset(row.holdings or ()), version=int(row.version or 0))

    def book(self, slot: Slot, booking: Booking, holdings: Holdings, keys: frozenset[str]) -> None:
        """Put ``booking`` on ``slot`` and make ``keys`` the booker's holdings, atomically.

        Raises:
            Conflict: the slot is no longer open and free (someone else booked it, or it was
                withdrawn), or the booker's holdings changed since ``holdings`` was read.
        """
        actions = [SlotModel.status.set("booked"), SlotModel.booked_by.set(booking.booker),
                   SlotModel.booking_id.set(booking.booking_id), SlotModel.booked_at.set(booking.booked_at),
                   SlotModel.booked_month.set(slot.month), SlotModel.open_month.remove(),
                   SlotModel.version.add(1)]
        for name, value in (("topic", booking.topic), ("contact", booking.contact)):
            if value:
                actions.append(getattr(SlotModel, name).set(self._sealer.seal(f"counselling.{name}", value)))
        # The one condition that makes a slot exclusive: nobody holds it (and it was not withdrawn).
        free = SlotModel.booked_by.does_not_exist() & (SlotModel.status == "open")
        unchanged = (BookerModel.booker.does_not_exist() if holdings.version == 0
                     else BookerModel.version == holdings.version)
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                transaction.update(SlotModel(slot.slot_id), actions=actions, condition=free)
                transaction.update(BookerModel(booking.booker), condition=unchanged,
                                   actions=[BookerModel.holdings.set(set(keys)),
                                            BookerModel.version.set(holdings.version + 1)])
        except TransactWriteError as exc:
            raise _conflict(exc, ("This slot has just been booked by someone else; please choose another.",
                                  "Your bookings changed meanwhile; please try again.")) from None

    def release(self, slot: Slot, *, withdraw: bool) -> None:
        """Clear the booking from ``slot``: open it again, or withdraw it. The booker's holdings lose it.

        Raises: Conflict when the slot changed since it was read (booked, cancelled or withdrawn).
        """
        actions = [SlotModel.version.add(1), *(getattr(SlotModel, name).remove() for name in _BOOKING_ATTRIBUTES)]
        if withdraw:
            actions += [SlotModel.status.set("withdrawn"), SlotModel.open_month.remove()]
        else:
            actions += [SlotModel.status.set("open"), SlotModel.open_month.set(slot.month)]
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                transaction.update(SlotModel(slot.slot_id), actions=actions,
                                   condition=SlotModel.version == slot.version)
                if slot.booking is not None:
                    # No condition: taking a key out is right whatever else changed; the version
                    # moves so a booking that read the holdings before this one must read again.
                    transaction.update(BookerModel(slot.booking.booker),
                                       actions=[BookerModel.holdings.delete({slot.key}), BookerModel.version.add(1)])
        except TransactWriteError as exc:
            raise _conflict(exc, ("The slot changed meanwhile; reload it and try again.",
                                  "The booking changed meanwhile; reload it and try again.")) from None

    # -- internals ------------------------------------------------------------------------------
    def _ascending(self, index: Any, months: Sequence[str], after: str, until: str,
                   limit: int) -> tuple[list[Slot], str | None]:
        rows: list[SlotModel] = []
        for month in months:
            for row in index.query(month, SlotModel.start_key > after, limit=limit + 1 - len(rows)):
                if row.start_key >= until:
                    break
                rows.append(row)
            if len(rows) > limit:
                break
        return self._page(rows, limit)

    def _page(self, rows: list[SlotModel], limit: int) -> tuple[list[Slot], str | None]:
        more = len(rows) > limit
        rows = rows[:limit]
        return [self._slot(row) for row in rows], (rows[-1].start_key if more and rows else None)

    def _slot(self, row: SlotModel) -> Slot:
        booking = None
        if row.booked_by:
            booking = Booking(booking_id=row.booking_id or "", booker=row.booked_by, booked_at=row.booked_at or "",
                              topic=self._open("topic", row.topic), contact=self._open("contact", row.contact))
        return Slot(slot_id=row.slot_id, start=datetime.fromisoformat(row.start), end=datetime.fromisoformat(row.end),
                    counsellor=row.counsellor, place=row.place, mode=row.mode, month=row.month, status=row.status,
                    version=int(row.version), published_by=row.published_by, published_at=row.published_at,
                    booking=booking)

    def _open(self, name: str, token: str | None) -> str | None:
        return self._sealer.open(f"counselling.{name}", token) if token else None


def _conflict(exc: TransactWriteError, messages: tuple[str, str]) -> Exception:
    """The Conflict for a cancelled transaction (which of its two items failed picks the message)."""
    if exc.cause_response_code != "TransactionCanceledException":
        return exc
    reasons = exc.cancellation_reasons
    codes = [reason.code if reason is not None else None for reason in reasons]
    if codes and codes[0] == "ConditionalCheckFailed":
        return Conflict(messages[0])
    if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
        return Conflict(messages[1])
    # Another transaction on the same items was in flight (TransactionConflict): a race all the same.
    if any(code == "TransactionConflict" for code in codes):
        return Conflict(messages[0])
    return exc
