"""EventBridge schedule expressions evaluated on the local clock.

The local stack fires the Chalice app's scheduled jobs itself, so it needs to
know when EventBridge *would* fire them. This module turns the expression
string Chalice stores (``Cron(...).to_string()``, ``Rate(...).to_string()`` or
a raw string) into a :class:`Schedule` that answers "when is the next firing
strictly after this instant?".

Reference: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cron-expressions.html

Semantics implemented (all in UTC, like EventBridge):

* ``rate(N unit)`` -- unit ``minute(s)``, ``hour(s)`` or ``day(s)``, N >= 1.
  Fires at ``anchor + k * interval`` for k >= 1; ``anchor`` is when the rule
  was created (EventBridge counts rate rules from creation too).
* ``cron(min hour day-of-month month day-of-week year)`` -- minute resolution.
  Day-of-week is 1-7 = SUN-SAT (Unix cron uses 0-6). Exactly one of
  day-of-month / day-of-week must be ``?``; only the other one constrains the
  day (Unix cron's "either field matches" union never applies). Wildcards:
  ``* , - /`` in every field, plus ``L``/``nW``/``LW`` in day-of-month and
  ``L`` (= SAT), ``nL`` (``6L`` = last Friday of the month) and ``n#k``
  (``6#3`` = third Friday; k = 1-5) in day-of-week, the last two alone in
  their field. Names (JAN-DEC, SUN-SAT) are
  case insensitive. Ranges whose end is below their start wrap around
  (``FRI-MON``, ``22-2``) except in the year field.

Division of labour: this module parses and validates every field itself
(so errors are clear :class:`ScheduleError` messages and EventBridge's
numbering is applied exactly), then hands croniter a plain 5-field Unix
expression made of explicit value lists, which croniter iterates with
``day_or=False``. croniter does the calendar walk, ``L``, ``nW``, ``n#k`` and
``nL``; the year field is filtered here because croniter's year field only
reaches 2099 (EventBridge allows 2199) and needs an extra seconds field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Mapping, Protocol

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = ["Schedule", "ScheduleError", "parse_schedule", "CronSchedule", "RateSchedule"]


class ScheduleError(ValueError):
    """The expression is malformed, unsupported, or can never fire again."""


class Schedule(Protocol):
    """A parsed schedule expression."""

    expression: str

    def next_after(self, moment: datetime) -> datetime:
        """Return the first firing time strictly after ``moment``.

        ``moment`` must be timezone-aware (any zone; naive raises ValueError).
        The result is timezone-aware UTC. Raises ScheduleError when the
        schedule never fires after ``moment``.
        """
        ...


def parse_schedule(expression: str, *, anchor: datetime) -> Schedule:
    """Parse an EventBridge ``cron(...)`` or ``rate(...)`` expression.

    ``anchor`` (timezone-aware) is when the rule was created; rate schedules
    count from it, cron schedules ignore it. Raises ScheduleError for a bad or
    unsupported expression and ValueError for a naive ``anchor``.
    """
    anchor = _as_utc(anchor, "anchor")
    if not isinstance(expression, str):
        raise ScheduleError(f"schedule expression must be a string, got {expression!r}")
    match = re.fullmatch(r"\s*(rate|cron)\((.*)\)\s*", expression, re.IGNORECASE | re.DOTALL)
    if not match:
        raise ScheduleError(f"{expression!r}: expected 'cron(...)' or 'rate(...)'")
    kind, body = match.group(1).lower(), match.group(2)
    if kind == "rate":
        return RateSchedule(expression, anchor, _parse_rate(expression, body))
    return _parse_cron(expression, body)


# --------------------------------------------------------------------- rate

_RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass
class RateSchedule:
    """``rate(...)``: fires every ``interval`` counted from ``anchor``."""

    expression: str
    anchor: datetime
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        moment = _as_utc(moment, "moment")
        # k >= 1: the rule does not fire at the instant it is created.
        k = max(1, (moment - self.anchor) // self.interval + 1)
        try:
            return self.anchor + k * self.interval
        except OverflowError:  # past datetime.max (year 9999)
            message = f"{self.expression!r} never fires after {moment.isoformat()}"
            raise ScheduleError(message) from None


def _parse_rate(expression: str, body: str) -> timedelta:
    match = re.fullmatch(r"\s*(\S+)\s+(\S+)\s*", body)
    if not match:
        raise ScheduleError(f"{expression!r}: expected 'rate(<value> <unit>)'")
    value_text, unit_text = match.groups()
    if not _is_digits(value_text) or int(value_text) < 1:
        raise ScheduleError(f"{expression!r}: rate value must be a whole number >= 1")
    # EventBridge wants "1 minute" but "5 minutes"; either spelling is
    # accepted here because the number, not the spelling, sets the interval.
    unit = _RATE_UNITS.get(unit_text.lower().removesuffix("s"))
    if unit is None:
        raise ScheduleError(
            f"{expression!r}: unknown rate unit {unit_text!r} (use minute(s), hour(s) or day(s))"
        )
    try:
        return int(value_text) * unit
    except OverflowError:
        raise ScheduleError(f"{expression!r}: rate value is too large") from None


# --------------------------------------------------------------------- cron


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)
    cyclic: bool = True  # may a range wrap around (FRI-MON)?


_MONTH_NAMES = {
    name: number
    for number, name in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)
}
_DAY_NAMES = {name: number for number, name in enumerate("SUN MON TUE WED THU FRI SAT".split(), 1)}

_MINUTES = _Field("minutes", 0, 59)
_HOURS = _Field("hours", 0, 23)
_DAY_OF_MONTH = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTH_NAMES)
_DAY_OF_WEEK = _Field("day-of-week", 1, 7, _DAY_NAMES)
_YEAR = _Field("year", 1970, 2199, cyclic=False)


@dataclass
class CronSchedule:
    """``cron(...)``: EventBridge cron evaluated in UTC at minute resolution.

    ``unix_expression`` is the equivalent 5-field croniter expression (Unix
    day-of-week numbering); ``years`` is the set of allowed years.
    """

    expression: str
    unix_expression: str
    years: frozenset[int]

    def next_after(self, moment: datetime) -> datetime:
        moment = _as_utc(moment, "moment")
        never = ScheduleError(f"{self.expression!r} never fires after {moment.isoformat()}")
        if moment.year > max(self.years):
            raise never
        # Firings fall on whole minutes, so "after moment" equals "after the
        # start of moment's minute"; croniter then never sees sub-minute parts.
        start = moment.replace(second=0, microsecond=0, tzinfo=None)
        while True:
            try:
                # Naive UTC in and out keeps croniter's DST handling out of play.
                # day_or=False: AND the day fields; the '?' side is '*' anyway.
                found = croniter(self.unix_expression, start, day_or=False).get_next(datetime)
            except CroniterBadDateError:  # nothing in croniter's 50-year horizon
                raise never from None
            # Year filtering is ours (see module docstring): on a disallowed
            # year, search again from just before the next allowed one.
            if found.year in self.years:
                return found.replace(tzinfo=timezone.utc)
            later = [year for year in self.years if year > found.year]
            if not later:
                raise never
            start = datetime(min(later), 1, 1) - timedelta(minutes=1)


def _parse_cron(expression: str, body: str) -> CronSchedule:
    fields = body.upper().split()
    if len(fields) != 6:
        raise ScheduleError(
            f"{expression!r}: cron needs 6 fields (minutes hours day-of-month month "
            f"day-of-week year), got {len(fields)}"
        )
    minutes, hours, day_of_month, month, day_of_week, year = fields
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleError(
            f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'"
        )
    try:
        unix_fields = [
            _values(_MINUTES, minutes),
            _values(_HOURS, hours),
            _day_of_month(day_of_month),
            _values(_MONTH, month),
            _day_of_week(day_of_week),
        ]
        years = frozenset(_expand(_YEAR, year))
    except ScheduleError as error:
        raise ScheduleError(f"{expression!r}: {error}") from None
    unix_expression = " ".join(unix_fields)
    try:
        croniter(unix_expression, datetime(2000, 1, 1), day_or=False)  # validate only
    except CroniterError as error:  # should not happen after our own checks
        raise ScheduleError(f"{expression!r}: unsupported cron expression ({error})") from None
    return CronSchedule(expression, unix_expression, years)


def _day_of_month(text: str) -> str:
    if text == "?":
        return "*"
    if text == "L":
        return "L"
    if text == "LW":
        # croniter caps nW at the month's last day and, when that is a
        # weekend, steps back to Friday within the month: 31W is exactly LW.
        return "31W"
    if text.endswith("W"):
        return f"{_value(_DAY_OF_MONTH, text[:-1])}W"
    return _values(_DAY_OF_MONTH, text)


def _day_of_week(text: str) -> str:
    """Translate EventBridge day-of-week (1-7 = SUN-SAT) to Unix (0-6)."""
    if text == "?":
        return "*"
    if text == "L":  # "last day of the week" = Saturday
        return "6"
    if "#" in text or text.endswith("L"):
        # EventBridge allows only a single expression with '#' (and 'L').
        if "," in text:
            raise ScheduleError(f"day-of-week {text!r}: '#' and 'L' cannot be used in a list")
        if text.endswith("L"):
            return f"L{_value(_DAY_OF_WEEK, text[:-1]) - 1}"  # croniter spells "last" Ln
        day, _, nth = text.partition("#")
        if not _is_digits(nth) or not 1 <= int(nth) <= 5:
            raise ScheduleError(f"day-of-week {text!r}: the n in 'day#n' must be 1-5")
        return f"{_value(_DAY_OF_WEEK, day) - 1}#{int(nth)}"
    if text == "*":
        return "*"
    return ",".join(str(day - 1) for day in _expand(_DAY_OF_WEEK, text))


def _values(spec: _Field, text: str) -> str:
    """A plain field as croniter text: '*' or an explicit comma list."""
    return "*" if text == "*" else ",".join(map(str, _expand(spec, text)))


def _expand(spec: _Field, text: str) -> list[int]:
    """Expand ``*``, ``,``, ``-``, ``/`` and names into sorted field values.

    Expanded here rather than by croniter so EventBridge's numbering and
    ranges are applied exactly (croniter reads e.g. ``5-5`` as "every").
    """
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        if slash and (not _is_digits(step_text) or int(step_text) < 1):
            raise ScheduleError(f"{spec.name} {text!r}: step must be a whole number >= 1")
        step = int(step_text) if slash else 1
        if base == "*":
            start, stop = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, stop = _value(spec, first), _value(spec, last)
        else:
            start = _value(spec, base)
            stop = spec.high if slash else start  # "a/n" = from a to the end, every n
        if start <= stop:
            span = list(range(start, stop + 1))
        elif spec.cyclic:  # wrap around, e.g. FRI-MON or 22-2
            span = list(range(start, spec.high + 1)) + list(range(spec.low, stop + 1))
        else:
            raise ScheduleError(f"{spec.name} {text!r}: range end is before its start")
        values.update(span[::step])
    return sorted(values)


def _value(spec: _Field, text: str) -> int:
    if _is_digits(text):
        number = int(text)
    elif text in spec.names:
        number = spec.names[text]
    else:
        raise ScheduleError(f"{spec.name}: {text!r} is not a valid value")
    if not spec.low <= number <= spec.high:
        raise ScheduleError(f"{spec.name}: {number} is outside {spec.low}-{spec.high}")
    return number


# ------------------------------------------------------------------ helpers


def _is_digits(text: str) -> bool:
    # str.isdigit alone accepts non-ASCII digits such as '²'.
    return text.isascii() and text.isdigit()


def _as_utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(timezone.utc)
