"""Daily health reporting: the form, the abnormal rules, the campus day and who sees what.

Plain rules, no storage: :mod:`chalicelib.domain.health_desk` files and reads reports with them,
:mod:`chalicelib.domain.health_cases` turns abnormal ones into cases, and
:mod:`chalicelib.domain.health_stats` counts, reminds and summarises.

The form's field names are those of the ``daily-health-report`` service in the catalogue (the H5
renders the form from the catalogue and files it at ``POST /health/reports``); a unit test keeps
the two in step.

Health data is sensitive personal information (PIPL arts. 28-29): answers and reasons are stored
sealed, never logged, and every read of another person's report is audited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from chalicelib.domain.access import Actor, Role, Subject
from chalicelib.errors import Forbidden

Symptom = Literal["none", "fever", "cough", "fatigue", "sore_throat", "loss_of_taste_smell", "diarrhoea", "other"]
SYMPTOMS: tuple[str, ...] = Symptom.__args__  # type: ignore[attr-defined]
Whereabouts = Literal["on_campus", "jinan", "other_city"]
CodeColour = Literal["green", "yellow", "red"]
CaseStatus = Literal["observing", "isolated", "referred", "cleared"]

# Why a report is abnormal, in the order they are reported, with the H5's (and WeCom's) wording.
REASONS: dict[str, str] = {
    "temperature": "体温异常",
    "symptoms": "有症状",
    "health_code": "健康码非绿码",
    "close_contact": "14天内接触确诊或疑似病例",
    "risk_area": "14天内到过中高风险地区",
    "quarantined": "处于隔离或医学观察期",
}
MAX_VERSIONS = 10  # corrections of one day's report: beyond this the day is closed to changes


def _needed(message: str) -> PydanticCustomError:
    return PydanticCustomError("required_here", message)


class Place(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    province: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=20)
    detail: str | None = Field(None, max_length=200)


class HealthAnswers(BaseModel):
    """One day's answers, as filed (DOMAIN.md: daily health report).

    Conditional fields are checked per field so the H5 can point at the one to fix:
    ``symptom_note`` with symptom ``other``, ``current_city`` when away in another city,
    ``quarantine_place``/``quarantine_start`` when under quarantine.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    temperature: Annotated[Decimal, Field(ge=Decimal("35.0"), le=Decimal("42.0"), decimal_places=1,
                                          allow_inf_nan=False, description="°C, one decimal, 35.0-42.0")]
    symptoms: list[Symptom] = Field(min_length=1, max_length=len(SYMPTOMS),
                                    description="['none'] or the symptoms present")
    symptom_note: str | None = Field(None, max_length=200, validate_default=True)
    whereabouts: Whereabouts
    current_city: Place | None = Field(None, validate_default=True)
    health_code: CodeColour
    close_contact: StrictBool
    risk_area: StrictBool
    quarantined: StrictBool
    quarantine_place: str | None = Field(None, max_length=100, validate_default=True)
    quarantine_start: date | None = Field(None, validate_default=True)
    remarks: str | None = Field(None, max_length=500)
    pledge: Literal[True] = Field(description="The pledge that the answers are true: must be true")

    @field_validator("symptoms")
    @classmethod
    def _symptoms(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise PydanticCustomError("duplicate", "each symptom at most once")
        if "none" in value and len(value) > 1:
            raise PydanticCustomError("none_alone", "'none' cannot be combined with a symptom")
        return value

    @field_validator("symptom_note")
    @classmethod
    def _note(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "other" in (info.data.get("symptoms") or ()) and not value:
            raise _needed("describe the other symptom")
        return value or None

    @field_validator("current_city")
    @classmethod
    def _city(cls, value: Place | None, info: ValidationInfo) -> Place | None:
        if info.data.get("whereabouts") == "other_city" and value is None:
            raise _needed("give the province and city when in another city")
        return value

    @field_validator("quarantine_place")
    @classmethod
    def _place(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("quarantined") is True and not value:
            raise _needed("give the place of quarantine or observation")
        return value or None

    @field_validator("quarantine_start")
    @classmethod
    def _start(cls, value: date | None, info: ValidationInfo) -> date | None:
        if info.data.get("quarantined") is True and value is None:
            raise _needed("give the date quarantine or observation started")
        return value

    def stored(self) -> dict[str, Any]:
        """The answers as stored and returned (JSON types; the temperature as a number)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["temperature"] = float(self.temperature)
        return data


@dataclass(frozen=True)
class HealthRules:
    """What makes a report abnormal. Thresholds come from settings (``HEALTH_*``)."""

    fever_from: Decimal = Decimal("37.3")
    abnormal_codes: frozenset[str] = frozenset({"yellow", "red"})
    flags: frozenset[str] = frozenset({"close_contact", "risk_area", "quarantined"})

    def assess(self, answers: HealthAnswers) -> tuple[str, ...]:
        """The reasons ``answers`` are abnormal (empty: normal), in :data:`REASONS` order."""
        found = []
        if answers.temperature >= self.fever_from:
            found.append("temperature")
        if any(s != "none" for s in answers.symptoms):
            found.append("symptoms")
        if answers.health_code in self.abnormal_codes:
            found.append("health_code")
        found += [flag for flag in ("close_contact", "risk_area", "quarantined")
                  if flag in self.flags and getattr(answers, flag)]
        return tuple(found)


# -- the campus day -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CampusClock:
    """Calendar days and times of day counted in the campus time zone."""

    tz: ZoneInfo
    cutoff: time | None  # a day's report can be filed or corrected until this local time (None: midnight)

    def day(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def cutoff_of(self, day: date) -> datetime:
        if self.cutoff is None:
            return datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        return datetime.combine(day, self.cutoff, tzinfo=self.tz)

    @property
    def cutoff_text(self) -> str:
        return self.cutoff.strftime("%H:%M") if self.cutoff else "24:00"

    def is_open(self, now: datetime) -> bool:
        return now.astimezone(self.tz) < self.cutoff_of(self.day(now))

    def at(self, day: date, moment: time) -> datetime:
        return datetime.combine(day, moment, tzinfo=self.tz)


def parse_times(text: str) -> tuple[time, ...]:
    """``"08:00,14:00"`` -> times of day, sorted (settings of the reminder schedule)."""
    found = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        hours, _, minutes = part.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
            raise ValueError(f"{part!r} is not HH:MM")
        found.append(time(int(hours), int(minutes)))
    return tuple(sorted(set(found)))


def due_slots(now: datetime, clock: CampusClock, slots: Iterable[time], window: timedelta) -> list[tuple[date, time]]:
    """The slots of today whose time has come within ``window`` (a late or repeated run still
    catches a slot; one that long passed, say after a deploy at noon, is not sent)."""
    today = clock.day(now)
    return [(today, slot) for slot in slots if timedelta(0) <= now - clock.at(today, slot) < window]


# -- units: how counters are kept ---------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """The finest group the counters keep: a department's members of one type, and for students
    their class. Every dashboard is a sum over units, and every scope is a set of units."""

    department: str
    class_id: str | None
    person_type: str

    @property
    def key(self) -> str:
        return f"{self.department}#{self.class_id or '-'}#{self.person_type}"

    def __lt__(self, other: Unit) -> bool:  # units sort by their key (class_id may be None)
        return self.key < other.key

    @classmethod
    def of(cls, person: Any) -> Unit:
        class_id = person.class_id if person.person_type == "student" else None
        return cls(person.department, class_id, person.person_type)

    @classmethod
    def parse(cls, key: str) -> Unit:
        department, class_id, person_type = key.rsplit("#", 2)
        return cls(department, None if class_id == "-" else class_id, person_type)


# -- records as stored --------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredReport:
    """A report as stored: the answers sealed (the domain opens them)."""

    userid: str
    day: str
    version: int
    sealed: str
    abnormal: bool
    filed_at: str
    updated_at: str
    expires_at: datetime
    unit: Unit
    history: tuple[str, ...] = ()
    alert_pending: bool = False


@dataclass(frozen=True)
class StoredCase:
    case_id: str
    userid: str
    unit: Unit
    status: str
    opened_at: str
    updated_at: str
    reports: tuple[str, ...]
    sealed_reports: tuple[str, ...]
    events: tuple[str, ...]
    version: int
    expires_at: datetime  # kept as long as the reports it holds

    @property
    def is_open(self) -> bool:
        return self.status != "cleared"


# -- scope: whose figures and whose reports a caller sees ---------------------------------------
@dataclass(frozen=True)
class Grant:
    """A slice of the campus: everyone (no limits), or people of a type, a department, classes."""

    types: frozenset[str] = frozenset()
    department: str | None = None
    classes: frozenset[str] = frozenset()

    def covers(self, unit: Unit) -> bool:
        if self.types and unit.person_type not in self.types:
            return False
        if self.department is not None and unit.department != self.department:
            return False
        return not self.classes or unit.class_id in self.classes


@dataclass(frozen=True)
class HealthScope:
    """What a caller may see: ``people`` are grants over individuals' reports (and names),
    ``figures`` over aggregates. A leader has figures of everyone and nobody's reports."""

    people: tuple[Grant, ...] = ()
    figures: tuple[Grant, ...] = ()

    def sees_figures(self, unit: Unit) -> bool:
        return any(g.covers(unit) for g in self.figures)

    def sees_people(self, unit: Unit) -> bool:
        return any(g.covers(unit) for g in self.people)


def scope_of(actor: Actor) -> HealthScope:
    """The health scope of ``actor`` (DOMAIN.md roles; :mod:`chalicelib.domain.access` rules)."""
    people: list[Grant] = []
    if actor.has(Role.HOSPITAL):
        people.append(Grant())
    if actor.has(Role.HR):
        people.append(Grant(types=frozenset({"staff"})))
    if actor.has(Role.STUDENT_AFFAIRS):
        people.append(Grant(types=frozenset({"student"})))
    if actor.has(Role.DEPT_HEAD) and actor.dept_head_of:
        people.append(Grant(department=actor.dept_head_of))
    if actor.has(Role.COUNSELOR) and actor.counselor_of:
        people.append(Grant(types=frozenset({"student"}), classes=frozenset(actor.counselor_of)))
    figures = [Grant()] if actor.has(Role.LEADER) else []
    return HealthScope(people=tuple(people), figures=tuple(people + figures))


@dataclass(frozen=True)
class Filter:
    """A narrowing asked for in a query (``?department=&class=``)."""

    department: str | None = None
    class_id: str | None = None

    def keeps(self, unit: Unit) -> bool:
        return ((self.department is None or unit.department == self.department)
                and (self.class_id is None or unit.class_id == self.class_id))


def check_filter(grants: Sequence[Grant], wanted: Filter, class_department: str | None) -> None:
    """Refuse a filter that names a class or department outside ``grants``.

    ``class_department`` is the department of ``wanted.class_id`` (looked up by the caller).

    Raises:
        Forbidden: the class, or the department, is not in the caller's scope.
    """
    if wanted.class_id is not None:
        if class_department is None or not any(
                g.covers(Unit(class_department, wanted.class_id, "student")) for g in grants):
            raise Forbidden("That class is outside your scope.")
    if wanted.department is not None and not any(g.department in (None, wanted.department) for g in grants):
        raise Forbidden("That department is outside your scope.")


# -- alert circle -------------------------------------------------------------------------------
def alert_circle(subject: Subject) -> tuple[str, ...]:
    """The authorities told about a person's abnormal report and every event of their case.

    The school hospital always; for staff HR and their department head; for students student
    affairs and their class counselor; for third-party staff their department head.
    """
    circle = ["role:hospital"]
    if subject.person_type == "staff":
        circle += ["role:hr", f"dept_head:{subject.department}"]
    elif subject.person_type == "student":
        circle.append("role:student_affairs")
        if subject.class_id:
            circle.append(f"counselor:{subject.class_id}")
    else:
        circle.append(f"dept_head:{subject.department}")
    return tuple(circle)


def reason_labels(reasons: Iterable[str]) -> str:
    return "、".join(REASONS.get(r, r) for r in reasons)


@dataclass
class DayFigures:
    """Counts of one unit (or a sum of units) on a day. ``abnormal`` is None where it is hidden
    (a group too small to show a figures-only caller)."""

    expected: int = 0
    reported: int = 0
    abnormal: int | None = 0

    def add(self, other: DayFigures) -> None:
        self.expected += other.expected
        self.reported += other.reported
        self.abnormal = (self.abnormal or 0) + (other.abnormal or 0)

    @property
    def completion(self) -> float:
        return round(self.reported / self.expected, 4) if self.expected else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"expected": self.expected, "reported": self.reported, "missing": max(0, self.expected - self.reported),
                "completion_rate": self.completion, "abnormal": self.abnormal}


@dataclass
class Breakdown:
    """Figures summed over units, with the department and class breakdowns of the overview."""

    total: DayFigures = field(default_factory=DayFigures)
    departments: dict[str, DayFigures] = field(default_factory=dict)
    classes: dict[str, DayFigures] = field(default_factory=dict)

    def hide_small(self, min_cell: int) -> Breakdown:
        """A copy where departments and classes of fewer than ``min_cell`` expected people show no
        abnormal count (a leader must not be able to tell who it is)."""
        def hidden(figures: DayFigures) -> DayFigures:
            small = figures.expected < min_cell
            return DayFigures(figures.expected, figures.reported, None if small else figures.abnormal)

        return Breakdown(total=self.total, departments={d: hidden(f) for d, f in self.departments.items()},
                         classes={c: hidden(f) for c, f in self.classes.items()})

    def add(self, unit: Unit, figures: DayFigures) -> None:
        self.total.add(figures)
        self.departments.setdefault(unit.department, DayFigures()).add(figures)
        if unit.class_id:
            self.classes.setdefault(unit.class_id, DayFigures()).add(figures)


def sum_units(units: Mapping[Unit, DayFigures], keep: Any) -> Breakdown:
    result = Breakdown()
    for unit in sorted(units):
        if keep(unit):
            result.add(unit, units[unit])
    return result
