"""Per-member counters on moto's DynamoDB: WeCom's 30 a minute / 1000 an hour never exceeded.

WeCom counts over sliding windows; the counters give each calendar minute (hour) half the limit,
so any 60 s (3600 s) window stays within it.
"""

from concurrent.futures import ThreadPoolExecutor

from chalicelib.db.messaging import MemberRates


def test_a_calendar_minute_gets_half_the_limit_and_the_next_minute_is_fresh():
    rates = MemberRates(per_minute=30, per_hour=1000)
    outcomes = [rates.reserve(["s001", f"other{n}"], "2026113001", "m05") for n in range(35)]
    assert sum("s001" in allowed for allowed, _ in outcomes) == 15
    assert sum("s001" in deferred for _, deferred in outcomes) == 20
    assert all(f"other{n}" in outcomes[n][0] for n in range(35))
    # 15 at the end of one minute and 15 at the start of the next: 30 in any 60 s, never more
    assert sum(len(rates.reserve(["s001"], "2026113001", "m06")[0]) for _ in range(20)) == 15


def test_the_hour_limit_holds_across_minutes():
    rates = MemberRates(per_minute=30, per_hour=40)
    allowed = sum(len(rates.reserve(["s001"], "2026113001", f"m{minute:02d}")[0])
                  for minute in range(3) for _ in range(20))
    assert allowed == 20
    assert rates.reserve(["s001"], "2026113002", "m00") == (["s001"], [])


def test_concurrent_consumers_never_push_a_member_past_the_limit():
    # Given five consumers racing to message the same member 60 times in one minute
    rates = MemberRates(per_minute=30, per_hour=1000)
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda n: rates.reserve(["hot"], "2026113001", "m10"), range(60)))
    # Then exactly the minute's budget got through
    assert sum(len(allowed) for allowed, _ in results) == 15
