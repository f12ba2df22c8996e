"""Statistics of the service hall: aggregates only, never an individual's form."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class Figures:
    """What statistics need of one application (no form data)."""

    status: str
    filed_at: str
    decided_at: str | None  # an approver's final approve or reject
    authority: str | None  # while pending: whom it waits for
    waiting_since: str | None


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


def service_statistics(service_id: str, applications: Iterable[Figures]) -> ServiceStatistics:
    """Counts by status, the median time from filing to an approver's final decision, and the
    open backlog per approver authority."""
    by_status: Counter[str] = Counter()
    handling: list[float] = []
    waiting: dict[str, list[str]] = {}
    for app in applications:
        by_status[app.status] += 1
        if app.decided_at:
            seconds = (datetime.fromisoformat(app.decided_at) - datetime.fromisoformat(app.filed_at)).total_seconds()
            handling.append(seconds / 3600)
        if app.status == "pending" and app.authority and app.waiting_since:
            waiting.setdefault(app.authority, []).append(app.waiting_since)
    return ServiceStatistics(
        service_id=service_id, filed=sum(by_status.values()), by_status=dict(sorted(by_status.items())),
        median_handling_hours=round(statistics.median(handling), 2) if handling else None,
        backlog=sorted((Backlog(authority=authority, open=len(times), oldest_waiting_since=min(times)) for authority, times in waiting.items()),
                       key=lambda b: (-b.open, b.authority)),
    )
