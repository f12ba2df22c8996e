"""Storage of the repair area: repair orders.

Access patterns and the keys that serve them (no Scan anywhere):

* an order                                  -> ``repair_orders`` table, hash ``order_id`` (the application id)
* a student's orders, newest first          -> GSI ``by_student`` (student, ``<created_at>#<order_id>``)
* logistics' list by status, oldest first   -> GSI ``by_status`` (status, ``<created_at>#<order_id>``); the
  open list reads the ``accepted``, ``assigned`` and ``done`` partitions from the cursor on and merges them

An order is one item with its history inside: every change is one conditional PutItem (``version``
unchanged since read), so status and history never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName
from chalicelib.domain.repair import RepairEvent, RepairOrder
from chalicelib.errors import Conflict


class ByStudent(GlobalSecondaryIndex["RepairOrderModel"]):
    class Meta:
        index_name = "by_student"
        projection = AllProjection()

    student = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class ByStatus(GlobalSecondaryIndex["RepairOrderModel"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class RepairOrderModel(Model):
    class Meta(TableMeta):
        table_name = TableName("repair_orders")

    order_id = UnicodeAttribute(hash_key=True)
    student = UnicodeAttribute()
    status = UnicodeAttribute()
    created_key = UnicodeAttribute()
    version = NumberAttribute()
    record = UnicodeAttribute()  # JSON of the rest of the order (form copy, assignment, history)

    by_student = ByStudent()
    by_status = ByStatus()


MODELS: tuple[type[Model], ...] = (RepairOrderModel,)


class RepairRepository:
    def get(self, order_id: str) -> RepairOrder | None:
        try:
            return _order(RepairOrderModel.get(order_id, consistent_read=True))
        except RepairOrderModel.DoesNotExist:
            return None

    def create(self, order: RepairOrder) -> bool:
        """Store a new order unless one exists for its application; returns whether it was created."""
        try:
            _model(order).save(condition=RepairOrderModel.order_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def save(self, order: RepairOrder, expected_version: int) -> None:
        """Write ``order`` if the stored version is still ``expected_version``.

        Raises:
            Conflict: someone else changed the order first.
        """
        try:
            _model(order).save(condition=RepairOrderModel.version == expected_version)
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict("The repair order was changed meanwhile; reload it and try again.") from None
            raise

    def of_student(self, student: str, status: str | None, limit: int,
                   after: str | None) -> tuple[list[RepairOrder], str | None]:
        """One page of a student's orders (only those in ``status`` if given), newest first."""
        condition = RepairOrderModel.created_key < after if after else None
        only = RepairOrderModel.status == status if status else None
        rows = list(RepairOrderModel.by_student.query(student, condition, only, scan_index_forward=False,
                                                      limit=limit + 1))
        return _page(rows, limit)

    def in_statuses(self, statuses: Iterable[str], limit: int,
                    after: str | None) -> tuple[list[RepairOrder], str | None]:
        """One page of the orders in any of ``statuses``, oldest first (partitions read and merged)."""
        rows: list[RepairOrderModel] = []
        for status in sorted(set(statuses)):
            condition = RepairOrderModel.created_key > after if after else None
            rows += RepairOrderModel.by_status.query(status, condition, limit=limit + 1)
        rows.sort(key=lambda row: row.created_key)
        return _page(rows, limit)


def _page(rows: list[RepairOrderModel], limit: int) -> tuple[list[RepairOrder], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    return [_order(row) for row in rows], (rows[-1].created_key if more and rows else None)


_KEYS = ("order_id", "student", "status", "version")


def _model(order: RepairOrder) -> RepairOrderModel:
    record = {k: v for k, v in asdict(order).items() if k not in _KEYS}
    return RepairOrderModel(order_id=order.order_id, student=order.student, status=order.status,
                            created_key=f"{order.created_at}#{order.order_id}", version=order.version,
                            record=json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _order(row: RepairOrderModel) -> RepairOrder:
    record: dict[str, Any] = json.loads(row.record)
    record["photos"] = tuple(record.get("photos") or ())
    record["history"] = tuple(RepairEvent(**event) for event in record.get("history") or ())
    return RepairOrder(order_id=row.order_id, student=row.student, status=row.status,  # type: ignore[arg-type]
                       version=int(row.version), **record)
