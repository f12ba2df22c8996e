"""Queues of the test-only app: one consumed queue and one the tests read results from."""

from chalicelib.resources import QueueSpec

JOBS = QueueSpec(key="jobs", name="sample-jobs", visibility_timeout=1, max_receive_count=2)
RESULTS = QueueSpec(key="results", name="sample-results")
QUEUES = (JOBS, RESULTS)
