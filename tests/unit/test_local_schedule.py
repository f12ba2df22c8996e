"""Unit tests for infra.local.schedule (EventBridge cron/rate on the local clock).

Every expected datetime was checked by hand against the calendar. Handy facts:
2026-11-27 is a Friday; 2026-08-01, 2026-08-15 and 2026-01-31 are Saturdays;
2026-02-15, 2026-03-15, 2026-11-15 and 2026-05-31 are Sundays; 2028 is a leap
year; 2027-12-31 is a Friday; 2100-01-01 is a Friday.
"""

from datetime import datetime, timedelta, timezone

import pytest
from chalice.app import Cron, Rate

from infra.local.schedule import ScheduleError, parse_schedule

UTC = timezone.utc
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def at(year, month, day, hour=0, minute=0, second=0, microsecond=0):
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def firings(expression, after, count, anchor=ANCHOR):
    """The next `count` firings strictly after `after`."""
    schedule = parse_schedule(expression, anchor=anchor)
    result = []
    for _ in range(count):
        after = schedule.next_after(after)
        result.append(after)
    return result


# ------------------------------------------------------------------ cron basics


def test_given_weekday_cron_when_after_friday_morning_then_next_is_monday():
    assert firings("cron(0 8 ? * MON-FRI *)", at(2026, 11, 27, 9), 2) == [
        at(2026, 11, 30, 8),
        at(2026, 12, 1, 8),
    ]


def test_given_day_of_week_1_when_evaluated_then_it_means_sunday():
    # Unix cron would read 1 as Monday (2026-11-30).
    assert firings("cron(0 6 ? * 1 *)", at(2026, 11, 27), 1) == [at(2026, 11, 29, 6)]
    assert firings("cron(0 6 ? * 7 *)", at(2026, 11, 27), 1) == [at(2026, 11, 28, 6)]


def test_given_lowercase_names_when_parsed_then_they_match_uppercase():
    assert firings("cron(0 6 ? dec sun *)", at(2026, 11, 27), 1) == [at(2026, 12, 6, 6)]


def test_given_lists_and_steps_when_evaluated_then_each_value_fires():
    assert firings("cron(0/20 9,17 * * ? *)", at(2026, 3, 2, 9, 30), 4) == [
        at(2026, 3, 2, 9, 40),
        at(2026, 3, 2, 17, 0),
        at(2026, 3, 2, 17, 20),
        at(2026, 3, 2, 17, 40),
    ]


def test_given_start_and_step_from_aws_docs_when_evaluated_then_every_tenth_minute_from_1():
    assert firings("cron(1/10 * * * ? *)", at(2026, 3, 2, 9, 0), 3) == [
        at(2026, 3, 2, 9, 1),
        at(2026, 3, 2, 9, 11),
        at(2026, 3, 2, 9, 21),
    ]


def test_given_step_in_day_of_week_when_evaluated_then_eventbridge_numbering_is_used():
    # 2/2 = 2,4,6 = MON,WED,FRI (in Unix numbering it would be TUE,THU,SAT).
    assert firings("cron(0 0 ? * 2/2 *)", at(2026, 11, 29), 3) == [
        at(2026, 11, 30),
        at(2026, 12, 2),
        at(2026, 12, 4),
    ]


def test_given_month_names_range_when_evaluated_then_only_those_months_fire():
    assert firings("cron(0 0 1 JAN-MAR ? *)", at(2026, 2, 15), 3) == [
        at(2026, 3, 1),
        at(2027, 1, 1),
        at(2027, 2, 1),
    ]


def test_given_single_value_range_when_evaluated_then_only_that_value_fires():
    # croniter alone would read "5-5" as "every day".
    assert firings("cron(0 0 5-5 * ? *)", at(2026, 1, 1), 2) == [at(2026, 1, 5), at(2026, 2, 5)]


def test_given_wrapping_ranges_when_evaluated_then_they_wrap_around():
    assert firings("cron(0 22-1 * * ? *)", at(2026, 7, 15, 12), 4) == [
        at(2026, 7, 15, 22),
        at(2026, 7, 15, 23),
        at(2026, 7, 16, 0),
        at(2026, 7, 16, 1),
    ]
    # FRI-MON: Wednesday 2026-11-25 -> Fri 27, Sat 28, Sun 29, Mon 30, Fri 12-04.
    assert firings("cron(0 0 ? * FRI-MON *)", at(2026, 11, 25), 5) == [
        at(2026, 11, 27),
        at(2026, 11, 28),
        at(2026, 11, 29),
        at(2026, 11, 30),
        at(2026, 12, 4),
    ]


# --------------------------------------------------- day-of-month vs day-of-week


