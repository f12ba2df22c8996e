"""The campus directory: departments, classes and people.

Access patterns and the keys that serve them (no Scan anywhere):

* a person by ``userid``                       -> ``people`` table, hash key
* members of a department, in userid order     -> ``people`` GSI ``by_department``
* students of a class, in userid order         -> ``people`` GSI ``by_class`` (sparse: students only)
* everyone of a person type (notices, health rosters) -> ``people`` GSI ``by_type`` (name, unit, status)
* a person by ID-card number (door events)     -> ``people`` GSI ``by_id_lookup`` (keyed hash, sparse)
* a person by campus card number (door events) -> ``people`` GSI ``by_card_no`` (sparse)
* a department / a class (with its counselors) -> ``departments`` / ``classes`` tables, hash key
* who holds an approval authority                -> ``authorities`` table (``role:hr``, ``dept_head:cs``,
  ``counselor:cs2001``), written with every person; a row outlives a lost authority harmlessly,
  because :meth:`DirectoryRepository.holders` checks each holder against their current record
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import datetime, timezone

from pynamodb.attributes import (
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.db.audit import audit_item
from chalicelib.db.base import TableMeta, TableName, transaction_connection
from chalicelib.domain.access import authorities
from chalicelib.domain.directory import AuditEntry, PersonRecord
from chalicelib.domain.wecom_events import Department
from chalicelib.errors import Conflict, NotFound


def _now() -> datetime:
    return datetime.now(timezone.utc)


class DepartmentModel(Model):
    class Meta(TableMeta):
        table_name = TableName("departments")

    dept_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    kind = UnicodeAttribute()  # college | office


class ClassModel(Model):
    class Meta(TableMeta):
        table_name = TableName("classes")

    class_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    department = UnicodeAttribute()
    counselors = UnicodeSetAttribute(default=set)


class ByDepartment(GlobalSecondaryIndex["PersonModel"]):
    class Meta:
        index_name = "by_department"
        projection = AllProjection()

    department = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute(range_key=True)


class ByClass(GlobalSecondaryIndex["PersonModel"]):
    class Meta:
        index_name = "by_class"
        projection = AllProjection()

    class_id = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute(range_key=True)


class ByType(GlobalSecondaryIndex["PersonModel"]):
    class Meta:
        index_name = "by_type"
        # What rosters need (reminders, expected counts): never ID numbers or contacts.
        projection = IncludeProjection(["name", "department", "class_id", "status"])

    person_type = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute(range_key=True)


class ByIdLookup(GlobalSecondaryIndex["PersonModel"]):
    class Meta:
        index_name = "by_id_lookup"
        projection = KeysOnlyProjection()

    id_lookup = UnicodeAttribute(hash_key=True)


class ByCardNo(GlobalSecondaryIndex["PersonModel"]):
    class Meta:
        index_name = "by_card_no"
        projection = KeysOnlyProjection()

    card_no = UnicodeAttribute(hash_key=True)


class PersonModel(Model):
    class Meta(TableMeta):
        table_name = TableName("people")

    userid = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    person_type = UnicodeAttribute()  # staff | student | third_party
    department = UnicodeAttribute()
    class_id = UnicodeAttribute(null=True)
    roles = UnicodeSetAttribute(default=set)
    counselor_of = UnicodeSetAttribute(default=set)
    dept_head_of = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")  # active | left
    card_no = UnicodeAttribute(null=True)
    id_number_sealed = UnicodeAttribute(null=True)  # AES-GCM, see chalicelib.domain.protection
    id_number_masked = UnicodeAttribute(null=True)
    id_lookup = UnicodeAttribute(null=True)  # keyed hash of the ID number
    token_version = NumberAttribute(default=0)
    health_consent = UnicodeAttribute(null=True)  # written only by set_health_consent
    updated_at = UTCDateTimeAttribute(default=_now)

    by_department = ByDepartment()
    by_class = ByClass()
    by_type = ByType()
    by_id_lookup = ByIdLookup()
    by_card_no = ByCardNo()


class AuthorityModel(Model):
    """Who holds an approval authority (see :func:`chalicelib.domain.access.authorities`)."""

    class Meta(TableMeta):
        table_name = TableName("authorities")

    authority = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute(range_key=True)


_SET_FIELDS = ("roles", "counselor_of")


def to_record(model: PersonModel) -> PersonRecord:
    """The domain record of a stored person (field names match one to one)."""
    values = {f.name: getattr(model, f.name) for f in fields(PersonRecord)}
    for name in _SET_FIELDS:
        values[name] = frozenset(values[name] or ())
    values["token_version"] = int(values["token_version"] or 0)
    return PersonRecord(**values)


def to_model(record: PersonRecord) -> PersonModel:
    values = {f.name: getattr(record, f.name) for f in fields(PersonRecord)}
    for name in _SET_FIELDS:
        values[name] = set(values[name])
    return PersonModel(**values, updated_at=_now())


class DirectoryRepository:
    """Reads and writes of the directory, in domain records."""

    # -- people ---------------------------------------------------------------------------------
    def get_person(self, userid: str, *, consistent: bool = False) -> PersonRecord | None:
        try:
            return to_record(PersonModel.get(userid, consistent_read=consistent))
        except DoesNotExist:
            return None

    def userid_of_card(self, card_no: str) -> str | None:
        """The member holding this campus card (``by_card_no``), if any."""
        for model in PersonModel.by_card_no.query(card_no, limit=1):
            return model.userid
        return None

    def userid_of_id_lookup(self, id_lookup: str) -> str | None:
        """The member whose ID number has this keyed hash (``by_id_lookup``), if any."""
        for model in PersonModel.by_id_lookup.query(id_lookup, limit=1):
            return model.userid
        return None

    def get_people(self, userids: Sequence[str]) -> dict[str, PersonRecord]:
        """People by userid (strongly consistent BatchGetItem, 100 keys a call); missing ones are absent."""
        if not userids:
            return {}
        keys = list(dict.fromkeys(userids))
        return {m.userid: to_record(m) for m in PersonModel.batch_get(keys, consistent_read=True)}

    def save_people(self, changes: Sequence[tuple[PersonRecord, int | None]]) -> set[str]:
        """Write people: ``(record, token version read)``, or ``None`` for someone who did not exist.

        A change to an existing person is a conditional PutItem (written only if their token
        version is still the one read), so a concurrent change, such as someone leaving, is never
        overwritten. Each row stands alone, so no transaction is needed; the puts go out from a
        small thread pool because they are I/O bound.

        New people go out in BatchWriteItem calls (25 a call), which take no condition: that is
        what makes onboarding a campus fast (a conditional put per person is 8x slower on the
        local stack). The one race left open: two writers creating the same new userid within the
        same request's few seconds, where the last write wins; both are creations at token
        version 0, so no session can be revived by it.

        Returns:
            The userids whose write lost a race with another change (nothing written for them).
        """
        def put(change: tuple[PersonRecord, int | None]) -> str | None:
            record, expected = change
            try:
                to_model(record).save(condition=_unchanged_since(expected))
            except PutError as exc:
                if exc.cause_response_code == "ConditionalCheckFailedException":
                    return record.userid
                raise
            return None

        _batch_put(PersonModel, (to_model(record) for record, expected in changes if expected is None))
        updates = [change for change in changes if change[1] is not None]
        lost: set[str] = set()
        if updates:
            with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(updates))) as pool:
                lost = {userid for userid in pool.map(put, updates) if userid}
        self.index_authorities(record for record, _ in changes if record.userid not in lost)
        return lost

    def commit_person_change(
        self,
        person: PersonRecord,
        *,
        expected_token_version: int,
        counselor_moves: Mapping[str, tuple[set[str], set[str]]],
        audit: AuditEntry,
        actor: str,
    ) -> None:
        """Write a changed person, their class counselor lists and the audit record atomically.

        Raises:
            Conflict: the person changed since ``expected_token_version`` was read.
            NotFound: a class in ``counselor_moves`` does not exist.
        """
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                transaction.save(to_model(person), condition=_unchanged_since(expected_token_version))
                for class_id, actions in _counselor_actions(counselor_moves).items():
                    transaction.update(ClassModel(class_id), actions=actions, condition=ClassModel.class_id.exists())
                transaction.save(audit_item(subject=audit.subject, actor=actor, action=audit.action,
                                            detail=audit.detail))
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                raise Conflict("This person was changed meanwhile; reload and try again.") from None
            if any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons):
                raise NotFound("A class in counselor_of does not exist.") from None
            raise
        self.index_authorities([person])

    def set_health_consent(self, userid: str, version: str | None) -> None:
        """Record (or, with ``None``, withdraw) a person's consent to the processing of their
        health data. Not an authority change: sessions carry on.

        Raises:
            NotFound: no such person.
        """
        action = PersonModel.health_consent.set(version) if version else PersonModel.health_consent.remove()
        try:
            PersonModel(userid).update(actions=[action], condition=PersonModel.userid.exists())
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise NotFound("No such person.") from None
            raise

    def roster(self, person_type: str) -> Iterator[PersonRecord]:
        """Everyone of a person type with their department, class and status (userid order),
        from the ``by_type`` index: a campus in a few pages, without reading whole records."""
        # Pages of 1000: each call stays well inside the read timeout (moto, which serves the
        # local stack, takes about a millisecond an item; DynamoDB far less).
        return (PersonRecord(userid=m.userid, name=m.name, person_type=person_type, department=m.department,
                             class_id=m.class_id, status=m.status)
                for m in PersonModel.by_type.query(person_type, page_size=1000))

    def members_of_department(self, dept_id: str) -> Iterator[PersonRecord]:
        return (to_record(m) for m in PersonModel.by_department.query(dept_id))

    def students_of_class(self, class_id: str) -> Iterator[PersonRecord]:
        return (to_record(m) for m in PersonModel.by_class.query(class_id))

    def userids_of_type(self, person_type: str) -> Iterator[str]:
        """Everyone of a person type (active or not: callers filter if they need to), in userid order."""
        return (m.userid for m in PersonModel.by_type.query(person_type))

    # -- departments and classes ----------------------------------------------------------------
    def put_departments(self, departments: Iterable[DepartmentModel]) -> int:
        return _batch_put(DepartmentModel, departments)

    def put_classes(self, classes: Iterable[ClassModel]) -> int:
        return _batch_put(ClassModel, classes)

    def put_people(self, people: Iterable[PersonModel]) -> int:
        """Bulk upsert of ready models (demo campus loading)."""
        models = list(people)
        self.index_authorities(to_record(m) for m in models)
        return _batch_put(PersonModel, models)

    # -- approval authorities -------------------------------------------------------------------
    def index_authorities(self, people: Iterable[PersonRecord]) -> None:
        """Record the authorities these people hold beyond their own userid (idempotent puts).

        Most people hold none, so this is usually no write at all.
        """
        _batch_put(AuthorityModel, (AuthorityModel(authority=key, userid=person.userid)
                                    for person in people if person.status == "active"
                                    for key in authorities(person.actor()) if not key.startswith("user:")))

    def holders(self, authority: str) -> list[str]:
        """The active people who hold ``authority`` now, in userid order."""
        if authority.startswith("user:"):
            person = self.get_person(authority[5:])
            return [person.userid] if person is not None and person.status == "active" else []
        candidates = [row.userid for row in AuthorityModel.query(authority)]
        people = self.get_people(candidates)
        return sorted(userid for userid, person in people.items()
                      if person.status == "active" and authority in authorities(person.actor()))

    def departments(self, dept_ids: Iterable[str]) -> dict[str, Department]:
        """Departments by id (strongly consistent BatchGetItem), as domain records; missing ones are absent."""
        keys = sorted(set(dept_ids))
        if not keys:
            return {}
        return {m.dept_id: Department(m.dept_id, m.name, m.kind)
                for m in DepartmentModel.batch_get(keys, consistent_read=True)}

    def save_departments(self, departments: Sequence[Department]) -> None:
        """Upsert departments given as domain records (BatchWriteItem)."""
        self.put_departments(DepartmentModel(dept_id=d.dept_id, name=d.name, kind=d.kind) for d in departments)

    def known_departments(self, dept_ids: Iterable[str]) -> set[str]:
        keys = sorted(set(dept_ids))
        return {d.dept_id for d in DepartmentModel.batch_get(keys)} if keys else set()

    def class_departments(self, class_ids: Iterable[str]) -> dict[str, str]:
        """``{class_id: department}`` for the classes that exist."""
        keys = sorted(set(class_ids))
        return {c.class_id: c.department for c in ClassModel.batch_get(keys)} if keys else {}

    def class_counselors(self, class_ids: Iterable[str]) -> dict[str, set[str]]:
        """``{class_id: counselor userids}`` for the classes that exist (BatchGetItem)."""
        keys = sorted(set(class_ids))
        return {c.class_id: set(c.counselors or ()) for c in ClassModel.batch_get(keys)} if keys else {}

    def get_class(self, class_id: str) -> ClassModel:
        try:
            return ClassModel.get(class_id)
        except DoesNotExist:
            raise NotFound(f"No class {class_id!r}.") from None

    def move_counselors(self, changes: Mapping[str, tuple[set[str], set[str]]]) -> None:
        """Add and remove counselors on classes: ``{class_id: (added userids, removed userids)}``.

        Idempotent (set ADD/DELETE), so a retried import repairs what an interrupted one left.
        """
        for class_id, actions in _counselor_actions(changes).items():
            try:
                ClassModel(class_id).update(actions=actions, condition=ClassModel.class_id.exists())
            except UpdateError as exc:
                if exc.cause_response_code == "ConditionalCheckFailedException":
                    raise NotFound(f"No class {class_id!r}.") from None
                raise


WRITE_THREADS = 16


def _unchanged_since(expected_token_version: int | None) -> Condition:
    if expected_token_version is None:
        return PersonModel.userid.does_not_exist()
    return PersonModel.token_version == expected_token_version


def _counselor_actions(changes: Mapping[str, tuple[set[str], set[str]]]) -> dict[str, list[Action]]:
    actions: dict[str, list[Action]] = {}
    for class_id, (added, removed) in changes.items():
        if added:
            actions.setdefault(class_id, []).append(ClassModel.counselors.add(added))
        if removed - added:
            actions.setdefault(class_id, []).append(ClassModel.counselors.delete(removed - added))
    return actions


def _batch_put(model: type[Model], items: Iterable[Model]) -> int:
    count = 0
    with model.batch_write() as batch:
        for item in items:
            batch.save(item)
            count += 1
    return count
