"""Who may do what to whom: the one place object-level access rules live.

Every area asks :func:`can` (or :func:`require`) before it reads or changes another person's data.
Rules, from DOMAIN.md:

* everyone reads and edits their own records;
* a counselor reads the students of their assigned classes;
* a department head reads the members of their department;
* HR reads staff (profile, health, travel); student affairs reads students;
* the hospital reads health data and health cases of everyone;
* security reads people and their door records (tracing);
* a leader sees aggregates only, never an individual's records;
* the IT centre administers the directory but sees no health data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from chalicelib.errors import NotFound


class Role(str, Enum):
    COUNSELOR = "counselor"
    DEPT_HEAD = "dept_head"
    HR = "hr"
    HOSPITAL = "hospital"
    STUDENT_AFFAIRS = "student_affairs"
    SECURITY = "security"
    LOGISTICS = "logistics"
    PSYCH_CENTER = "psych_center"
    LEADER = "leader"
    IT_ADMIN = "it_admin"


ROLES = frozenset(role.value for role in Role)
PERSON_TYPES = frozenset({"staff", "student", "third_party"})


class Action(str, Enum):
    READ_PROFILE = "profile.read"  # name, department, class, roles, masked contacts
    ADMIN_PROFILE = "profile.admin"  # change roles, status, class; see the admin view
    READ_RECORDS = "records.read"  # leave, travel, applications of a person
    READ_HEALTH = "health.read"  # daily health reports and cases
    READ_DOOR_RECORDS = "door.read"  # gate passages (tracing)
    READ_STATISTICS = "statistics.read"  # aggregates, never individuals


@dataclass(frozen=True)
class Actor:
    """The authenticated caller, as the directory knows them now (not as a token claims)."""

    userid: str
    person_type: str
    department: str
    roles: frozenset[str] = frozenset()
    class_id: str | None = None
    counselor_of: frozenset[str] = frozenset()
    dept_head_of: str | None = None
    health_consent: str | None = None  # the version of the health-data consent given (PIPL art. 29)

    def has(self, role: Role) -> bool:
        return role.value in self.roles


@dataclass(frozen=True)
class Subject:
    """The person whose data is asked for."""

    userid: str
    person_type: str
    department: str
    class_id: str | None = None


@dataclass(frozen=True)
class _Grant:
    role: Role
    actions: frozenset[Action] = field(default_factory=frozenset)


def _in_scope(actor: Actor, role: Role, subject: Subject) -> bool:
    """Whether ``subject`` falls in the scope ``role`` gives ``actor``."""
    if role is Role.COUNSELOR:
        return subject.person_type == "student" and subject.class_id in actor.counselor_of
    if role is Role.DEPT_HEAD:
        return actor.dept_head_of is not None and subject.department == actor.dept_head_of
    if role is Role.HR:
        return subject.person_type == "staff"
    if role is Role.STUDENT_AFFAIRS:
        return subject.person_type == "student"
    return role in (Role.HOSPITAL, Role.SECURITY, Role.IT_ADMIN)  # campus-wide roles


_GRANTS: dict[Role, frozenset[Action]] = {
    Role.COUNSELOR: frozenset({Action.READ_PROFILE, Action.READ_RECORDS, Action.READ_HEALTH}),
    Role.DEPT_HEAD: frozenset({Action.READ_PROFILE, Action.READ_RECORDS, Action.READ_HEALTH}),
    Role.HR: frozenset({Action.READ_PROFILE, Action.READ_RECORDS, Action.READ_HEALTH}),
    Role.STUDENT_AFFAIRS: frozenset({Action.READ_PROFILE, Action.READ_RECORDS, Action.READ_HEALTH}),
    Role.HOSPITAL: frozenset({Action.READ_PROFILE, Action.READ_HEALTH}),
    Role.SECURITY: frozenset({Action.READ_PROFILE, Action.READ_DOOR_RECORDS}),
    Role.IT_ADMIN: frozenset({Action.READ_PROFILE, Action.ADMIN_PROFILE}),
}
_OWN = frozenset({Action.READ_PROFILE, Action.READ_RECORDS, Action.READ_HEALTH, Action.READ_DOOR_RECORDS})


def can(actor: Actor, action: Action, subject: Subject) -> bool:
    """Whether ``actor`` may perform ``action`` on ``subject``'s data."""
    if action is Action.READ_STATISTICS:
        return bool(actor.roles & {Role.LEADER.value, Role.HR.value, Role.STUDENT_AFFAIRS.value, Role.HOSPITAL.value})
    if actor.userid == subject.userid and action in _OWN:
        return True
    for role_name in actor.roles:
        try:
            role = Role(role_name)
        except ValueError:
            continue
        if action in _GRANTS.get(role, frozenset()) and _in_scope(actor, role, subject):
            return True
    return False


def require(actor: Actor, action: Action, subject: Subject) -> None:
    """Raise :class:`NotFound` unless ``actor`` may act on ``subject``.

    Not found rather than forbidden: a caller must not learn that a person or record exists
    outside their scope.
    """
    if not can(actor, action, subject):
        raise NotFound("No such person in your scope.")


def authorities(actor: Actor) -> frozenset[str]:
    """The approval authorities ``actor`` holds: what lets them decide a step of a workflow.

    ``user:<userid>`` always; ``role:<role>`` per role; ``counselor:<class>`` per class counselled
    and ``dept_head:<dept>`` for a department head (only with the matching role).
    """
    held = {f"user:{actor.userid}"} | {f"role:{role}" for role in actor.roles}
    if actor.has(Role.COUNSELOR):
        held |= {f"counselor:{class_id}" for class_id in actor.counselor_of}
    if actor.has(Role.DEPT_HEAD) and actor.dept_head_of:
        held.add(f"dept_head:{actor.dept_head_of}")
    return frozenset(held)


def scopes(actor: Actor) -> list[str]:
    """Human- and machine-readable scopes for ``GET /me`` (what the H5 shows in menus)."""
    result = ["self"]
    for role_name in sorted(actor.roles):
        if role_name == Role.COUNSELOR.value:
            result += [f"class:{c}" for c in sorted(actor.counselor_of)]
        elif role_name == Role.DEPT_HEAD.value and actor.dept_head_of:
            result.append(f"department:{actor.dept_head_of}")
        elif role_name == Role.HR.value:
            result.append("type:staff")
        elif role_name == Role.STUDENT_AFFAIRS.value:
            result.append("type:student")
        elif role_name in (Role.HOSPITAL.value, Role.SECURITY.value, Role.IT_ADMIN.value):
            result.append(f"campus:{role_name}")
        elif role_name == Role.LEADER.value:
            result.append("statistics")
        elif role_name in (Role.LOGISTICS.value, Role.PSYCH_CENTER.value):
            result.append(f"service:{role_name}")
    return result
