"""The local stack creates the declared tables and queues exactly as declared."""

import dataclasses
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
    assert {i["IndexName"] for i in description["GlobalSecondaryIndexes"]} == {
        "by_department", "by_class", "by_type", "by_id_lookup", "by_card_no"}
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def one_second(name: str) -> int:
    return 1


def test_a_consumer_matching_its_declaration_is_accepted():
    assert [c.name for c in check_consumers_declared(sample.app, QUEUES, one_second)] == ["run_sample_jobs"]
    assert JOBS.dlq_name == "sample-jobs-dlq"


@pytest.mark.parametrize(
    ("specs", "timeout", "reason"),
    [
        ((QueueSpec(key="other", name="other"),), 1, "does not declare"),
        ((dataclasses.replace(JOBS, batch_size=5),), 1, "batches of 10"),
        (QUEUES, 60, "shorter than consumer run_sample_jobs's timeout 60s"),
    ],
)
def test_a_consumer_that_breaks_its_declaration_is_refused(specs, timeout, reason):
    with pytest.raises(ResourceError, match=reason):
        check_consumers_declared(sample.app, specs, lambda name: timeout)
