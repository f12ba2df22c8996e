"""The service hall's storage: definition versions, applications, uploads.

Access patterns and the keys that serve them (no Scan anywhere):

* a definition version                    -> ``services`` table, hash ``service_id``, range ``version``
* the whole catalogue (every version)     -> ``services`` GSI ``by_catalogue`` (one partition, small)
* an application                          -> ``applications`` table, hash ``app_id``
* my applications, newest first           -> GSI ``by_applicant`` (applicant, ``<filed_at>#<app_id>``)
* an approver's to-do, oldest first       -> GSI ``by_authority`` (authority, ``<waiting since>#<app_id>``),
  sparse: only pending applications carry the attributes, so a decided one leaves the list
* a service's applications in a period    -> GSI ``by_service`` (service_id, ``<filed_at>#<app_id>``)
* an upload slot                          -> ``uploads`` table, hash ``key``, expiring by TTL

An application is one item, its history a list inside it: a transition is one conditional PutItem
(``version`` unchanged since read), so status and history can never disagree and no transaction is
needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName
from chalicelib.domain.forms import ServiceDefinition
from chalicelib.domain.statistics import Figures
from chalicelib.domain.workflow import Applicant, Application, ChainStep, Transition
from chalicelib.errors import Conflict

CATALOGUE = "hall"


class ByCatalogue(GlobalSecondaryIndex["ServiceModel"]):
    class Meta:
        index_name = "by_catalogue"
        projection = AllProjection()

    catalogue = UnicodeAttribute(hash_key=True)
    service_id = UnicodeAttribute(range_key=True)


class ServiceModel(Model):
    class Meta(TableMeta):
        table_name = TableName("services")

    service_id = UnicodeAttribute(hash_key=True)
    version = NumberAttribute(range_key=True)
    catalogue = UnicodeAttribute(default=CATALOGUE)
    definition = UnicodeAttribute()  # JSON of the ServiceDefinition
    changed_by = UnicodeAttribute()
    changed_at = UnicodeAttribute()

    by_catalogue = ByCatalogue()


class ByApplicant(GlobalSecondaryIndex["ApplicationModel"]):
    class Meta:
        index_name = "by_applicant"
        projection = AllProjection()

    applicant = UnicodeAttribute(hash_key=True)
    filed_key = UnicodeAttribute(range_key=True)


class ByAuthority(GlobalSecondaryIndex["ApplicationModel"]):
    class Meta:
        index_name = "by_authority"
        projection = AllProjection()

    authority = UnicodeAttribute(hash_key=True)
    waiting_key = UnicodeAttribute(range_key=True)


class ByService(GlobalSecondaryIndex["ApplicationModel"]):
    """Statistics read only figures: no form data travels through this index."""

    class Meta:
        index_name = "by_service"
        projection = IncludeProjection(["status", "authority", "waiting_key", "decided_at"])

    service_id = UnicodeAttribute(hash_key=True)
    filed_key = UnicodeAttribute(range_key=True)


class ApplicationModel(Model):
    class Meta(TableMeta):
        table_name = TableName("applications")

    app_id = UnicodeAttribute(hash_key=True)
    service_id = UnicodeAttribute()
    service_version = NumberAttribute()
    applicant = UnicodeAttribute()
    filed_key = UnicodeAttribute()
    status = UnicodeAttribute()
    version = NumberAttribute()
    # Only while pending: the authority of the current step, and since when it waits.
    authority = UnicodeAttribute(null=True)
    waiting_key = UnicodeAttribute(null=True)
    decided_at = UnicodeAttribute(null=True)  # the approver's final decision (approve or reject)
    record = UnicodeAttribute()  # JSON of the whole application (form, chain, history)

    by_applicant = ByApplicant()
    by_authority = ByAuthority()
    by_service = ByService()


class UploadModel(Model):
    """An upload slot handed out by ``POST /uploads``: whose it is and what may be put there."""

    class Meta(TableMeta):
        table_name = TableName("uploads")

    key = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    content_type = UnicodeAttribute()
    max_bytes = NumberAttribute()
    created_at = UnicodeAttribute()
    expires = TTLAttribute()  # unused slots are forgotten; the bucket's lifecycle removes the objects


MODELS: tuple[type[Model], ...] = (ServiceModel, ApplicationModel, UploadModel)


class ServiceRepository:
    """Definition versions written by the IT centre (the shipped ones live in the code package)."""

    def latest_versions(self) -> dict[str, ServiceDefinition]:
        """The newest stored version of every service changed through the API."""
        latest: dict[str, ServiceDefinition] = {}
        for row in ServiceModel.by_catalogue.query(CATALOGUE):
            if row.service_id not in latest or latest[row.service_id].version < row.version:
                latest[row.service_id] = ServiceDefinition.model_validate_json(row.definition)
        return latest

    def latest(self, service_id: str) -> ServiceDefinition | None:
        for row in ServiceModel.query(service_id, scan_index_forward=False, limit=1, consistent_read=True):
            return ServiceDefinition.model_validate_json(row.definition)
        return None

    def get(self, service_id: str, version: int) -> ServiceDefinition | None:
        try:
            row = ServiceModel.get(service_id, version)
        except ServiceModel.DoesNotExist:
            return None
        return ServiceDefinition.model_validate_json(row.definition)

    def add(self, definition: ServiceDefinition, changed_by: str, now: datetime) -> None:
        """Store a new version.

        Raises:
            Conflict: that version exists already (someone else changed the service meanwhile).
        """
        row = ServiceModel(service_id=definition.id, version=definition.version,
                           definition=definition.model_dump_json(), changed_by=changed_by,
                           changed_at=now.isoformat(timespec="seconds"))
        try:
            row.save(condition=ServiceModel.service_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict("The service was changed meanwhile; reload it and try again.") from None
            raise


class ApplicationRepository:
    def get(self, app_id: str) -> Application | None:
        try:
            return _application(ApplicationModel.get(app_id, consistent_read=True))
        except ApplicationModel.DoesNotExist:
            return None

    def save(self, app: Application, expected_version: int | None) -> None:
        """Write ``app`` if the stored version is still ``expected_version`` (``None``: a new one).

        Raises:
            Conflict: someone else moved the application first.
        """
        condition = (ApplicationModel.app_id.does_not_exist() if expected_version is None
                     else ApplicationModel.version == expected_version)
        try:
            _model(app).save(condition=condition)
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict("The application was changed meanwhile; reload it and try again.") from None
            raise

    def mine(self, applicant: str, limit: int, after: str | None) -> tuple[list[Application], str | None]:
        """One page of an applicant's applications, newest first; returns the cursor of the next page."""
        condition = ApplicationModel.filed_key < after if after else None
        rows = list(ApplicationModel.by_applicant.query(applicant, condition, scan_index_forward=False,
                                                        limit=limit + 1))
        return _page(rows, limit, lambda row: row.filed_key)

    def waiting_for(self, held: Iterable[str], limit: int, after: str | None) -> tuple[list[Application], str | None]:
        """One page of the applications waiting for any of these authorities, oldest first.

        Each authority's index partition is read from the cursor on and the results merged, so a
        page is exact however many authorities the approver holds.
        """
        rows: list[ApplicationModel] = []
        for authority in sorted(set(held)):
            condition = ApplicationModel.waiting_key > after if after else None
            rows += ApplicationModel.by_authority.query(authority, condition, limit=limit + 1)
        rows.sort(key=lambda row: row.waiting_key or "")
        return _page(rows, limit, lambda row: row.waiting_key or "")

    def figures_of(self, service_id: str, since: str, until: str) -> Iterator[Figures]:
        """The figures of a service's applications filed in ``[since, until)`` (UTC ISO bounds)."""
        condition = ApplicationModel.filed_key.between(since, until)
        for row in ApplicationModel.by_service.query(service_id, condition):
            if row.filed_key < until:
                yield Figures(status=row.status, filed_at=row.filed_key.split("#", 1)[0],
                              decided_at=row.decided_at, authority=row.authority,
                              waiting_since=row.waiting_key.split("#", 1)[0] if row.waiting_key else None)


