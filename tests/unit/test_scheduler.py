"""The local scheduler fires the app's own schedules when EventBridge would."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import time_machine

from infra.local.scheduler import Scheduler
from tests.support.sample_project import app as sample

MONDAY_0859 = datetime(2026, 11, 30, 8, 59, 0, tzinfo=timezone.utc)


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_scheduler(clock: MovableClock) -> tuple[Scheduler, list[tuple[str, dict]]]:
    calls: list[tuple[str, dict]] = []
    scheduler = Scheduler(
        sample.app,
        region="us-east-1",
        rule_prefix="sample-local",
        stop=threading.Event(),
        clock=clock,
        invoke=lambda name, event: calls.append((name, event)),
    )
    return scheduler, calls


def test_every_schedule_of_the_app_is_known_with_its_expression():
    scheduler, _ = make_scheduler(MovableClock(MONDAY_0859))
    assert {(j.name, j.schedule.expression) for j in scheduler.jobs} == {
        ("enqueue_weekday_job", "cron(0 9 ? * MON-FRI *)"),
        ("tick_every_five_minutes", "rate(5 minutes)"),
    }


def test_given_a_cron_job_when_the_clock_reaches_its_minute_then_it_fires_once():
    # Given a stack started on Monday at 08:59
    clock = MovableClock(MONDAY_0859)
    scheduler, calls = make_scheduler(clock)
    # When the clock moves to one second before nine, nothing fires
    clock.now = MONDAY_0859 + timedelta(seconds=59)
    assert scheduler.tick() == []
    # Then at nine the weekday job fires, with EventBridge's payload
    clock.now = MONDAY_0859 + timedelta(minutes=1)
    assert scheduler.tick() == ["enqueue_weekday_job"]
    name, event = calls[0]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["time"] == "2026-11-30T09:00:00Z"
    assert event["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/sample-local-enqueue_weekday_job"]
    # And not again in the same minute; the next firing is Tuesday 09:00
    clock.now += timedelta(seconds=30)
    assert scheduler.tick() == []
    job = next(j for j in scheduler.jobs if j.name == "enqueue_weekday_job")
    assert job.next_due == datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def test_given_a_weekend_then_the_weekday_job_waits_for_monday():
    saturday = datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)
    scheduler, calls = make_scheduler(MovableClock(saturday))
    assert scheduler.tick(saturday + timedelta(days=1)) == ["tick_every_five_minutes"]
    job = next(j for j in scheduler.jobs if j.name == "enqueue_weekday_job")
    assert job.next_due == MONDAY_0859 + timedelta(minutes=1)


def test_given_a_rate_job_then_it_fires_every_interval_from_start():
    clock = MovableClock(MONDAY_0859 + timedelta(seconds=20))
    scheduler, _ = make_scheduler(clock)
    fired = []
    for seconds in range(0, 16 * 60, 10):
        clock.now = MONDAY_0859 + timedelta(seconds=20 + seconds)
        fired += [(clock.now, name) for name in scheduler.tick() if name == "tick_every_five_minutes"]
    assert [moment - MONDAY_0859 for moment, _ in fired] == [
        timedelta(minutes=5, seconds=20),
        timedelta(minutes=10, seconds=20),
        timedelta(minutes=15, seconds=20),
    ]


def test_given_the_clock_jumps_hours_ahead_then_missed_firings_are_not_replayed():
    # Given a stack started at 08:59 whose clock then jumps to 11:59:30
    clock = MovableClock(MONDAY_0859)
    scheduler, calls = make_scheduler(clock)
    later = MONDAY_0859 + timedelta(hours=3, seconds=30)
    # When it ticks, each overdue job fires once, for the firing that was due first
    assert scheduler.tick(later) == ["enqueue_weekday_job", "tick_every_five_minutes"]
    assert [event["time"] for _, event in calls] == ["2026-11-30T09:00:00Z", "2026-11-30T09:04:00Z"]
    # Then the next firings lie after the jump, so a second tick at that moment fires nothing
    assert scheduler.tick(later) == []
    rate_job = next(j for j in scheduler.jobs if j.name == "tick_every_five_minutes")
    assert rate_job.next_due == MONDAY_0859 + timedelta(hours=3, minutes=5)


def test_given_a_failing_job_then_the_scheduler_goes_on():
    def explode(name, event):
        raise RuntimeError("job failed")

    scheduler = Scheduler(sample.app, region="us-east-1", rule_prefix="p", stop=threading.Event(),
                          clock=MovableClock(MONDAY_0859), invoke=explode)
    assert scheduler.tick(MONDAY_0859 + timedelta(minutes=6)) == ["enqueue_weekday_job", "tick_every_five_minutes"]
    assert all(job.next_due > MONDAY_0859 + timedelta(minutes=6) for job in scheduler.jobs)


def test_the_running_loop_fires_at_the_due_minute_of_the_real_clock():
    # Given the wall clock moved to half a second before Monday 09:00 (and ticking)
    fired = threading.Event()
    calls = []
    stop = threading.Event()
    with time_machine.travel(datetime(2026, 11, 30, 8, 59, 59, 500000, tzinfo=timezone.utc), tick=True):
        scheduler = Scheduler(sample.app, region="us-east-1", rule_prefix="p", stop=stop,
                              invoke=lambda name, event: (calls.append((name, event["time"])), fired.set()))
        thread = threading.Thread(target=scheduler.run, daemon=True)
        thread.start()
        # When the loop runs, then the cron job fires for 09:00
        try:
            assert fired.wait(timeout=10)
        finally:
            stop.set()
            thread.join(timeout=5)
    assert calls == [("enqueue_weekday_job", "2026-11-30T09:00:00Z")]
    assert not thread.is_alive()
