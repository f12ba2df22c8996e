"""Flood: 5,000 notifications to a 16,022-person campus through the real consumer (moto + mocked
WeCom HTTP), with the clock moved minute by minute as deferred parts come due.

Slow (about 15 minutes on two cores, most of it moto): run with `make test-flood`; `make test`
leaves it out. FLOOD_NOTIFICATIONS=300 gives a quick run of the same checks.
"""

from __future__ import annotations

import json
import os
import math
import random
import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import responses
import time_machine

from chalicelib.api import notifications as area
from chalicelib.db.messaging import OutboxRepository
from chalicelib.domain.notifications import Notification, NotificationPart, notify
from infra.local.lambda_events import sqs_record

pytestmark = pytest.mark.flood

CAMPUS = [f"g{n:05d}" for n in range(16_022)]
NOTIFICATIONS = int(os.environ.get("FLOOD_NOTIFICATIONS", "5000"))
HOT = CAMPUS[:5]  # people who are on almost every message (approvers, counselors)
START = datetime(2026, 11, 30, 1, 0, 30, tzinfo=timezone.utc)


def notifications() -> list[Notification]:
    rng = random.Random(7)
    result = [Notification(key="mass:0", recipients=tuple(CAMPUS), title="健康填报", body="请完成今日填报", mass=True)]
    for n in range(1, NOTIFICATIONS):
        people = rng.sample(CAMPUS, rng.randint(1, 8)) + ([rng.choice(HOT)] if n % 25 == 0 else [])
        result.append(Notification(key=f"note:{n}", recipients=tuple(people), title="审批", body=f"申请 {n} 已更新"))
    return result


def test_a_flood_is_paced_per_member_and_fully_accounted_for(client, monkeypatch):
    clock = {"now": START}
    queue: list[tuple[datetime, NotificationPart]] = []
    sends: list[tuple[datetime, list[str], str]] = []

    def enqueue(parts, delay_seconds=0):  # the SQS queue, DelaySeconds included, simulated
        for message in parts:
            queue.append((clock["now"] + timedelta(seconds=delay_seconds), NotificationPart.model_validate(message)))

    monkeypatch.setattr(area, "publish", lambda spec, message, delay_seconds=0: enqueue([message], delay_seconds))

    def answer(request):
        payload = json.loads(request.body)
        sends.append((clock["now"], payload["touser"].split("|"), payload["textcard"]["description"]))
        return 200, {}, json.dumps({"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": str(len(sends))})

    notes = notifications()
    for note in notes:  # what an area does: notify() splits and enqueues (a mass send waits for :02)
        notify(note, enqueue, clock=lambda: clock["now"])

    with responses.RequestsMock(assert_all_requests_are_fired=False) as wecom, \
            time_machine.travel(START, tick=False) as traveller:
        wecom.add(responses.GET, re.compile(r".*/cgi-bin/gettoken.*"),
                  json={"errcode": 0, "errmsg": "ok", "access_token": "T", "expires_in": 7200})
        wecom.add_callback(responses.POST, re.compile(r".*/cgi-bin/message/send.*"), callback=answer)
        while queue:
            due = sorted((item for item in queue if item[0] <= clock["now"]), key=lambda item: item[0])
            if not due:
                clock["now"] = min(item[0] for item in queue)
                traveller.move_to(clock["now"])
                continue
            batch = due[:10]
            for item in batch:
                queue.remove(item)
            event = {"Records": [sqs_record(p.model_dump_json(), queue_arn="arn:aws:sqs:us-east-1:0:n",
                                            region="us-east-1") for _, p in batch]}
            assert client.lambda_.invoke("send_notifications", event).payload == {"batchItemFailures": []}

    # One call per part of at most 1000 (deferrals aside); the mass send kept off the :00 mark
    mass_calls = [s for s in sends if s[2] == "请完成今日填报"]
    assert len(mass_calls) == math.ceil(16_022 / 1000)
    assert min(moment for moment, _, _ in mass_calls) == START.replace(minute=2, second=0)
    assert max(len(users) for _, users, _ in sends) <= 1000
    # No member ever above 30 in any 60 seconds (WeCom's window slides)
    times: dict[str, list[datetime]] = {}
    for moment, users, _ in sends:
        for userid in users:
            times.setdefault(userid, []).append(moment)
    for moments in times.values():
        moments.sort()
        start = 0
        for end in range(len(moments)):
            while moments[end] - moments[start] >= timedelta(seconds=60):
                start += 1
            assert end - start + 1 <= 30
    # Every message accounted for: each recipient got it exactly once, and the outbox says so
    delivered = Counter(userid for _, users, _ in sends for userid in users)
    assert delivered == Counter(userid for note in notes for userid in note.recipients)
    outbox = OutboxRepository()
    for note in notes:
        rows = [outbox.get(f"{note.key}#p{i}") for i in range(math.ceil(len(note.recipients) / 1000))]
        assert {row.status for row in rows} == {"sent"}
        assert sum(len(row.sent_to) for row in rows) == len(note.recipients)
