"""Storage of the mailbox to the head of student affairs.

Access patterns and the keys that serve them (no Scan anywhere):

* a letter (with its replies)              -> ``mailbox_letters`` table, hash ``letter_id``
* my letters, newest first                 -> GSI ``by_writer`` (writer, ``<created_at>#<letter_id>``)
* the whole mailbox, newest first          -> GSI ``by_box`` (the one mailbox, ``created_key``): a few
  thousand letters a year fit one partition easily
* the mailbox by status, newest first      -> GSI ``by_status`` (status, ``created_key``)

The indexes project only what a list shows (subject, status, dates, reply count): bodies and
replies stay in the table. A letter is one item and every change one conditional PutItem on its
``version``, so status and replies can never disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName
from chalicelib.domain.mailbox import Letter, LetterSummary, Reply
from chalicelib.errors import Conflict

BOX = "student_affairs"
# The ids we hand out (uuid4 hex): anything else cannot exist, and is not sent to DynamoDB.
_ID = re.compile(r"^[0-9a-f]{32}$")
# What a list shows, beyond the keys every index carries anyway (DynamoDB refuses keys in this list).
_LISTED = ["anonymous", "subject", "version", "created_at", "updated_at", "reply_count"]


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
    reply_count = NumberAttribute(default=0)
    record = UnicodeAttribute()  # JSON: body, replies, read_at, closed_by

    by_writer = ByWriter()
    by_box = ByBox()
    by_status = ByStatus()


MODELS: tuple[type[Model], ...] = (LetterModel,)


class LetterRepository:
    def get(self, letter_id: str) -> Letter | None:
        if not _ID.match(letter_id):
            return None
        try:
            return _letter(LetterModel.get(letter_id, consistent_read=True))
        except LetterModel.DoesNotExist:
            return None

    def save(self, letter: Letter, expected_version: int | None) -> None:
        """Write ``letter`` if the stored version is still ``expected_version`` (``None``: a new one).

        Raises:
            Conflict: someone else changed the letter first.
        """
        condition = (LetterModel.letter_id.does_not_exist() if expected_version is None
                     else LetterModel.version == expected_version)
        try:
            _model(letter).save(condition=condition)
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
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


def _page(rows: list[LetterModel], limit: int) -> tuple[list[LetterSummary], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    return [_summary(row) for row in rows], (rows[-1].created_key if more and rows else None)


def _model(letter: Letter) -> LetterModel:
    record: dict[str, Any] = {"body": letter.body, "replies": [asdict(r) for r in letter.replies],
                              "read_at": letter.read_at, "closed_by": letter.closed_by}
    return LetterModel(letter_id=letter.letter_id, writer=letter.writer, anonymous=letter.anonymous,
                       subject=letter.subject, status=letter.status, version=letter.version,
                       created_at=letter.created_at, created_key=f"{letter.created_at}#{letter.letter_id}",
                       updated_at=letter.updated_at, reply_count=len(letter.replies),
                       record=json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _letter(row: LetterModel) -> Letter:
    record = json.loads(row.record)
    return Letter(letter_id=row.letter_id, writer=row.writer, anonymous=bool(row.anonymous), subject=row.subject,
                  body=record["body"], status=row.status, version=int(row.version), created_at=row.created_at,
                  updated_at=row.updated_at, replies=tuple(Reply(**r) for r in record["replies"]),
                  read_at=record.get("read_at"), closed_by=record.get("closed_by"))


def _summary(row: LetterModel) -> LetterSummary:
    return LetterSummary(letter_id=row.letter_id, writer=row.writer, anonymous=bool(row.anonymous),
                         subject=row.subject, status=row.status, version=int(row.version),
                         created_at=row.created_at, updated_at=row.updated_at, reply_count=int(row.reply_count or 0))
