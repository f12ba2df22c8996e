"""Storage of the mailbox to the head of student affairs.

Access patterns and the keys that serve them (no Scan anywhere):

* a letter (with its replies and forwardings) -> ``mailbox_letters`` table, hash ``letter_id``
* my letters, newest first                 -> GSI ``by_writer`` (writer, ``<created_at>#<letter_id>``)
* the whole mailbox, newest first          -> GSI ``by_box`` (the one mailbox, ``created_key``): a few
  thousand letters a year fit one partition easily
* the mailbox by status, newest first      -> GSI ``by_status`` (status, ``created_key``)
* the letters forwarded to an office, newest first -> ``mailbox_forwards`` table, hash the office's
  authority (``role:logistics``, ``dept_head:cs``), range the letter's ``created_key``: one row per
  forwarding, written in the same transaction as the letter, so neither exists without the other

The indexes project only what a list shows (subject, status, dates, the length of the conversation
with the writer): bodies, replies and forwardings stay in the table. A letter is one item and every
change one conditional PutItem on its ``version`` (a forwarding: that PutItem and the forwarding's
row, in one transaction), so status, replies and forwardings can never disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.db.base import TableMeta, TableName, transaction_connection
from chalicelib.domain.mailbox import Forward, Letter, LetterSummary, Reply
from chalicelib.errors import Conflict

BOX = "student_affairs"
# The ids we hand out (uuid4 hex): anything else cannot exist, and is not sent to DynamoDB.
_ID = re.compile(r"^[0-9a-f]{32}$")
# What a list shows, beyond the keys every index carries anyway (DynamoDB refuses keys in this list).
_LISTED = ["anonymous", "subject", "version", "created_at", "updated_at", "reply_count"]
# A handler's list reads at most this many rounds of forwardings before answering with what it
# found and a cursor (a status filter could otherwise walk an office's whole history in one request).
_MAX_ROUNDS = 5


class ByWriter(GlobalSecondaryIndex["LetterModel"]):
    class Meta:
        index_name = "by_writer"
        projection = IncludeProjection([*_LISTED, "status"])

    writer = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class ByBox(GlobalSecondaryIndex["LetterModel"]):
    class Meta:
        index_name = "by_box"
        projection = IncludeProjection([*_LISTED, "writer", "status"])

    box = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class ByStatus(GlobalSecondaryIndex["LetterModel"]):
    class Meta:
        index_name = "by_status"
        projection = IncludeProjection([*_LISTED, "writer"])

    status = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class LetterModel(Model):
    class Meta(TableMeta):
        table_name = TableName("mailbox_letters")

    letter_id = UnicodeAttribute(hash_key=True)
    box = UnicodeAttribute(default=BOX)
    writer = UnicodeAttribute()
    anonymous = BooleanAttribute()
    subject = UnicodeAttribute()
    status = UnicodeAttribute()
    version = NumberAttribute()
    created_at = UnicodeAttribute()
    created_key = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    reply_count = NumberAttribute(default=0)  # the conversation with the writer (internal notes not counted)
    record = UnicodeAttribute()  # JSON: body, replies, read_at, closed_by, forwards

    by_writer = ByWriter()
    by_box = ByBox()
    by_status = ByStatus()


class ForwardModel(Model):
    """One forwarding of a letter to an office: how the office finds the letters it handles."""

    class Meta(TableMeta):
        table_name = TableName("mailbox_forwards")

    authority = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)  # the letter's: newest letters first
    letter_id = UnicodeAttribute()
    forwarded_at = UnicodeAttribute()


MODELS: tuple[type[Model], ...] = (LetterModel, ForwardModel)


class LetterRepository:
    def get(self, letter_id: str) -> Letter | None:
        if not _ID.match(letter_id):
            return None
        try:
            return _letter(LetterModel.get(letter_id, consistent_read=True))
        except LetterModel.DoesNotExist:
            return None

    def save(self, letter: Letter, expected_version: int | None, forwarded: Forward | None = None) -> None:
        """Write ``letter`` if the stored version is still ``expected_version`` (``None``: a new one).
        ``forwarded``: the forwarding this change adds; its row is written in the same transaction.

        Raises:
            Conflict: someone else changed the letter first (or forwarded it to the same office).
        """
        condition = (LetterModel.letter_id.does_not_exist() if expected_version is None
                     else LetterModel.version == expected_version)
        if forwarded is not None:
            self._save_forwarded(letter, condition, forwarded)
            return
        try:
            _model(letter).save(condition=condition)
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict("The letter was changed meanwhile; reload it and try again.") from None
            raise

    def _save_forwarded(self, letter: Letter, condition: Any, forwarded: Forward) -> None:
        row = ForwardModel(authority=forwarded.to, created_key=_created_key(letter), letter_id=letter.letter_id,
                           forwarded_at=forwarded.at)
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                transaction.save(_model(letter), condition=condition)
                transaction.save(row, condition=ForwardModel.authority.does_not_exist())
        except TransactWriteError as exc:
            codes = {reason.code for reason in exc.cancellation_reasons or () if reason is not None}
            # A failed condition (a stale version, or that office already has the letter) or another
            # transaction on the same items in flight: either way, a change the caller did not see.
            if exc.cause_response_code == "TransactionCanceledException" and codes & {"ConditionalCheckFailed",
                                                                                      "TransactionConflict"}:
                raise Conflict("The letter was changed meanwhile; reload it and try again.") from None
            raise

    def of_writer(self, writer: str, status: str | None, limit: int,
                  before: str | None) -> tuple[list[LetterSummary], str | None]:
        """One page of a writer's letters, newest first (a person writes few: filtering is cheap)."""
        condition = LetterModel.created_key < before if before else None
        rows = LetterModel.by_writer.query(writer, condition, scan_index_forward=False, limit=limit + 1,
                                           filter_condition=(LetterModel.status == status) if status else None)
        return _page(list(rows), limit)

    def in_box(self, status: str | None, limit: int, before: str | None) -> tuple[list[LetterSummary], str | None]:
        """One page of the whole mailbox, newest first, optionally in one status."""
        condition = LetterModel.created_key < before if before else None
        if status:
            rows = LetterModel.by_status.query(status, condition, scan_index_forward=False, limit=limit + 1)
        else:
            rows = LetterModel.by_box.query(BOX, condition, scan_index_forward=False, limit=limit + 1)
        return _page(list(rows), limit)

    def forwarded_to(self, offices: Sequence[str], status: str | None, limit: int,
                     before: str | None) -> tuple[list[Letter], str | None]:
        """One page of the letters forwarded to any of ``offices``, newest first, optionally in one
        status, each once. Whole letters: what a handler may see of one depends on its threads.

        A page may hold fewer than ``limit`` letters and still have a next one (when a status
        filter skipped many): the cursor is the last letter looked at.
        """
        found: list[Letter] = []
        position = before
        for _ in range(_MAX_ROUNDS):
            keys = _forwarded_keys(offices, position, limit + 1)
            letters = _letters([letter_id for _, letter_id in keys])
            for created_key, letter_id in keys:
                letter = letters.get(letter_id)
                if letter is not None and (status is None or letter.status == status):
                    if len(found) == limit:
                        return found, position
                    found.append(letter)
                position = created_key
            if len(keys) <= limit:
                return found, None
        return found, position