def test_given_day_of_month_with_question_mark_weekday_then_weekday_does_not_constrain():
    # Unix-cron "OR" semantics must not leak: only the 13th fires, not Fridays.
    assert firings("cron(0 0 13 * ? *)", at(2026, 11, 1), 2) == [at(2026, 11, 13), at(2026, 12, 13)]


def test_given_weekday_with_question_mark_day_of_month_then_day_of_month_does_not_constrain():
    assert firings("cron(0 0 ? * FRI *)", at(2026, 11, 1), 2) == [at(2026, 11, 6), at(2026, 11, 13)]


def test_given_star_day_of_month_when_evaluated_then_fires_every_day():
    assert firings("cron(30 23 * * ? *)", at(2026, 2, 28, 23, 30), 1) == [at(2026, 3, 1, 23, 30)]


# ------------------------------------------------------------- L, W, # and year


def test_given_nth_weekday_when_evaluated_then_third_friday_of_each_month():
    assert firings("cron(0 12 ? * 6#3 *)", at(2026, 11, 1), 3) == [
        at(2026, 11, 20, 12),
        at(2026, 12, 18, 12),
        at(2027, 1, 15, 12),
    ]


def test_given_nth_weekday_by_name_when_evaluated_then_same_as_number():
    assert firings("cron(0 12 ? * FRI#3 *)", at(2026, 11, 1), 1) == [at(2026, 11, 20, 12)]


def test_given_fifth_weekday_when_month_has_only_four_then_that_month_is_skipped():
    # Fridays in 2026-11: 6,13,20,27 (four); 2027-01: 1,8,15,22,29.
    assert firings("cron(0 0 ? * 6#5 *)", at(2026, 11, 1), 1) == [at(2027, 1, 29)]


def test_given_last_day_of_month_when_crossing_february_in_leap_year_then_29th():
    assert firings("cron(0 0 L * ? *)", at(2028, 1, 31), 3) == [
        at(2028, 2, 29),
        at(2028, 3, 31),
        at(2028, 4, 30),
    ]


def test_given_last_day_of_month_when_crossing_february_in_common_year_then_28th():
    assert firings("cron(0 0 L * ? *)", at(2026, 1, 31), 1) == [at(2026, 2, 28)]


def test_given_last_weekday_in_day_of_week_when_evaluated_then_last_friday_within_years():
    assert firings("cron(15 10 ? * 6L 2026-2027)", at(2026, 11, 1), 2) == [
        at(2026, 11, 27, 10, 15),
        at(2026, 12, 25, 10, 15),
    ]


def test_given_last_weekday_with_year_range_when_range_ends_then_never_fires_again():
    schedule = parse_schedule("cron(15 10 ? * 6L 2026-2027)", anchor=ANCHOR)
    assert schedule.next_after(at(2027, 12, 1)) == at(2027, 12, 31, 10, 15)
    with pytest.raises(ScheduleError, match="never fires"):
        schedule.next_after(at(2027, 12, 31, 10, 15))


def test_given_plain_l_in_day_of_week_when_evaluated_then_it_means_saturday():
    assert firings("cron(0 0 ? * L *)", at(2026, 11, 27), 1) == [at(2026, 11, 28)]


def test_given_nearest_weekday_when_15th_is_weekend_then_fires_on_nearest_weekday():
    # 2026: Feb 15 Sun -> Mon 16, Mar 15 Sun -> Mon 16, Apr 15 Wed stays,
    # Aug 15 Sat -> Fri 14, Nov 15 Sun -> Mon 16.
    expected = [at(2026, 2, 16, 9), at(2026, 3, 16, 9), at(2026, 4, 15, 9)]
    assert firings("cron(0 9 15W * ? 2026)", at(2026, 1, 20), 3) == expected
    assert firings("cron(0 9 15W * ? 2026)", at(2026, 8, 1), 1) == [at(2026, 8, 14, 9)]
    assert firings("cron(0 9 15W * ? 2026)", at(2026, 11, 1), 1) == [at(2026, 11, 16, 9)]


def test_given_nearest_weekday_when_1st_is_saturday_then_does_not_leave_the_month():
    # 2026-08-01 is a Saturday: Monday the 3rd, not Friday July 31.
    assert firings("cron(0 0 1W * ? *)", at(2026, 7, 15), 2) == [at(2026, 8, 3), at(2026, 9, 1)]


def test_given_nearest_weekday_when_already_past_this_months_firing_then_next_month():
    assert firings("cron(0 9 15W * ? *)", at(2026, 8, 14, 9), 1) == [at(2026, 9, 15, 9)]


