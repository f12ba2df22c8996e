"""Response shapes shared by several areas."""

from __future__ import annotations

import base64
import re

from pydantic import BaseModel, Field

from chalicelib.api.routing import RequestModel

from chalicelib.domain.directory import PersonRecord
from chalicelib.errors import Invalid


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


CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"  # base64url without padding
# An Idempotency-Key header: what a client sends once per submission so a retry is not a second one.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PageQuery(RequestModel):
    """Paging of lists: ``limit`` per page and the opaque ``next`` cursor of the previous page."""

    limit: int = Field(50, ge=1, le=200)
    next: str | None = Field(None, max_length=400, pattern=CURSOR_PATTERN,
                             description="Cursor from the previous page")

    def position(self) -> str | None:
        """The decoded cursor. Raises: Invalid when it is not one we handed out."""
        if self.next is None:
            return None
        try:
            return base64.urlsafe_b64decode(self.next + "=" * (-len(self.next) % 4)).decode("utf-8")
        except (ValueError, UnicodeError):
            raise Invalid("The cursor is not valid.", {"next": "not a cursor from a previous page"}) from None


def cursor(position: str | None) -> str | None:
    """The opaque form of a page position."""
    return base64.urlsafe_b64encode(position.encode("utf-8")).decode("ascii").rstrip("=") if position else None
