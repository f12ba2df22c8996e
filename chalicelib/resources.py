"""The one source of truth for the AWS resources the code uses.

The local stack creates exactly these tables and queues, and the deployment template is checked
against them, so code, local stack and AWS cannot disagree about what exists.

* Tables are the PynamoDB models themselves: keys, indexes and attribute types come from them.
* Queues are declared here once; consumers bind to ``spec.name`` and publishers look them up by
  ``spec.key``. Every queue has a dead-letter queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.models import Model

from chalicelib.db.absence import MODELS as ABSENCE_MODELS
from chalicelib.db.resources import MODELS as RESOURCE_MODELS
from chalicelib.db.audit import AuditModel
from chalicelib.db.door import MODELS as DOOR_MODELS
from chalicelib.db.directory import AuthorityModel, ClassModel, DepartmentModel, PersonModel
from chalicelib.db.counselling import MODELS as COUNSELLING_MODELS
from chalicelib.db.hall import MODELS as HALL_MODELS
from chalicelib.db.health import MODELS as HEALTH_MODELS
from chalicelib.db.mailbox import MODELS as MAILBOX_MODELS
from chalicelib.db.notices import MODELS as NOTICES_MODELS
from chalicelib.db.repair import MODELS as REPAIR_MODELS
from chalicelib.db.suggestions import MODELS as SUGGESTIONS_MODELS
from chalicelib.db.kv import KeyValueModel
from chalicelib.db.messaging import DeliveryModel, MemberRateModel, OutboxModel

TABLE_MODELS: tuple[type[Model], ...] = (
    DepartmentModel, ClassModel, PersonModel, AuthorityModel, AuditModel, KeyValueModel, OutboxModel, DeliveryModel,
    MemberRateModel, *HALL_MODELS, *COUNSELLING_MODELS, *REPAIR_MODELS, *MAILBOX_MODELS, *SUGGESTIONS_MODELS,
    *NOTICES_MODELS, *HEALTH_MODELS, *DOOR_MODELS, *ABSENCE_MODELS, *RESOURCE_MODELS,
)


@dataclass(frozen=True)
class QueueSpec:
    """An SQS queue and its dead-letter queue.

    ``name`` is static because Chalice binds ``on_sqs_message`` consumers by queue name when the
    app is imported; the consumer passes ``batch_size=spec.batch_size`` too (Chalice's default is
    1). ``visibility_timeout`` must be at least the consumer's Lambda timeout (AWS refuses the event
    source otherwise) and should be six times it (AWS's guidance; the default fits Chalice's 60 s
    default timeout). After ``max_receive_count`` failed receipts a message moves to the DLQ
    instead of being lost.
    """

    key: str
    name: str
    visibility_timeout: int = 360
    max_receive_count: int = 5
    batch_size: int = 10

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"


# WeCom app messages to send (one notification each); the consumer batches, rate-limits, retries.
NOTIFICATIONS = QueueSpec(key="notifications", name="campus-notifications")
# At most this many notification consumers at once: WeCom limits calls per app too.
NOTIFICATIONS_CONCURRENCY = 5
# Verified, decrypted WeCom callbacks (directory changes) waiting to be applied.
WECOM_EVENTS = QueueSpec(key="wecom-events", name="campus-wecom-events")

# Application transitions whose area hooks failed inline (repair order, notice...): run again here.
HALL_HOOKS = QueueSpec(key="hall-hooks", name="campus-hall-hooks")

# Notices to fan out (``{notice_id}``): recipient rows, the WeCom card, then ``published``. One
# message a batch: a notice to every student is ~15,000 rows, work enough for one invocation.
NOTICE_FANOUT = QueueSpec(key="notice-fanout", name="campus-notice-fanout", batch_size=1)

# Abnormal daily health reports (``{userid, day, version}``): open or update the person's health
# case and tell the hospital, HR or student affairs, the department head or counselor.
HEALTH_ALERTS = QueueSpec(key="health-alerts", name="campus-health-alerts")

# Door passes to push to the door gateway (``{pass_id, version}``). One a batch: an ISAPI grant is up
# to three calls of up to 10 s each (connect + read), and passes are few: well inside 60 s.
DOOR_SYNC = QueueSpec(key="door-sync", name="campus-door-sync", batch_size=1)
QUEUES: tuple[QueueSpec, ...] = (NOTIFICATIONS, WECOM_EVENTS, HALL_HOOKS, NOTICE_FANOUT, HEALTH_ALERTS, DOOR_SYNC)

# S3 buckets, by the setting that names them per stage (names are global in S3, so each stage sets
# its own). Private; objects are written only through presigned PUTs.
BUCKET_SETTINGS: tuple[str, ...] = ("uploads_bucket",)