def test_given_last_weekday_of_month_when_evaluated_then_weekend_month_ends_move_to_friday():
    # Jan 31 Sat -> Fri 30, Feb 28 Sat -> Fri 27, Mar 31 Tue, May 31 Sun -> Fri 29.
    assert firings("cron(0 0 LW * ? *)", at(2026, 1, 1), 5) == [
        at(2026, 1, 30),
        at(2026, 2, 27),
        at(2026, 3, 31),
        at(2026, 4, 30),
        at(2026, 5, 29),
    ]


def test_given_year_list_when_evaluated_then_other_years_are_skipped():
    expected = [at(2027, 1, 1), at(2030, 1, 1)]
    assert firings("cron(0 0 1 1 ? 2027,2030)", at(2026, 6, 1), 2) == expected


def test_given_year_step_when_evaluated_then_every_other_year():
    assert firings("cron(0 0 1 1 ? 2026/2)", at(2026, 6, 1), 2) == [at(2028, 1, 1), at(2030, 1, 1)]


def test_given_year_beyond_2099_when_evaluated_then_it_still_fires():
    assert firings("cron(0 0 1 1 ? 2100)", at(2026, 6, 1), 1) == [at(2100, 1, 1)]


def test_given_past_year_only_when_asked_then_never_fires():
    schedule = parse_schedule("cron(0 0 * * ? 2020)", anchor=ANCHOR)
    with pytest.raises(ScheduleError, match="never fires"):
        schedule.next_after(at(2026, 1, 1))


def test_given_impossible_date_when_asked_then_never_fires():
    schedule = parse_schedule("cron(0 0 30 2 ? *)", anchor=ANCHOR)
    with pytest.raises(ScheduleError, match="never fires"):
        schedule.next_after(at(2026, 1, 1))


# ------------------------------------------------------- clock edge behaviour


def test_given_stack_starts_just_before_due_minute_then_fires_at_that_minute():
    start = at(2026, 11, 30, 7, 59, 59, 900_000)
    schedule = parse_schedule("cron(0 8 ? * MON-FRI *)", anchor=start)
    assert schedule.next_after(start) == at(2026, 11, 30, 8)


def test_given_moment_exactly_on_a_firing_then_next_is_strictly_after():
    schedule = parse_schedule("cron(0 8 * * ? *)", anchor=ANCHOR)
    assert schedule.next_after(at(2026, 11, 30, 8)) == at(2026, 12, 1, 8)
    assert schedule.next_after(at(2026, 11, 30, 8, 0, 0, 1)) == at(2026, 12, 1, 8)


def test_given_cron_result_then_it_is_utc_aware_with_zero_seconds():
    schedule = parse_schedule("cron(* * * * ? *)", anchor=ANCHOR)
    result = schedule.next_after(at(2026, 5, 5, 5, 5, 42, 7))
    assert result == at(2026, 5, 5, 5, 6)
    assert result.tzinfo == UTC
    assert (result.second, result.microsecond) == (0, 0)


def test_given_non_utc_aware_moment_when_evaluated_then_cron_is_in_utc():
    # 09:30 at +02:00 is 07:30 UTC, so 08:00 UTC is still due that day.
    moment = datetime(2026, 11, 30, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    result = parse_schedule("cron(0 8 * * ? *)", anchor=ANCHOR).next_after(moment)
    assert result == at(2026, 11, 30, 8)
    assert result.tzinfo == UTC


@pytest.mark.parametrize("expression", ["cron(0 8 * * ? *)", "rate(5 minutes)"])
def test_given_naive_moment_when_evaluated_then_value_error(expression):
    schedule = parse_schedule(expression, anchor=ANCHOR)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 1, 1))


def test_given_naive_anchor_when_parsing_then_value_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("rate(5 minutes)", anchor=datetime(2026, 1, 1))


# ----------------------------------------------------------------------- rate


def test_given_rate_when_evaluated_then_fires_at_anchor_plus_multiples():
    anchor = at(2026, 11, 27, 9, 0, 30)
    schedule = parse_schedule("rate(5 minutes)", anchor=anchor)
    assert schedule.next_after(anchor) == at(2026, 11, 27, 9, 5, 30)
    assert schedule.next_after(at(2026, 11, 27, 9, 5, 30)) == at(2026, 11, 27, 9, 10, 30)
    assert schedule.next_after(at(2026, 11, 27, 9, 7)) == at(2026, 11, 27, 9, 10, 30)
    assert schedule.next_after(at(2026, 11, 27, 11, 0, 29)) == at(2026, 11, 27, 11, 0, 30)


def test_given_rate_when_moment_before_anchor_then_first_firing_is_one_interval_after_anchor():
    anchor = at(2026, 11, 27, 9)
    schedule = parse_schedule("rate(1 hour)", anchor=anchor)
    assert schedule.next_after(at(2020, 1, 1)) == at(2026, 11, 27, 10)


