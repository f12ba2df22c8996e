"""WeCom app messages: what a notification is, how it is split, shaped and paced.

Domain code never calls WeCom: it hands a :class:`Notification` to :func:`notify`, which splits
it into parts of at most 1000 recipients (WeCom's ``touser`` limit) and enqueues them. The
notifications consumer sends each part, within WeCom's per-member limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOUSER = 1000
KEY_PATTERN = r"^[A-Za-z0-9:_#.@-]{1,160}$"
Kind = Literal["text", "textcard", "markdown"]


class Notification(BaseModel):
    """One message to some people. ``key`` makes it idempotent: the same key is sent once.

    The key is logged and stored in the outbox: build it from record ids (``leave:<application
    id>:approved``), never from names, userids or other personal data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=KEY_PATTERN)
    recipients: tuple[str, ...] = Field(min_length=1)
    kind: Kind = "textcard"
    title: str = Field("", max_length=128)
    body: str = Field(min_length=1, max_length=2000)
    url: str | None = Field(None, max_length=2048)
    mass: bool = False  # a scheduled send to many: kept away from the :00 and :30 marks

    @field_validator("recipients")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.strip().lower() for v in value if v.strip()))


class NotificationPart(BaseModel):
    """What travels on the queue: one part of a notification, at most 1000 recipients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    part: int
    recipients: tuple[str, ...] = Field(min_length=1, max_length=MAX_TOUSER)
    kind: Kind
    title: str = ""
    body: str
    url: str | None = None
    attempt: int = 0  # deferrals so far (rate limits), for the outbox

    @property
    def part_key(self) -> str:
        return f"{self.key}#p{self.part}"


class Publisher(Protocol):
    def __call__(self, parts: Sequence[dict[str, Any]], delay_seconds: int) -> None: ...


def split(notification: Notification) -> list[NotificationPart]:
    recipients = notification.recipients
    return [
        NotificationPart(key=notification.key, part=index, recipients=recipients[start : start + MAX_TOUSER],
                         kind=notification.kind, title=notification.title, body=notification.body,
                         url=notification.url)
        for index, start in enumerate(range(0, len(recipients), MAX_TOUSER))
    ]


def mass_send_delay(now: datetime) -> int:
    """Seconds to wait so a mass send does not start within two minutes of :00 or :30.

    WeCom asks apps to avoid the whole and half hour, when every app's scheduled sends collide
    and messages are delayed or throttled.
    """
    minute = now.minute % 30
    if minute >= 28:
        target = now.replace(second=0, microsecond=0) + timedelta(minutes=30 - minute + 2)
    elif minute < 2:
        target = now.replace(second=0, microsecond=0) + timedelta(minutes=2 - minute)
    else:
        return 0
    return max(0, int((target - now).total_seconds()))


def notify(notification: Notification, publish: Publisher, clock: Callable[[], datetime] | None = None) -> int:
    """Enqueue a notification; returns the number of parts. Safe to repeat (see ``key``)."""
    return notify_all([notification], publish, clock)


def notify_all(notifications: Sequence[Notification], publish: Publisher,
               clock: Callable[[], datetime] | None = None) -> int:
    """Enqueue several notifications with as few publish calls as their delays allow (a job's
    hundreds of per-class messages go out in batches); returns the number of parts."""
    now = (clock or (lambda: datetime.now(timezone.utc)))()
    by_delay: dict[int, list[dict[str, Any]]] = {}
    for notification in notifications:
        delay = mass_send_delay(now) if notification.mass else 0
        by_delay.setdefault(delay, []).extend(p.model_dump(mode="json") for p in split(notification))
    for delay, parts in by_delay.items():
        publish(parts, delay)
    return sum(len(parts) for parts in by_delay.values())


def wecom_payload(part: NotificationPart, recipients: Sequence[str], agent_id: int) -> dict[str, Any]:
    """The ``message/send`` body for ``recipients`` (a subset of the part, after rate limits)."""
    payload: dict[str, Any] = {
        "touser": "|".join(recipients),
        "msgtype": part.kind,
        "agentid": agent_id,
        "safe": 0,
        "enable_duplicate_check": 1,  # WeCom's own guard against our retries, for 30 minutes
        "duplicate_check_interval": 1800,
    }
    if part.kind == "text":
        text = f"{part.title}\n{part.body}" if part.title else part.body
        payload["text"] = {"content": text + (f"\n{part.url}" if part.url else "")}
    elif part.kind == "markdown":
        payload["markdown"] = {"content": (f"**{part.title}**\n" if part.title else "") + part.body}
    else:
        payload["textcard"] = {
            "title": part.title or part.body[:20],
            "description": part.body,
            "url": part.url or "https://work.weixin.qq.com",
            "btntxt": "详情",
        }
    return payload


def minute_bucket(now: datetime) -> tuple[str, str]:
    """(hour key, minute field) of the per-member counters: ``2026112909``, ``m17`` (UTC)."""
    now = now.astimezone(timezone.utc)
    return now.strftime("%Y%m%d%H"), f"m{now.minute:02d}"


_USERID = re.compile(r"^[a-z0-9_.@-]{1,64}$")


def well_formed(userids: Sequence[str]) -> tuple[list[str], list[str]]:
    """(valid, malformed) userids: malformed ones can never be delivered."""
    good = [u for u in userids if _USERID.match(u)]
    return good, [u for u in userids if not _USERID.match(u)]


# -- delivering a part (the consumer's rules) --------------------------------------------------

DEFER_SECONDS = 61  # past the current minute's budget


class OutboxRow(Protocol):
    status: str
    sent_to: set[str]
    invalid_users: set[str]


class Outbox(Protocol):
    def open_part(self, part_key: str, *, key: str, kind: str, title: str, recipients: int) -> Any: ...
    def record_attempt(self, row: Any, *, status: str, sent: Sequence[str] = (), invalid: Sequence[str] = (),
                       msgid: str | None = None) -> None: ...
    def record_deliveries(self, part_key: str, title: str, statuses: dict[str, str], msgid: str | None,
                          campus_date: str) -> None: ...


class Rates(Protocol):
    def reserve(self, userids: Sequence[str], hour: str, minute: str) -> tuple[list[str], list[str]]: ...


class SendOutcome(Protocol):
    msgid: str | None
    invalid_users: frozenset[str]


class Sender(Protocol):
    def send_message(self, payload: dict[str, Any]) -> SendOutcome: ...


DONE = ("sent", "invalid_user")


def deliver(
    part: NotificationPart,
    *,
    outbox: Outbox,
    rates: Rates,
    sender: Sender,
    defer: Callable[[NotificationPart, int], None],
    agent_id: int,
    now: datetime,
    campus_date: str,
) -> str:
    """Send one part to whoever of its recipients has not had it yet; return the outbox status.

    * Recipients already sent (a redelivered message) are skipped: the outbox row remembers them.
    * Members at WeCom's per-member limit are not sent to (WeCom would drop the message silently):
      they go back on the queue as a smaller part, ``DEFER_SECONDS`` later.
    * ``invaliduser`` answers and malformed userids are recorded as ``invalid_user``, not retried.
    * A WeCom failure raises (the queue retries the record, then its DLQ); nothing is marked sent.
    """
    row = outbox.open_part(part.part_key, key=part.key, kind=part.kind, title=part.title,
                           recipients=len(part.recipients))
    if row.status == "queued" and not row.attempts:
        # Visible per person from the start, so a message stuck in the queue can be found.
        outbox.record_deliveries(part.part_key, part.title, dict.fromkeys(part.recipients, "queued"), None,
                                 campus_date)
    already = set(row.sent_to or ()) | set(row.invalid_users or ())
    pending = [u for u in part.recipients if u not in already]
    if not pending:
        return row.status
    valid, malformed = well_formed(pending)
    hour, minute = minute_bucket(now)
    allowed, deferred = rates.reserve(valid, hour, minute)
    msgid, invalid = None, set(malformed)
    if allowed:
        result = sender.send_message(wecom_payload(part, allowed, agent_id))
        msgid, invalid = result.msgid, invalid | set(result.invalid_users)
    sent = [u for u in allowed if u not in invalid]
    if deferred:
        status = "deferred"
    elif sent or set(row.sent_to or ()):
        status = "sent"
    else:
        status = "invalid_user"
    # Recorded before anything else can fail, so a redelivery never sends these again.
    outbox.record_attempt(row, status=status, sent=sent, invalid=sorted(invalid), msgid=msgid)
    statuses = {u: "sent" for u in sent} | {u: "invalid_user" for u in invalid} | {u: "deferred" for u in deferred}
    outbox.record_deliveries(part.part_key, part.title, statuses, msgid, campus_date)
    if deferred:
        defer(part.model_copy(update={"recipients": tuple(deferred), "attempt": part.attempt + 1}), DEFER_SECONDS)
    return status
