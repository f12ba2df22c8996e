"""Statistics of the service hall: aggregates only, never an individual's form."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

from chalicelib.domain.workflow import FINAL, Application


class Backlog(BaseModel):
    authority: str
    open: int
    oldest_waiting_since: str


class ServiceStatistics(BaseModel):
    service_id: str
    filed: int
    by_status: dict[str, int] = Field(default_factory=dict)
    median_handling_hours: float | None = Field(None, description="Filing to final decision (decided ones)")
    backlog: list[Backlog] = Field(default_factory=list, description="Pending, by the authority they wait for")


def service_statistics(service_id: str, applications: Iterable[Application]) -> ServiceStatistics:
    """Counts by status, the median handling time and the open backlog per approver."""
    by_status: Counter[str] = Counter()
    handling: list[float] = []
    waiting: dict[str, list[str]] = {}
    for app in applications:
        by_status[app.status] += 1
        if app.status in FINAL and app.status != "withdrawn" and app.decided_at:
            hours = (datetime.fromisoformat(app.decided_at) - datetime.fromisoformat(app.filed_at)).total_seconds()
            handling.append(hours / 3600)
        if app.status == "pending" and app.current_authority:
            waiting.setdefault(app.current_authority, []).append(app.history[-1].at)
    return ServiceStatistics(
        service_id=service_id, filed=sum(by_status.values()), by_status=dict(sorted(by_status.items())),
        median_handling_hours=round(statistics.median(handling), 2) if handling else None,
        backlog=sorted((Backlog(authority=authority, open=len(times), oldest_waiting_since=min(times)) for authority, times in waiting.items()),
                       key=lambda b: (-b.open, b.authority)),
    )
