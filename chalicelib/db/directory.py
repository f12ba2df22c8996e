"""The campus directory: departments, classes and people.

Access patterns and the keys that serve them (no Scan anywhere):

* a person by ``userid``                       -> ``people`` table, hash key
* members of a department, in userid order     -> ``people`` GSI ``by_department``
* students of a class, in userid order         -> ``people`` GSI ``by_class`` (sparse: students only)
* a department / a class (with its counselors) -> ``departments`` / ``classes`` tables, hash key
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

from pynamodb.attributes import (
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName


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
    counselors = ListAttribute(of=UnicodeAttribute, default=list)


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
    token_version = NumberAttribute(default=0)
    updated_at = UTCDateTimeAttribute(default=_now)

    by_department = ByDepartment()
    by_class = ByClass()


class DirectoryRepository:
    """Reads and bulk writes of the directory."""

    def put_departments(self, departments: Iterable[DepartmentModel]) -> int:
        return _batch_put(DepartmentModel, departments)

    def put_classes(self, classes: Iterable[ClassModel]) -> int:
        return _batch_put(ClassModel, classes)

    def put_people(self, people: Iterable[PersonModel]) -> int:
        """Upsert people in batches of 25 (DynamoDB's limit), retrying unprocessed items."""
        return _batch_put(PersonModel, people)

    def get_person(self, userid: str) -> PersonModel | None:
        try:
            return PersonModel.get(userid)
        except PersonModel.DoesNotExist:
            return None

    def members_of_department(self, dept_id: str) -> Iterator[PersonModel]:
        return PersonModel.by_department.query(dept_id)

    def students_of_class(self, class_id: str) -> Iterator[PersonModel]:
        return PersonModel.by_class.query(class_id)


def _batch_put(model: type[Model], items: Iterable[Model]) -> int:
    count = 0
    with model.batch_write() as batch:
        for item in items:
            batch.save(item)
            count += 1
    return count
