"""The access module's edge cases (the role matrix itself is walked over HTTP in integration)."""

from chalicelib.domain.access import Action, Actor, Subject, can, scopes

STUDENT = Subject("s001", "student", "cs", "cs2001")


def actor(**kwargs):
    return Actor(**{"userid": "x", "person_type": "staff", "department": "cs", **kwargs})


def test_a_leader_sees_statistics_and_no_individual():
    leader = actor(roles=frozenset({"leader"}))
    assert can(leader, Action.READ_STATISTICS, STUDENT)
    assert not any(can(leader, action, STUDENT) for action in Action if action is not Action.READ_STATISTICS)


def test_it_admin_administers_people_but_never_reads_health():
    admin = actor(roles=frozenset({"it_admin"}))
    assert can(admin, Action.ADMIN_PROFILE, STUDENT)
    assert not can(admin, Action.READ_HEALTH, STUDENT)


def test_the_hospital_reads_health_but_not_other_records():
    hospital = actor(roles=frozenset({"hospital"}))
    assert can(hospital, Action.READ_HEALTH, STUDENT)
    assert not can(hospital, Action.READ_RECORDS, STUDENT)


def test_a_role_without_its_assignment_grants_nothing():
    assert not can(actor(roles=frozenset({"counselor"})), Action.READ_PROFILE, STUDENT)
    assert not can(actor(roles=frozenset({"dept_head"})), Action.READ_PROFILE, STUDENT)
    assert not can(actor(roles=frozenset({"made_up"})), Action.READ_PROFILE, STUDENT)


def test_everyone_reads_their_own_records_but_administers_nobody():
    me = Actor("s001", "student", "cs", class_id="cs2001")
    assert can(me, Action.READ_HEALTH, STUDENT)
    assert not can(me, Action.ADMIN_PROFILE, STUDENT)


def test_scopes_describe_the_assignments():
    counselor = actor(roles=frozenset({"counselor", "leader"}), counselor_of=frozenset({"cs2002", "cs2001"}))
    assert scopes(counselor) == ["self", "class:cs2001", "class:cs2002", "statistics"]