@pytest.mark.parametrize(
    "expression, interval",
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(1 minutes)", timedelta(minutes=1)),
        ("rate(15 minutes)", timedelta(minutes=15)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(6 hours)", timedelta(hours=6)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(2 days)", timedelta(days=2)),
        ("rate(2 day)", timedelta(days=2)),
    ],
)
def test_given_each_rate_unit_when_evaluated_then_interval_matches(expression, interval):
    schedule = parse_schedule(expression, anchor=ANCHOR)
    assert schedule.next_after(ANCHOR) == ANCHOR + interval


def test_given_rate_with_non_utc_anchor_then_result_is_utc():
    anchor = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    result = parse_schedule("rate(1 day)", anchor=anchor).next_after(anchor)
    assert result == at(2026, 1, 2, 0, 0)
    assert result.tzinfo == UTC


# ------------------------------------------------------------ chalice strings


def test_given_chalice_cron_and_rate_objects_when_stringified_then_they_parse():
    cron = parse_schedule(Cron(0, 8, "?", "*", "MON-FRI", "*").to_string(), anchor=ANCHOR)
    assert cron.expression == "cron(0 8 ? * MON-FRI *)"
    assert cron.next_after(at(2026, 11, 27, 9)) == at(2026, 11, 30, 8)
    rate = parse_schedule(Rate(1, unit=Rate.HOURS).to_string(), anchor=ANCHOR)
    assert rate.expression == "rate(1 hour)"
    assert rate.next_after(ANCHOR) == ANCHOR + timedelta(hours=1)


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "expression, reason",
    [
        ("every 5 minutes", "expected 'cron"),
        ("cron(0 8 * *)", "6 fields"),
        ("cron(0 8 * * ? * *)", "6 fields"),
        ("cron()", "6 fields"),
        ("cron(0 8 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 8 1 * MON *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 8 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(60 8 * * ? *)", "minutes: 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "hours: 24 is outside 0-23"),
        ("cron(0 8 32 * ? *)", "day-of-month: 32 is outside 1-31"),
        ("cron(0 8 0 * ? *)", "day-of-month: 0 is outside 1-31"),
        ("cron(0 8 * 13 ? *)", "month: 13 is outside 1-12"),
        ("cron(0 8 ? * 0 *)", "day-of-week: 0 is outside 1-7"),
        ("cron(0 8 ? * 8 *)", "day-of-week: 8 is outside 1-7"),
        ("cron(0 8 * * ? 1969)", "year: 1969 is outside 1970-2199"),
        ("cron(0 8 * * ? 2200)", "year: 2200 is outside 1970-2199"),
        ("cron(0 8 * * ? 2027-2026)", "range end is before its start"),
        ("cron(x 8 * * ? *)", "not a valid value"),
        ("cron(0 8 * FOO ? *)", "not a valid value"),
        ("cron(0 8 ? * MON-XYZ *)", "not a valid value"),
        ("cron(0 8 1,,2 * ? *)", "not a valid value"),
        ("cron(0 8 -1 * ? *)", "not a valid value"),
        ("cron(? 8 * * ? *)", "not a valid value"),
        ("cron(*/0 8 * * ? *)", "step must be a whole number >= 1"),
        ("cron(0/x 8 * * ? *)", "step must be a whole number >= 1"),
        ("cron(0 8 32W * ? *)", "day-of-month: 32 is outside 1-31"),
        ("cron(0 8 1-5W * ? *)", "not a valid value"),
        ("cron(0 8 L,15 * ? *)", "not a valid value"),
        ("cron(0 8 ? * 6#6 *)", "must be 1-5"),
        ("cron(0 8 ? * 6#0 *)", "must be 1-5"),
        ("cron(0 8 ? * 2#1,6#3 *)", "cannot be used in a list"),
        ("cron(0 8 ? * 8L *)", "day-of-week: 8 is outside 1-7"),
        ("rate(0 minutes)", "whole number >= 1"),
        ("rate(-5 minutes)", "whole number >= 1"),
        ("rate(1.5 hours)", "whole number >= 1"),
        ("rate(5 weeks)", "unknown rate unit 'weeks'"),
        ("rate(5 seconds)", "unknown rate unit 'seconds'"),
        ("rate(5)", "expected 'rate(<value> <unit>)'"),
        ("rate(5 minutes now)", "expected 'rate(<value> <unit>)'"),
        ("rate(99999999999 days)", "too large"),
    ],
)
def test_given_bad_expression_when_parsing_then_schedule_error_says_why(expression, reason):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression, anchor=ANCHOR)
    assert type(caught.value) is ScheduleError  # never a croniter exception type
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_given_non_string_expression_when_parsing_then_schedule_error():
    with pytest.raises(ScheduleError, match="must be a string"):
        parse_schedule(None, anchor=ANCHOR)
