"""Optimistic locking under real concurrency: 20 approvers deciding one application at once."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import boto3

from chalicelib.api import deps
from chalicelib.domain.access import Actor
from chalicelib.domain.forms import ServiceDefinition
from chalicelib.domain.workflow import Application
from chalicelib.errors import Conflict
from chalicelib.resources import QUEUES
from infra.local.aws import create_queues
from tests.support.identity import load_cast

REPAIR = ServiceDefinition.model_validate({
    "id": "test-repair", "name": "测试报修", "category": "life", "applicants": {"types": ["student"]},
    "fields": [{"name": "room", "label": "房间", "type": "text", "required": True}],
    "steps": [{"name": "后勤受理", "approver": "role:logistics"}],
})


@dataclass
class LockstepStore:
    """The real application store, except that every writer waits until all have read."""

    inner: Any
    barrier: threading.Barrier

    def get(self, app_id: str) -> Application | None:
        return self.inner.get(app_id)

    def save(self, app: Application, expected_version: int | None) -> None:
        self.barrier.wait(timeout=30)
        self.inner.save(app, expected_version)


def test_twenty_simultaneous_approvals_give_one_success_and_nineteen_conflicts() -> None:
    # Given a pending application waiting for logistics, and 20 logistics staff
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    admin = Actor(userid="admin", person_type="staff", department="nic", roles=frozenset({"it_admin"}))
    deps.catalogue().put(REPAIR, admin, datetime.now(timezone.utc))
    student = Actor(userid="s001", person_type="student", department="cs", class_id="cs2001")
    hall = deps.hall()
    app, _ = hall.file(student, "test-repair", {"room": "3-201"})
    approvers = [Actor(userid=f"hq{n:02d}", person_type="staff", department="hq", roles=frozenset({"logistics"}))
                 for n in range(20)]

    # When all 20 read version 1 and then decide at the same moment
    store = LockstepStore(hall.applications, threading.Barrier(20))
    racing = deps.hall()
    racing.applications = store
    outcomes: Counter[str] = Counter()
    winners: list[str] = []

    def approve(actor: Actor) -> None:
        try:
            racing.decide(actor, app.app_id, "approve", "")
            outcomes["ok"] += 1
            winners.append(actor.userid)
        except Conflict:
            outcomes["conflict"] += 1

    threads = [threading.Thread(target=approve, args=(a,)) for a in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then exactly one decision is stored, by the one who succeeded, and the others were told 409
    assert outcomes == Counter({"ok": 1, "conflict": 19})
    stored = hall.applications.get(app.app_id)
    assert stored is not None and stored.status == "approved" and stored.version == 2
    assert [t.actor for t in stored.history] == ["s001", winners[0]]
