"""A pytest plugin that runs the whole session on a clock moved FUTURE_DAYS days into the future.

Many tests travel to fixed dates (late 2026) and then check the result against the real clock, often
without meaning to: moto drops SQS messages older than the queue's retention period, and TTL filters,
token expiry and "not in the past" checks compare with "now" too. Such tests pass on the day they are
written and start failing weeks later. Loading this plugin (``pytest -p tests.support.future_clock``,
or ``make test-future``) starts ``time_machine.travel(now + FUTURE_DAYS days, tick=True)`` when pytest
configures itself and stops it when pytest ends, so the suite sees the date it will see in FUTURE_DAYS
days (default 400); a test's own ``time_machine.travel`` still works on top of it. A test that fails
only under this plugin depends on the real date and should read or compare inside a travel block.
FUTURE_HOURS (default 0) moves the clock further, to run the suite at another time of day (campus
nights, quiet hours, the day's boundary): ``make test-future FUTURE_DAYS=0 FUTURE_HOURS=9``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
import time_machine

_traveller: time_machine.travel | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _traveller
    days = int(os.environ.get("FUTURE_DAYS", "400"))
    hours = float(os.environ.get("FUTURE_HOURS", "0"))
    _traveller = time_machine.travel(datetime.now(timezone.utc) + timedelta(days=days, hours=hours), tick=True)
    _traveller.start()


def pytest_report_header(config: pytest.Config) -> str:
    return f"future_clock: the session's clock starts at {datetime.now(timezone.utc).isoformat(timespec='seconds')}"


def pytest_unconfigure(config: pytest.Config) -> None:
    global _traveller
    if _traveller is not None:
        _traveller.stop()
        _traveller = None
