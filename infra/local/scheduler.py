"""Fire the app's ``Rate`` and ``Cron`` schedules on the real clock, as EventBridge would.

Each job's next due time is computed from its expression (:mod:`infra.local.schedule`); the loop
sleeps on the stop event until the earliest one, re-reading the clock at least every second so a
moved clock (tests, a laptop waking up) is noticed. A job that is overdue fires once and is then
scheduled for its next time after now: EventBridge does not replay missed firings either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from chalice import Chalice
from chalice.app import ScheduledEventConfig
from chalice.local import LambdaContext

from infra.local.lambda_events import rule_arn, scheduled_event
from infra.local.log import log
from infra.local.schedule import Schedule, ScheduleError, parse_schedule

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ScheduledJob:
    name: str
    schedule: Schedule
    rule_arn: str
    next_due: datetime | None  # None: the expression can never fire again


def scheduled_sources(app: Chalice) -> list[ScheduledEventConfig]:
    """The app's scheduled jobs (Chalice ``@app.schedule``), in declaration order."""
    return [s for s in app.event_sources if isinstance(s, ScheduledEventConfig)]


def expression_of(source: ScheduledEventConfig) -> str:
    expression = source.schedule_expression
    return expression if isinstance(expression, str) else expression.to_string()


class Scheduler:
    """Fires scheduled jobs when due. ``tick`` is the whole logic; ``run`` only waits between ticks."""

    def __init__(
        self,
        app: Chalice,
        *,
        region: str,
        rule_prefix: str,
        stop: threading.Event,
        clock: Clock = utc_now,
        invoke: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self._app = app
        self._region = region
        self._stop = stop
        self._clock = clock
        self._invoke = invoke or self._invoke_handler
        started = clock()
        self.jobs: list[ScheduledJob] = []
        for source in scheduled_sources(app):
            try:
                schedule = parse_schedule(expression_of(source), anchor=started)
            except ScheduleError as exc:
                raise ScheduleError(f"job {source.name}: {exc}") from exc
            self.jobs.append(
                ScheduledJob(
                    name=source.name,
                    schedule=schedule,
                    rule_arn=rule_arn(f"{rule_prefix}-{source.name}", region),
                    next_due=_next(schedule, started),
                )
            )

    def tick(self, now: datetime | None = None) -> list[str]:
        """Fire every job due at ``now`` (default: the clock) and return their names."""
        now = now or self._clock()
        fired = []
        for job in self.jobs:
            if job.next_due is not None and job.next_due <= now:
                self._fire(job, job.next_due)
                job.next_due = _next(job.schedule, now)
                fired.append(job.name)
        return fired

    def seconds_until_next(self, now: datetime | None = None) -> float | None:
        due = [job.next_due for job in self.jobs if job.next_due is not None]
        if not due:
            return None
        now = now or self._clock()
        return max(0.0, min((moment - now).total_seconds() for moment in due))

    def run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            wait = self.seconds_until_next()
            # Wake at least every second: the wall clock may jump, and stop must be quick.
            self._stop.wait(1.0 if wait is None else min(max(wait, 0.05), 1.0))

    def _fire(self, job: ScheduledJob, due: datetime) -> None:
        event = scheduled_event(job.rule_arn, region=self._region, at=due)
        log(f"schedule: firing {job.name} ({job.schedule.expression}) due {due:%Y-%m-%d %H:%M} UTC")
        try:
            self._invoke(job.name, event)
        except Exception as exc:  # a failing job must not stop the other schedules
            log(f"schedule: {job.name} failed: {type(exc).__name__}: {exc}")

    def _invoke_handler(self, name: str, event: dict[str, Any]) -> Any:
        context = LambdaContext(name, memory_size=256, max_runtime_ms=900_000)
        return self._app.handler_map[name](event, context)


def _next(schedule: Schedule, moment: datetime) -> datetime | None:
    try:
        return schedule.next_after(moment)
    except ScheduleError:
        log(f"schedule: {schedule.expression} never fires again; the job is idle")
        return None
