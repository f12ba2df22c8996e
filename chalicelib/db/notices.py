"""Storage of the notices area: notices, and one row per recipient with their read receipt.

Access patterns and the keys that serve them (no Scan anywhere):

* a notice                                   -> ``notices`` table, hash ``notice_id``
* notices I published, newest first          -> ``notices`` GSI ``by_publisher`` (publisher, ``<published_at>#<id>``)
* notices addressed to me, newest first      -> ``notice_recipients`` table, hash ``userid``,
  range ``<published_at>#<notice_id>`` (title and column copied in, so the list is one Query)
* did I get this notice / have I read it     -> ``notice_recipients`` GetItem (userid, the notice's key)
* who has not read a notice yet              -> ``notice_recipients`` GSI ``unread_by_notice`` (keys only,
  sparse: ``unread_notice`` is set while unread and removed by the receipt, so a read row leaves the index)
* how many have read it                      -> ``notices.read_count``, added to in the same transaction
  that records the receipt, so the count is exact however often a recipient opens it

Recipient rows are written by the fan-out consumer, which may run more than once for a notice (a
run that died part-way): it reads which rows of a slice exist (BatchGetItem) and writes only the
others, so a row, and the receipt a recipient may have recorded on it meanwhile, is never rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.db.base import TableMeta, TableName, transaction_connection
from chalicelib.domain.notices import Audience, Delivery, Notice

WRITE_SLICE = 500  # recipients per batch-writing thread (each BatchWriteItem call takes 25)
WRITE_THREADS = 8


class ByPublisher(GlobalSecondaryIndex["NoticeModel"]):
    class Meta:
        index_name = "by_publisher"
        projection = AllProjection()

    publisher = UnicodeAttribute(hash_key=True)
    published_key = UnicodeAttribute(range_key=True)


class NoticeModel(Model):
    class Meta(TableMeta):
        table_name = TableName("notices")

    notice_id = UnicodeAttribute(hash_key=True)
    publisher = UnicodeAttribute()
    published_key = UnicodeAttribute()
    state = UnicodeAttribute()  # publishing | published
    recipients = NumberAttribute(default=0)
    read_count = NumberAttribute(default=0)
    record = UnicodeAttribute()  # JSON of the rest (title, body, column, audience...)

    by_publisher = ByPublisher()


class UnreadByNotice(GlobalSecondaryIndex["NoticeRecipientModel"]):
    class Meta:
        index_name = "unread_by_notice"
        projection = KeysOnlyProjection()

    unread_notice = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute(range_key=True)


class NoticeRecipientModel(Model):
    class Meta(TableMeta):
        table_name = TableName("notice_recipients")

    userid = UnicodeAttribute(hash_key=True)
    notice_key = UnicodeAttribute(range_key=True)
    notice_id = UnicodeAttribute()
    column = UnicodeAttribute()
    title = UnicodeAttribute()
    read_at = UnicodeAttribute(null=True)
    unread_notice = UnicodeAttribute(null=True)  # the notice id while unread; removed when read

    unread_by_notice = UnreadByNotice()


MODELS: tuple[type[Model], ...] = (NoticeModel, NoticeRecipientModel)


class NoticeRepository:
    # -- notices --------------------------------------------------------------------------------
    def create(self, notice: Notice) -> bool:
        """Store a new notice unless it exists; returns whether it was created."""
        try:
            _model(notice).save(condition=NoticeModel.notice_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def discard(self, notice: Notice) -> None:
        """Delete a notice still ``publishing`` (its fan-out could not be queued); nothing else."""
        try:
            NoticeModel(notice_id=notice.notice_id).delete(condition=NoticeModel.state == "publishing")
        except DeleteError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise

    def get(self, notice_id: str) -> Notice | None:
        try:
            return _notice(NoticeModel.get(notice_id, consistent_read=True))
        except NoticeModel.DoesNotExist:
            return None

    def mark_published(self, notice: Notice, recipients: int) -> Notice:
        NoticeModel(notice_id=notice.notice_id).update(
            actions=[NoticeModel.state.set("published"), NoticeModel.recipients.set(recipients)],
            condition=NoticeModel.notice_id.exists())
        return replace(notice, state="published", recipients=recipients)

    def published_by(self, publisher: str, limit: int, after: str | None) -> tuple[list[Notice], str | None]:
        """One page of a publisher's notices, newest first."""
        condition = NoticeModel.published_key < after if after else None
        rows = list(NoticeModel.by_publisher.query(publisher, condition, scan_index_forward=False, limit=limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [_notice(row) for row in rows], (rows[-1].published_key if more and rows else None)

    # -- recipients -----------------------------------------------------------------------------
    def add_recipients(self, notice: Notice, userids: Sequence[str]) -> int:
        """One unread row per recipient who has none yet; returns how many rows were written.

        Slices of the recipients go out from a few threads (a notice to every student is ~15,000
        rows): each reads which of its rows exist (strongly consistent BatchGetItem, 100 keys a
        call) and writes the others (BatchWriteItem, 25 a call). An existing row is never
        rewritten, so running this again after a failure part-way neither duplicates a row nor
        makes a read notice unread again (which would count its next read twice).
        """
        def write(chunk: Sequence[str]) -> int:
            existing = {row.userid for row in NoticeRecipientModel.batch_get(
                [(userid, notice.key) for userid in chunk], consistent_read=True)}
            missing = [userid for userid in chunk if userid not in existing]
            with NoticeRecipientModel.batch_write() as batch:
                for userid in missing:
                    batch.save(NoticeRecipientModel(userid=userid, notice_key=notice.key, notice_id=notice.notice_id,
                                                    column=notice.column, title=notice.title,
                                                    unread_notice=notice.notice_id))
            return len(missing)

        unique = list(dict.fromkeys(userids))
        chunks = [unique[start : start + WRITE_SLICE] for start in range(0, len(unique), WRITE_SLICE)]
        if not chunks:
            return 0
        written = write(chunks[0])  # in this thread first: the model's connection is built once, not raced for
        if len(chunks) > 1:
            with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(chunks) - 1)) as pool:
                written += sum(pool.map(write, chunks[1:]))  # sum(): re-raises the first failure
        return written

    def delivery(self, userid: str, notice: Notice) -> Delivery | None:
        try:
            return _delivery(NoticeRecipientModel.get(userid, notice.key, consistent_read=True))
        except NoticeRecipientModel.DoesNotExist:
            return None

    def mark_read(self, delivery: Delivery, at: str) -> bool:
        """Record the receipt and count it, atomically; ``False`` if it was recorded before."""
        row = NoticeRecipientModel(userid=delivery.userid, notice_key=f"{delivery.published_at}#{delivery.notice_id}")
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                transaction.update(row, actions=[NoticeRecipientModel.read_at.set(at),
                                                 NoticeRecipientModel.unread_notice.remove()],
                                   condition=NoticeRecipientModel.userid.exists()
                                   & NoticeRecipientModel.read_at.does_not_exist())
                transaction.update(NoticeModel(notice_id=delivery.notice_id),
                                   actions=[NoticeModel.read_count.add(1)], condition=NoticeModel.notice_id.exists())
        except TransactWriteError as exc:
            if any(reason is not None and reason.code == "ConditionalCheckFailed"
                   for reason in exc.cancellation_reasons or ()):
                return False
            raise
        return True

    def addressed_to(self, userid: str, column: str | None, limit: int,
                     after: str | None) -> tuple[list[Delivery], str | None]:
        """One page of the notices addressed to ``userid`` (of one column if given), newest first."""
        condition = NoticeRecipientModel.notice_key < after if after else None
        only = NoticeRecipientModel.column == column if column else None
        rows = list(NoticeRecipientModel.query(userid, condition, only, scan_index_forward=False, limit=limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [_delivery(row) for row in rows], (rows[-1].notice_key if more and rows else None)

    def unread(self, notice_id: str, limit: int, after: str | None) -> tuple[list[str], str | None]:
        """One page of the userids who have not read a notice, in userid order."""
        condition = NoticeRecipientModel.userid > after if after else None
        rows = list(NoticeRecipientModel.unread_by_notice.query(notice_id, condition, limit=limit + 1))
        more = len(rows) > limit
        userids = [row.userid for row in rows[:limit]]
        return userids, (userids[-1] if more and userids else None)


def _model(notice: Notice) -> NoticeModel:
    record = {"column": notice.column, "title": notice.title, "body": notice.body, "url": notice.url,
              "attachments": list(notice.attachments), "publisher_department": notice.publisher_department,
              "audience": notice.audience.as_dict(), "published_at": notice.published_at, "source": notice.source,
              "approved_by": notice.approved_by}
    return NoticeModel(notice_id=notice.notice_id, publisher=notice.publisher, published_key=notice.key,
                       state=notice.state, recipients=notice.recipients, read_count=notice.read,
                       record=json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _notice(row: NoticeModel) -> Notice:
    record: dict[str, Any] = json.loads(row.record)
    return Notice(notice_id=row.notice_id, column=record["column"], title=record["title"], body=record["body"],
                  publisher=row.publisher, publisher_department=record["publisher_department"],
                  audience=Audience.of(record["audience"]), published_at=record["published_at"], url=record["url"],
                  attachments=tuple(record["attachments"]), recipients=int(row.recipients or 0),
                  read=int(row.read_count or 0), state=row.state, source=record["source"],  # type: ignore[arg-type]
                  approved_by=record["approved_by"])


def _delivery(row: NoticeRecipientModel) -> Delivery:
    published_at, _, _ = row.notice_key.rpartition("#")
    return Delivery(userid=row.userid, notice_id=row.notice_id, published_at=published_at, column=row.column,
                    title=row.title, read_at=row.read_at)
