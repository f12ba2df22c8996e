"""Per-member counters on moto's DynamoDB: WeCom's 30 a minute / 1000 an hour never exceeded."""

from concurrent.futures import ThreadPoolExecutor

from chalicelib.db.messaging import MemberRates


def test_the_31st_message_in_a_minute_is_deferred_and_the_next_minute_is_fresh():
    rates = MemberRates(per_minute=30, per_hour=1000, concurrency=1)
    outcomes = [rates.reserve(["s001", f"other{n}"], "2026113001", "m05") for n in range(35)]
    assert sum("s001" in allowed for allowed, _ in outcomes) == 30
    assert all(f"other{n}" in outcomes[n][0] for n in range(35))
    assert rates.reserve(["s001"], "2026113001", "m06") == (["s001"], [])


def test_the_hour_limit_holds_across_minutes():
    rates = MemberRates(per_minute=30, per_hour=40, concurrency=1)
    allowed = sum(len(rates.reserve(["s001"], "2026113001", f"m{minute:02d}")[0])
                  for minute in range(3) for _ in range(20))
    assert allowed == 40


def test_concurrent_consumers_never_push_a_member_past_the_limit():
    # Given five consumers racing to message the same member 60 times in one minute
    rates = MemberRates(per_minute=30, per_hour=1000, concurrency=5)
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda n: rates.reserve(["hot"], "2026113001", "m10"), range(60)))
    # Then at most 30 got through (the limit lowered by the possible first-write race), at least 26
    assert 26 <= sum(len(allowed) for allowed, _ in results) <= 30