class UploadRepository:
    def open(self, key: str, owner: str, content_type: str, max_bytes: int, now: datetime,
             lifetime: timedelta) -> None:
        UploadModel(key=key, owner=owner, content_type=content_type, max_bytes=max_bytes,
                    created_at=now.isoformat(timespec="seconds"), expires=now + lifetime).save()

    def owners(self, keys: Sequence[str]) -> dict[str, UploadModel]:
        if not keys:
            return {}
        return {row.key: row for row in UploadModel.batch_get(list(dict.fromkeys(keys)))}


def _page(rows: list[Any], limit: int, cursor_of: Any) -> tuple[list[Application], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    return [_application(row) for row in rows], (cursor_of(rows[-1]) if more and rows else None)


def _model(app: Application) -> ApplicationModel:
    pending = app.status == "pending"
    waiting_since = app.history[-1].at if app.history else app.updated_at
    return ApplicationModel(
        app_id=app.app_id, service_id=app.service_id, service_version=app.service_version,
        applicant=app.applicant.userid, filed_key=f"{app.filed_at}#{app.app_id}", status=app.status,
        version=app.version,
        authority=app.current_authority if pending else None,
        waiting_key=f"{waiting_since}#{app.app_id}" if pending else None,
        decided_at=app.decided_at,
        record=json.dumps(_record(app), ensure_ascii=False, separators=(",", ":")),
    )


def _record(app: Application) -> dict[str, Any]:
    return {
        "service_name": app.service_name, "applicant": asdict(app.applicant), "data": dict(app.data),
        "chain": [asdict(step) for step in app.chain], "step": app.step, "filed_at": app.filed_at,
        "updated_at": app.updated_at, "history": [asdict(t) for t in app.history],
        "cc": [[list(events), authority] for events, authority in app.cc], "area": app.area,
        "extra": dict(app.extra),
    }


def _application(row: ApplicationModel) -> Application:
    record = json.loads(row.record)
    return Application(
        app_id=row.app_id, service_id=row.service_id, service_version=int(row.service_version),
        service_name=record["service_name"], applicant=Applicant(**record["applicant"]), data=record["data"],
        chain=tuple(ChainStep(**step) for step in record["chain"]), status=row.status, step=record["step"],
        version=int(row.version), filed_at=record["filed_at"], updated_at=record["updated_at"],
        history=tuple(Transition(**t) for t in record["history"]),
        cc=tuple((tuple(events), authority) for events, authority in record["cc"]), area=record["area"],
        extra=record.get("extra") or {},
    )

