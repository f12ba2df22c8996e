"""The local stack creates the declared tables and queues exactly as declared."""

import json

import boto3
import pytest

from chalicelib.db.directory import PersonModel
from chalicelib.resources import QueueSpec
from infra.local.aws import ResourceError, check_consumers_declared, create_queues
from tests.support.sample_project import app as sample
from tests.support.sample_project.resources import JOBS, QUEUES


def test_every_queue_gets_a_dlq_with_the_declared_redrive():
    sqs = boto3.client("sqs")
    queues = create_queues(sqs, QUEUES)
    attributes = sqs.get_queue_attributes(QueueUrl=queues["sample-jobs"].url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=queues["sample-jobs"].dlq_url, AttributeNames=["QueueArn"])
    assert attributes["VisibilityTimeout"] == "1"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 2
    assert sorted(q.rsplit("/", 1)[1] for q in sqs.list_queues()["QueueUrls"]) == [
        "sample-jobs", "sample-jobs-dlq", "sample-results", "sample-results-dlq"]


def test_tables_carry_the_models_keys_and_indexes():
    description = boto3.client("dynamodb").describe_table(TableName=PersonModel.Meta.table_name)["Table"]
    assert description["TableName"] == "campus-local-people"
    assert description["KeySchema"] == [{"AttributeName": "userid", "KeyType": "HASH"}]
    assert {i["IndexName"] for i in description["GlobalSecondaryIndexes"]} == {"by_department", "by_class"}
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_a_consumer_on_an_undeclared_queue_is_refused():
    assert [c.name for c in check_consumers_declared(sample.app, QUEUES)] == ["run_sample_jobs"]
    with pytest.raises(ResourceError, match="sample-jobs"):
        check_consumers_declared(sample.app, (QueueSpec(key="other", name="other"),))
    assert JOBS.dlq_name == "sample-jobs-dlq"
