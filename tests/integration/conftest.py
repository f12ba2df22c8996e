"""Integration tests: real DynamoDB and SQS semantics through moto, the app through the test client."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.resources import TABLE_MODELS
from infra.local.atomic import make_dynamodb_writes_atomic
from infra.local.aws import bucket_names, create_buckets, create_tables
from tests.conftest import PROJECT_DIR
from tests.support import aws_calls


@pytest.fixture(autouse=True)
def aws(fake_aws_credentials: None, local_stage_env: dict[str, str]) -> Iterator[None]:
    """A fresh moto account per test, with every table the models declare."""
    make_dynamodb_writes_atomic()
    aws_calls.record_application_calls()
    with mock_aws():
        create_tables(TABLE_MODELS)
        create_buckets(boto3.client("s3"), bucket_names())
        yield


@pytest.fixture
def client() -> Iterator[Client]:
    from app import app

    with Client(app, stage_name="local", project_dir=str(PROJECT_DIR)) as test_client:
        yield test_client
