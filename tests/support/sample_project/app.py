"""A test-only Chalice app with one SQS consumer and two schedules, used to test the local stack's
poller and scheduler before the platform has consumers and jobs of its own.

The consumer reads ``{"id": ..., "fail_times": n}``: it fails a message while SQS's receive count
is <= n (so a message can fail once and then succeed, or fail for ever and reach the DLQ), and
writes every success to the results queue with the receive count it succeeded on.
"""

import functools
import json

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Chalice, Cron, Rate

from chalicelib.api import middleware

try:  # imported as a package in tests, as a top-level module by the local stack
    from .resources import JOBS, RESULTS
except ImportError:  # pragma: no cover
    from resources import JOBS, RESULTS  # type: ignore[no-redef]

app = Chalice(app_name="sample")
app.register_middleware(middleware.log_context, "all")
fired: list[dict] = []


@functools.cache
def _sqs():
    return boto3.client("sqs")


def _url(name: str) -> str:
    return _sqs().get_queue_url(QueueName=name)["QueueUrl"]


def _handle(record: SQSRecord) -> None:
    message = json.loads(record.body)
    receive_count = int(record.attributes.approximate_receive_count)
    if receive_count <= int(message.get("fail_times", 0)):
        raise RuntimeError(f"failing {message['id']} on receipt {receive_count}")
    result = {"id": message["id"], "receive_count": receive_count}
    _sqs().send_message(QueueUrl=_url(RESULTS.name), MessageBody=json.dumps(result))


@app.on_sqs_message(queue=JOBS.name, batch_size=JOBS.batch_size)
def run_sample_jobs(event):
    return process_partial_response(
        event=event.to_dict(), record_handler=_handle, processor=BatchProcessor(EventType.SQS), context=event.context
    )


@app.schedule(Cron(0, 9, "?", "*", "MON-FRI", "*"))
def enqueue_weekday_job(event):
    fired.append(event.to_dict())
    _sqs().send_message(QueueUrl=_url(JOBS.name), MessageBody=json.dumps({"id": f"job-{event.time}"}))


@app.schedule(Rate(5, unit=Rate.MINUTES))
def tick_every_five_minutes(event):
    fired.append(event.to_dict())
