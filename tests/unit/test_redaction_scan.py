"""The log scanner finds what it must (so a clean log means something)."""

from __future__ import annotations

from tests.support.redaction import leaks


def test_a_clean_access_log_line_passes() -> None:
    line = ('{"level":"INFO","message":"request","request_id":"60710f50-a258-45fe-9dbf-24c750553111",'
            '"route":"POST /health/reports","user_id":"s001","status":201,"duration_ms":38.1}')
    assert leaks(line, ["local-only-wecom-secret"]) == []


def test_each_kind_of_leak_is_found() -> None:
    log = "\n".join([
        "visitor 11010519491231002X applied",  # a valid ID number (checksum X)
        "call 13912345678 now",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzMDAxIn0.c2lnbmF0dXJlLXZhbHVl",
        '{"answers": {"temperature": 38.5}}',
        "wecom secret local-only-wecom-secret leaked",
    ])
    found = leaks(log, ["local-only-wecom-secret"])
    assert [f.split(" at line ")[0] for f in found] == [
        "ID-card number", "mobile number", "session token", "health answer 'temperature'", "secret"]
    assert all("11010519491231002X" not in f and "13912345678" not in f for f in found)


def test_digits_that_are_not_an_id_or_a_phone_pass() -> None:
    assert leaks("ts 1765012345678 order 110105194912310021 msgid 23912345678") == []


def test_a_run_of_digits_inside_a_hex_id_is_not_a_phone_but_one_after_a_label_is() -> None:
    assert leaks('"msg_signature":"8f3a16612345678bd01e","nonce":"a16698765432"') == []
    labelled = "phone=16612345678;tel16612345678;mobile%3D16612345678&x=1;16612345678X"
    assert [f.split(" at line ")[0] for f in leaks(labelled)] == ["mobile number"] * 4
