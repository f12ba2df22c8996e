"""WeCom app messages: the notifications consumer and the outbox listing."""

from __future__ import annotations

from datetime import date as Date
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice.app import SQSEvent
from pydantic import BaseModel, Field, ValidationError

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Role
from chalicelib.domain.directory import UserId
from chalicelib.domain.notifications import NotificationPart, deliver
from chalicelib.integrations.queues import publish
from chalicelib.integrations.wecom import wecom_client
from chalicelib.observability import logger
from chalicelib.resources import NOTIFICATIONS, NOTIFICATIONS_CONCURRENCY
from chalicelib.settings import get_settings

area = Area("notifications")


@area.blueprint.on_sqs_message(queue=NOTIFICATIONS.name, batch_size=NOTIFICATIONS.batch_size,
                               maximum_concurrency=NOTIFICATIONS_CONCURRENCY)
def send_notifications(event: SQSEvent) -> dict[str, Any]:
    """Send each queued part through WeCom; failed records are reported one by one."""
    return process_partial_response(event=event.to_dict(), record_handler=_send_part,
                                    processor=BatchProcessor(EventType.SQS), context=event.context)


def _send_part(record: SQSRecord) -> None:
    try:
        part = NotificationPart.model_validate_json(record.body)
    except ValidationError as exc:  # poison message: to the DLQ, described without its content
        raise ValueError(f"not a notification part: {exc.errors(include_input=False, include_url=False)}") from None
    lock = f"notify#{part.part_key}"
    if not deps.kv().claim(lock, NOTIFICATIONS.visibility_timeout):
        raise RuntimeError("this part is being sent by another consumer; retry later")
    try:
        status = _deliver(part)
    except Exception as exc:
        receipts = int(record.attributes.approximate_receive_count)
        last = receipts >= NOTIFICATIONS.max_receive_count
        logger.warning("notification send failed", extra={"part": part.part_key, "error": type(exc).__name__,
                                                          "errcode": getattr(exc, "errcode", None),
                                                          "receipt": receipts, "to_dlq": last})
        if last:  # SQS moves it to the DLQ next: the outbox must say so, not "queued" for ever
            row = deps.outbox().get(part.part_key)
            if row is not None:
                deps.outbox().record_attempt(row, status="failed")
        raise
    finally:
        deps.kv().release(lock)
    logger.info("notification part handled", extra={"part": part.part_key, "status": status,
                                                    "recipients": len(part.recipients)})


def _deliver(part: NotificationPart) -> str:
    settings = get_settings()
    now = datetime.now(timezone.utc)
    return deliver(
        part, outbox=deps.outbox(), rates=deps.member_rates(), sender=wecom_client(),
        defer=lambda smaller, delay: publish(NOTIFICATIONS, smaller.model_dump(mode="json"), delay_seconds=delay),
        agent_id=int(settings.secret("wecom_agent_id")), now=now,
        campus_date=now.astimezone(settings.tz).date().isoformat(),
    )


class MessagesQuery(RequestModel):
    userid: UserId
    date: Date | None = Field(None, description="Campus date (default today)")


class Delivery(BaseModel):
    message: str
    title: str
    status: str
    msgid: str | None


class Deliveries(BaseModel):
    userid: str
    date: Date
    items: list[Delivery]


@area.route("/admin/messages", "GET", summary="WeCom messages to a person on a day, with their status",
            policy=authenticated(Role.IT_ADMIN), query=MessagesQuery, response=Deliveries)
def list_messages(query: MessagesQuery) -> Deliveries:
    settings = get_settings()
    day = query.date or datetime.now(settings.tz).date()
    rows = deps.outbox().deliveries(query.userid, day.isoformat())
    return Deliveries(userid=query.userid, date=day, items=[
        Delivery(message=r.message, title=r.title, status=r.status, msgid=r.msgid) for r in rows])
