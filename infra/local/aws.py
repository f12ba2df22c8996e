"""The local AWS: a moto server on loopback and the tables and queues the code declares.

The tables come from the PynamoDB models and the queues from :data:`chalicelib.resources.QUEUES`
(the same declarations the deployment template is checked against), so the local stack holds
exactly what production holds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chalice import Chalice
from chalice.app import SQSEventConfig
from moto.server import ThreadedMotoServer
from pynamodb.models import Model

from chalicelib.resources import QueueSpec
from infra.local.atomic import make_dynamodb_writes_atomic

# Fixed, obviously fake credentials: moto accepts any, and they keep a developer's real AWS
# profile out of the local stack.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}


class ResourceError(RuntimeError):
    """The app uses a queue or table that the resource declarations do not have."""


@dataclass(frozen=True)
class LocalQueue:
    spec: QueueSpec
    url: str
    arn: str
    dlq_url: str


class LocalAws:
    """A moto server in this process; ``env`` points boto3 and PynamoDB at it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> dict[str, str]:
        make_dynamodb_writes_atomic()
        # moto's server logs every request through werkzeug; the stack prints its own summary.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return {**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint_url}

    def stop(self) -> None:
        self._server.stop()


def create_tables(models: Iterable[type[Model]]) -> list[str]:
    """Create every model's table (keys, indexes and TTL from the model) unless it exists."""
    created = []
    for model in models:
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
            created.append(model.Meta.table_name)
    return created


def create_queues(sqs: Any, specs: Iterable[QueueSpec]) -> dict[str, LocalQueue]:
    """Create every queue with its DLQ and redrive policy; return them by queue name."""
    queues = {}
    for spec in specs:
        dlq_url = sqs.create_queue(QueueName=spec.dlq_name, Attributes={"MessageRetentionPeriod": "1209600"})[
            "QueueUrl"
        ]
        dlq_arn = _arn(sqs, dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec.max_receive_count)}
        url = sqs.create_queue(
            QueueName=spec.name,
            Attributes={"VisibilityTimeout": str(spec.visibility_timeout), "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        queues[spec.name] = LocalQueue(spec=spec, url=url, arn=_arn(sqs, url), dlq_url=dlq_url)
    return queues


def create_buckets(s3: Any, names: Iterable[str]) -> list[str]:
    """Create the stage's buckets (names from the settings in ``BUCKET_SETTINGS``) unless they exist.

    CORS lets the H5 PUT straight to a presigned URL from the browser.
    """
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    created = []
    for name in names:
        if name not in existing:
            s3.create_bucket(Bucket=name)
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [
                {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 3600}]})
            created.append(name)
    return created


def bucket_names() -> list[str]:
    """The bucket names the current settings give (the stage's variables must be applied).

    A stage that names no bucket (an app without uploads) gets none.
    """
    from chalicelib.resources import BUCKET_SETTINGS
    from chalicelib.settings import get_settings

    settings = get_settings()
    return [name for name in (getattr(settings, setting) for setting in BUCKET_SETTINGS) if name]


def check_consumers_declared(
    app: Chalice, specs: Iterable[QueueSpec], timeout_of: Callable[[str], int] = lambda name: 60
) -> list[SQSEventConfig]:
    """The app's SQS consumers, each checked against its queue's declaration.

    ``timeout_of`` gives a consumer's Lambda timeout in seconds (from the stage config).

    Raises:
        ResourceError: a consumer listens on an undeclared queue, with another batch size than
            declared, or with a timeout longer than the queue's visibility timeout.
    """
    declared = {spec.name: spec for spec in specs}
    consumers = [s for s in app.event_sources if isinstance(s, SQSEventConfig)]
    for consumer in consumers:
        spec = declared.get(consumer.queue or "")
        if spec is None:
            raise ResourceError(
                f"consumer {consumer.name} listens on queue {consumer.queue!r}, "
                "which chalicelib.resources.QUEUES does not declare"
            )
        if consumer.batch_size != spec.batch_size:
            raise ResourceError(
                f"consumer {consumer.name} takes batches of {consumer.batch_size}, "
                f"queue {spec.name} declares {spec.batch_size}: pass batch_size=spec.batch_size"
            )
        if timeout_of(consumer.name) > spec.visibility_timeout:
            raise ResourceError(
                f"queue {spec.name}: visibility timeout {spec.visibility_timeout}s is shorter than "
                f"consumer {consumer.name}'s timeout {timeout_of(consumer.name)}s (AWS refuses this)"
            )
    return consumers


def region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def apply_env(env: Mapping[str, str]) -> None:
    os.environ.update(env)
