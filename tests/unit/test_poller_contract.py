"""How the local poller reads a consumer's partial batch response (Lambda's rules)."""

from infra.local.poller import failed_ids

IDS = ["m1", "m2", "m3"]


def test_no_report_means_every_message_succeeded():
    assert failed_ids(None, IDS) == ([], None)
    assert failed_ids({"batchItemFailures": []}, IDS) == ([], None)


def test_reported_ids_fail_and_only_those():
    failed, error = failed_ids({"batchItemFailures": [{"itemIdentifier": "m2"}]}, IDS)
    assert (failed, error) == (["m2"], None)


def test_a_response_that_is_not_an_object_fails_the_whole_batch():
    assert failed_ids("ok", IDS)[0] == IDS
    assert failed_ids([], IDS)[0] == IDS


def test_an_unknown_or_empty_identifier_fails_the_whole_batch():
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, IDS)[0] == IDS
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, IDS)[0] == IDS
    assert failed_ids({"batchItemFailures": ["m1"]}, IDS)[0] == IDS
