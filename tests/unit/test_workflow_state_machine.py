"""The approval state machine under random chains, actors and actions (hypothesis, stateful).

A simple model says what should happen (who may act, which state follows); the real rules in
``chalicelib.domain.workflow`` must agree on every step, and after every step the invariants hold:
the status is one of the six, the history replays to it, and nobody but the current approver ever
moved a pending application forward.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chalicelib.domain.access import Actor
from chalicelib.domain.forms import ServiceDefinition
from chalicelib.domain.workflow import (
    Applicant,
    Application,
    act_as_applicant,
    decide,
    file_application,
    history_is_consistent,
    resolve_chain,
    resubmit,
)
from chalicelib.errors import Conflict, Forbidden

APPLICANT = Actor(userid="s001", person_type="student", department="cs", class_id="cs2001")
PEOPLE = {
    "s001": APPLICANT,
    "s002": Actor(userid="s002", person_type="student", department="cs", class_id="cs2001"),
    "fdy01": Actor(userid="fdy01", person_type="staff", department="cs", roles=frozenset({"counselor"}),
                   counselor_of=frozenset({"cs2001"})),
    "fdy02": Actor(userid="fdy02", person_type="staff", department="fl", roles=frozenset({"counselor"}),
                   counselor_of=frozenset({"fl2001"})),
    "dean01": Actor(userid="dean01", person_type="staff", department="cs", roles=frozenset({"dept_head"}),
                    dept_head_of="cs"),
    "xg01": Actor(userid="xg01", person_type="staff", department="xgb", roles=frozenset({"student_affairs"})),
    "hq01": Actor(userid="hq01", person_type="staff", department="hq", roles=frozenset({"logistics"})),
    "t001": Actor(userid="t001", person_type="staff", department="cs"),
}
RESOLVERS = ["counselor_of_applicant", "dept_head_of_applicant", "role:student_affairs", "role:logistics",
             "field:helper"]
HOLDS = {"counselor:cs2001": {"fdy01"}, "dept_head:cs": {"dean01"}, "role:student_affairs": {"xg01"},
         "role:logistics": {"hq01"}, "user:t001": {"t001"}}
EDGES = {(None, "pending"), (None, "approved"), ("pending", "pending"), ("pending", "approved"),
         ("pending", "rejected"), ("pending", "returned"), ("pending", "withdrawn"), ("returned", "withdrawn"),
         ("returned", "pending"), ("returned", "approved"), ("approved", "cancelled")}


def definition(resolvers: list[str], conditional: list[bool]) -> ServiceDefinition:
    return ServiceDefinition.model_validate({
        "id": "random-chain", "name": "随机", "category": "life", "applicants": {"types": ["student"]},
        "fields": [{"name": "days", "label": "天数", "type": "number", "required": True},
                   {"name": "helper", "label": "协办人", "type": "person", "required": True,
                    "person_types": ["staff"]}],
        "steps": [{"name": f"step {i}", "approver": r, **({"when": "days > 3"} if c else {})}
                  for i, (r, c) in enumerate(zip(resolvers, conditional))],
    })


class ApprovalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2026, 12, 1, tzinfo=timezone.utc)
        self.app: Application
        self.definition: ServiceDefinition

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now

    @initialize(resolvers=st.lists(st.sampled_from(RESOLVERS), max_size=4),
                conditional=st.lists(st.booleans(), min_size=4, max_size=4), days=st.integers(0, 10))
    def file(self, resolvers: list[str], conditional: list[bool], days: int) -> None:
        self.definition = definition(resolvers, conditional)
        data = {"days": days, "helper": "t001"}
        applicant = Applicant("s001", "student", "cs", "cs2001")
        chain = resolve_chain(self.definition, applicant, data)
        # The chain holds exactly the steps whose condition is true, in order
        expected = [r for r, c in zip(resolvers, conditional) if not c or days > 3]
        assert len(chain) == len(expected)
        self.app = file_application(self.definition, applicant, data, chain, self.tick())
        assert self.app.status == ("pending" if chain else "approved")

    @rule(who=st.sampled_from(sorted(PEOPLE)), decision=st.sampled_from(["approve", "reject", "return"]))
    def someone_decides(self, who: str, decision: str) -> None:
        before = self.app
        actor = PEOPLE[who]
        may = (before.status == "pending" and who != "s001"
               and who in HOLDS.get(before.chain[before.step or 0].authority, set()))
        try:
            after = decide(before, actor, decision, "", self.tick())  # type: ignore[arg-type]
        except (Conflict, Forbidden) as exc:
            assert not may, f"{who} was refused a decision they may take: {exc}"
            # nothing to decide is a conflict; a decision that is not theirs to take is forbidden
            assert isinstance(exc, Conflict if before.status != "pending" else Forbidden), exc
            return
        assert may, f"{who} decided {before.status} step {before.step} without being its approver"
        assert after.history[-1].step == before.step  # the history names the step that was decided
        expected = {"approve": "approved" if before.step == len(before.chain) - 1 else "pending",
                    "reject": "rejected", "return": "returned"}[decision]
        assert after.status == expected
        if expected == "pending":
            assert after.step == (before.step or 0) + 1
        self.app = after

    @rule(who=st.sampled_from(sorted(PEOPLE)), verb=st.sampled_from(["withdraw", "cancel"]))
    def someone_withdraws_or_cancels(self, who: str, verb: str) -> None:
        before = self.app
        allowed = {"withdraw": {"pending", "returned"}, "cancel": {"approved"}}[verb]
        may = who == "s001" and before.status in allowed
        try:
            self.app = act_as_applicant(before, PEOPLE[who], verb, "", self.tick())  # type: ignore[arg-type]
        except (Conflict, Forbidden) as exc:
            assert not may
            assert isinstance(exc, Forbidden if who != "s001" else Conflict), exc
            return
        assert may and self.app.status == ("withdrawn" if verb == "withdraw" else "cancelled")

    @rule(who=st.sampled_from(["s001", "s002", "fdy01"]), days=st.integers(0, 10))
    def someone_resubmits(self, who: str, days: int) -> None:
        before = self.app
        data = {"days": days, "helper": "t001"}
        chain = resolve_chain(self.definition, before.applicant, data)
        try:
            self.app = resubmit(before, PEOPLE[who], data, chain, self.tick())
        except (Conflict, Forbidden):
            assert not (who == "s001" and before.status == "returned")
            return
        assert who == "s001" and before.status == "returned"
        assert (self.app.status, self.app.step) == (("pending", 0) if chain else ("approved", None))

    @invariant()
    def history_replays_to_the_status(self) -> None:
        app = self.app
        assert app.status in {"pending", "approved", "rejected", "returned", "withdrawn", "cancelled"}
        assert history_is_consistent(app)
        assert all((t.from_status, t.to_status) in EDGES for t in app.history)
        assert (app.step is not None) == (app.status == "pending")
        assert [t.at for t in app.history] == sorted(t.at for t in app.history)

    @invariant()
    def only_approvers_moved_it_forward(self) -> None:
        for transition in self.app.history[1:]:
            if transition.verb in ("approve", "reject", "return"):
                # the decider held the authority of the step they decided, and was not the applicant
                assert transition.actor != "s001" and transition.actor in HOLDS[transition.authority or ""]


ApprovalMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
TestApprovalMachine = ApprovalMachine.TestCase