def _forwarded_keys(offices: Sequence[str], before: str | None, count: int) -> list[tuple[str, str]]:
    """The newest ``count`` (created_key, letter_id) forwarded to any of ``offices`` before
    ``before``; a letter forwarded to two of them comes once. Each office's partition is read from
    the cursor on and the results merged."""
    rows: list[ForwardModel] = []
    for office in sorted(set(offices)):
        condition = ForwardModel.created_key < before if before else None
        rows += ForwardModel.query(office, condition, scan_index_forward=False, limit=count)
    newest: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r.created_key, reverse=True):
        newest.setdefault(row.created_key, row.letter_id)
    return list(newest.items())[:count]


def _letters(letter_ids: Sequence[str]) -> dict[str, Letter]:
    """Letters by id (strongly consistent BatchGetItem, 100 keys a call); missing ones are absent."""
    if not letter_ids:
        return {}
    return {row.letter_id: _letter(row) for row in LetterModel.batch_get(list(dict.fromkeys(letter_ids)),
                                                                         consistent_read=True)}


def _created_key(letter: Letter) -> str:
    return f"{letter.created_at}#{letter.letter_id}"


def _page(rows: list[LetterModel], limit: int) -> tuple[list[LetterSummary], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    return [_summary(row) for row in rows], (rows[-1].created_key if more and rows else None)


def _model(letter: Letter) -> LetterModel:
    record: dict[str, Any] = {"body": letter.body, "replies": [asdict(r) for r in letter.replies],
                              "read_at": letter.read_at, "closed_by": letter.closed_by,
                              "forwards": [asdict(f) for f in letter.forwards]}
    return LetterModel(letter_id=letter.letter_id, writer=letter.writer, anonymous=letter.anonymous,
                       subject=letter.subject, status=letter.status, version=letter.version,
                       created_at=letter.created_at, created_key=_created_key(letter),
                       updated_at=letter.updated_at, reply_count=letter.summary().reply_count,
                       record=json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _letter(row: LetterModel) -> Letter:
    record = json.loads(row.record)
    return Letter(letter_id=row.letter_id, writer=row.writer, anonymous=bool(row.anonymous), subject=row.subject,
                  body=record["body"], status=row.status, version=int(row.version), created_at=row.created_at,
                  updated_at=row.updated_at, replies=tuple(Reply(**r) for r in record["replies"]),
                  read_at=record.get("read_at"), closed_by=record.get("closed_by"),
                  forwards=tuple(Forward(**f) for f in record.get("forwards", ())))


def _summary(row: LetterModel) -> LetterSummary:
    return LetterSummary(letter_id=row.letter_id, writer=row.writer, anonymous=bool(row.anonymous),
                         subject=row.subject, status=row.status, version=int(row.version),
                         created_at=row.created_at, updated_at=row.updated_at, reply_count=int(row.reply_count or 0))
