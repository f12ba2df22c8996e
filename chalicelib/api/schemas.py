"""Response shapes shared by several areas."""

from __future__ import annotations

from pydantic import BaseModel

from chalicelib.domain.directory import PersonRecord


class PersonSummary(BaseModel):
    """What someone in scope sees of a person: no card number, no ID number."""

    userid: str
    name: str
    person_type: str
    department: str
    class_id: str | None = None
    status: str

    @classmethod
    def of(cls, person: PersonRecord) -> PersonSummary:
        return cls(userid=person.userid, name=person.name, person_type=person.person_type,
                   department=person.department, class_id=person.class_id, status=person.status)


class Profile(PersonSummary):
    """A person's own profile (and the administrators' view): identifiers masked."""

    roles: list[str]
    counselor_of: list[str]
    dept_head_of: str | None = None
    card_no: str | None = None
    id_number_masked: str | None = None

    @classmethod
    def of(cls, person: PersonRecord) -> Profile:
        return cls(
            **PersonSummary.of(person).model_dump(),
            roles=sorted(person.roles),
            counselor_of=sorted(person.counselor_of),
            dept_head_of=person.dept_head_of,
            card_no=person.card_no,
            id_number_masked=person.id_number_masked,
        )
