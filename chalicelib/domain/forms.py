"""Service definitions as data: the form fields, who may apply, the approval chain.

A definition is plain JSON (the shipped catalogue is ``chalicelib/catalogue/services.json``; the IT
centre adds versions through ``PUT /admin/services/{id}``). It is validated here when it is loaded
or changed, so a bad definition fails at load, not when a student files it.

Form data is validated against a definition by :func:`validate_form`, which reports every bad
field at once (``{"field": "reason"}``) and never echoes a value (it may be an ID number).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.domain.access import PERSON_TYPES, ROLES, Actor
from chalicelib.domain.identity import InvalidIdentity, normalise_id_number, normalise_mobile

SERVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"
FIELD_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
Category = Literal["epidemic", "teaching", "life"]
CATEGORY_NAMES = {"epidemic": "疫情防控", "teaching": "教学科研", "life": "生活服务"}
FieldType = Literal["text", "textarea", "number", "date", "datetime", "select", "multiselect", "bool", "idcard",
                    "phone", "location", "attachment", "person"]
Event = Literal["filed", "approved", "rejected", "returned", "withdrawn", "cancelled"]

MAX_TEXT = {"text": 200, "textarea": 2000}
MAX_NUMBER = 1e15  # beyond any quantity a form asks for, and exact as a float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Option(_Strict):
    value: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1, max_length=64)


class FieldSpec(_Strict):
    """One form field. Limits that do not apply to the type are refused at load."""

    name: str = Field(pattern=FIELD_NAME_PATTERN)
    label: str = Field(min_length=1, max_length=64)
    type: FieldType
    required: bool = False
    help: str = Field("", max_length=200)
    # text / textarea
    max_length: int | None = Field(None, ge=1, le=2000)
    # number
    min: float | None = None
    max: float | None = None
    integer: bool = False
    # select / multiselect
    options: tuple[Option, ...] = ()
    max_items: int | None = Field(None, ge=1, le=50)
    # bool: a pledge must be ticked
    must_be_true: bool = False
    # attachment
    max_files: int = Field(1, ge=1, le=10)
    content_types: tuple[str, ...] = ()
    # person: whose userid may be named
    person_types: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _limits_fit_type(self) -> FieldSpec:
        kind = self.type
        if self.max_length is not None and kind not in MAX_TEXT:
            raise ValueError(f"{self.name}: max_length applies to text and textarea only")
        if (self.min is not None or self.max is not None or self.integer) and kind != "number":
            raise ValueError(f"{self.name}: min/max/integer apply to number only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.name}: min is above max")
        if kind in ("select", "multiselect"):
            values = [o.value for o in self.options]
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{self.name}: a {kind} needs distinct options")
        elif kind == "location" and self.options:
            # A location's options are the provinces it may name (a fixed list counts cleanly).
            if len({o.value for o in self.options}) != len(self.options):
                raise ValueError(f"{self.name}: the provinces must be distinct")
        elif self.options:
            raise ValueError(f"{self.name}: options apply to select, multiselect and location only")
        if self.max_items and kind != "multiselect":
            raise ValueError(f"{self.name}: max_items applies to multiselect only")
        if self.must_be_true and kind != "bool":
            raise ValueError(f"{self.name}: must_be_true applies to bool only")
        if (self.content_types or self.max_files != 1) and kind != "attachment":
            raise ValueError(f"{self.name}: max_files/content_types apply to attachment only")
        if self.person_types and kind != "person":
            raise ValueError(f"{self.name}: person_types apply to person only")
        if not set(self.person_types) <= PERSON_TYPES:
            raise ValueError(f"{self.name}: unknown person type in {list(self.person_types)}")
        return self


Resolver = Annotated[str, Field(pattern=r"^(counselor_of_applicant|dept_head_of_applicant|role:[a-z_]+|"
                                        r"field:[a-z][a-z0-9_]{0,39})$")]


class Step(_Strict):
    """One approval step: who decides (a resolver) and, optionally, when the step applies."""

    name: str = Field(min_length=1, max_length=64)
    approver: Resolver
    when: str | None = Field(None, max_length=200, description="Condition on the form, e.g. 'days(start, end) > 3'")


class Audience(_Strict):
    """Who may apply: anyone of these person types, or anyone holding one of these roles."""

    types: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _known(self) -> Audience:
        if not self.types and not self.roles:
            raise ValueError("name at least one person type or role")
        if not set(self.types) <= PERSON_TYPES:
            raise ValueError(f"unknown person type in {list(self.types)}")
        if not set(self.roles) <= ROLES:
            raise ValueError(f"unknown role in {list(self.roles)}")
        return self

    def admits(self, actor: Actor) -> bool:
        return actor.person_type in self.types or bool(actor.roles & set(self.roles))


class CarbonCopy(_Strict):
    """Extra people told about some transitions (HR and the department head of a filing...)."""

    on: tuple[Event, ...] = Field(min_length=1)
    to: Resolver


class ServiceDefinition(_Strict):
    id: str = Field(pattern=SERVICE_ID_PATTERN)
    version: int = Field(1, ge=1)
    name: str = Field(min_length=1, max_length=64)
    category: Category
    description: str = Field("", max_length=500)
    applicants: Audience
    fields: tuple[FieldSpec, ...] = Field(min_length=1, max_length=40)
    steps: tuple[Step, ...] = Field((), max_length=8)
    cc: tuple[CarbonCopy, ...] = Field((), max_length=8)
    order: int = Field(0, ge=0)
    area: str | None = Field(None, pattern=r"^[a-z_]{2,32}$",
                             description="The area whose own endpoints serve this service, if any")
    filed_at: str | None = Field(None, pattern=r"^(GET|POST|PUT) /[a-z0-9/{}_-]+$", max_length=100,
                                 description="Where the H5 files it when it is not a plain application "
                                             "(its area's own endpoint, e.g. a booking)")

    @model_validator(mode="after")
    def _consistent(self) -> ServiceDefinition:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be distinct")
        by_name = {f.name: f for f in self.fields}
        for resolver in [s.approver for s in self.steps] + [c.to for c in self.cc]:
            if resolver.startswith("field:"):
                target = by_name.get(resolver[6:])
                if target is None or target.type != "person":
                    raise ValueError(f"{resolver}: must name a field of type person")
                if not target.person_types or not target.required:
                    # Otherwise an applicant could name any friend as their approver.
                    raise ValueError(f"{resolver}: the person field must be required and restrict person_types")
            if resolver.startswith("role:") and resolver[5:] not in ROLES:
                raise ValueError(f"{resolver}: unknown role")
        resolvers = [s.approver for s in self.steps] + [c.to for c in self.cc]
        if "counselor_of_applicant" in resolvers and (
                set(self.applicants.types) != {"student"} or self.applicants.roles):
            raise ValueError("counselor_of_applicant needs an audience of students only (others have no class)")
        for step in self.steps:
            if step.when is not None:
                try:
                    parse_condition(step.when, by_name)
                except ValueError as exc:
                    raise ValueError(f"step {step.name!r}: {exc}") from None
        return self

    def spans(self) -> list[tuple[str, str]]:
        """The (start, end) field pairs the conditions measure with ``days()``: end must not precede start."""
        found = re.findall(r"days\(\s*([a-z_][a-z0-9_]*)\s*,\s*([a-z_][a-z0-9_]*)\s*\)",
                           " ".join(s.when or "" for s in self.steps))
        return list(dict.fromkeys(found))

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    def applicable_steps(self, data: Mapping[str, Any]) -> list[tuple[int, Step]]:
        """The steps whose condition holds for ``data``, with their index in the definition."""
        by_name = {f.name: f for f in self.fields}
        return [(index, step) for index, step in enumerate(self.steps)
                if step.when is None or parse_condition(step.when, by_name)(data)]


# -- conditions ---------------------------------------------------------------------------------
# A condition is a tiny language, parsed here because evaluating definitions with ``eval`` would
# let whoever edits the catalogue run code in the API:
#     condition := comparison (("and" | "or") comparison)*      ("and" binds tighter)
#     comparison := operand ("<" | "<=" | ">" | ">=" | "==" | "!=") literal
#     operand := field name | days(<date field>, <date field>)
#     literal := number | 'text' | true | false
_TOKEN = re.compile(r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*')|(?P<op><=|>=|==|!=|<|>)|"
                    r"(?P<name>[a-z_][a-z0-9_]*)|(?P<punct>[(),]))")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}
Predicate = Callable[[Mapping[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot read the condition at {text[position:position + 10]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_condition(text: str, fields: Mapping[str, FieldSpec]) -> Predicate:
    """Compile a condition against the fields of a definition.

    Raises:
        ValueError: the condition is not in the language or names an unknown field.
    """
    tokens = _tokens(text)
    position = 0

    def take(kind: str | None = None, value: str | None = None) -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError("the condition ends too early")
        got_kind, got = tokens[position]
        if (kind and got_kind != kind) or (value and got != value):
            raise ValueError(f"unexpected {got!r} in the condition")
        position += 1
        return got

    def operand() -> Callable[[Mapping[str, Any]], Any]:
        name = take("name")
        if name == "days" and position < len(tokens) and tokens[position][1] == "(":
            take("punct", "(")
            first = take("name")
            take("punct", ",")
            second = take("name")
            take("punct", ")")
            for field_name in (first, second):
                if field_name not in fields or fields[field_name].type not in ("date", "datetime"):
                    raise ValueError(f"days() needs date or datetime fields, not {field_name!r}")
            return lambda data: days_between(data.get(first), data.get(second))
        if name not in fields:
            raise ValueError(f"unknown field {name!r} in the condition")
        return lambda data: data.get(name)

    def literal() -> Any:
        kind, value = tokens[position] if position < len(tokens) else ("", "")
        take()
        if kind == "num":
            return Decimal(value)
        if kind == "str":
            return value[1:-1]
        if value in ("true", "false"):
            return value == "true"
        raise ValueError(f"expected a number, 'text', true or false, not {value!r}")

    def comparison() -> Predicate:
        left = operand()
        op = take("op")
        right = literal()
        compare = _COMPARE[op]

        def holds(data: Mapping[str, Any]) -> bool:
            value = left(data)
            if value is None:
                return False
            if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                value = Decimal(str(value))
                if not isinstance(right, Decimal):
                    return False
            elif type(value) is not type(right):
                return False
            return compare(value, right)

        return holds

    def conjunction() -> Predicate:
        parts = [comparison()]
        while position < len(tokens) and tokens[position] == ("name", "and"):
            take()
            parts.append(comparison())
        return lambda data: all(p(data) for p in parts)

    alternatives = [conjunction()]
    while position < len(tokens) and tokens[position] == ("name", "or"):
        take()
        alternatives.append(conjunction())
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position][1]!r} in the condition")
    return lambda data: any(p(data) for p in alternatives)


def days_between(start: Any, end: Any) -> Decimal | None:
    """Length in days from ``start`` to ``end`` (dates count both ends: Mon-Wed is 3 days)."""
    try:
        if isinstance(start, str) and isinstance(end, str) and len(start) == 10 and len(end) == 10:
            return Decimal((date.fromisoformat(end) - date.fromisoformat(start)).days + 1)
        if isinstance(start, str) and isinstance(end, str):
            seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            return Decimal(str(seconds)) / Decimal(86400)
    except (TypeError, ValueError):
        return None
    return None


# -- form validation ----------------------------------------------------------------------------
class FormInvalid(ValueError):
    """The form breaks its definition; ``fields`` maps each bad field to a reason."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("the form failed validation")
        self.fields = dict(fields)


def validate_form(definition: ServiceDefinition, data: Mapping[str, Any],
                  check_attachment: Callable[[FieldSpec, str], str | None] | None = None,
                  check_person: Callable[[FieldSpec, str], str | None] | None = None) -> dict[str, Any]:
    """The cleaned form (normalised values, absent optional fields left out).

    ``check_attachment(field, key)`` and ``check_person(field, userid)`` answer a reason when an
    uploaded key or a named person is not acceptable (they need storage; this module does not).

    Raises:
        FormInvalid: every bad field with its reason; unknown fields are refused too.
    """
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name in data:
        if definition.field(name) is None:
            problems[name] = "not a field of this form"
    for spec in definition.fields:
        value = data.get(spec.name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "" or value == [] or value == {}:
            if spec.required:
                problems[spec.name] = "required"
            continue
        try:
            clean[spec.name] = _clean(spec, value)
        except ValueError as exc:
            problems[spec.name] = str(exc)
            continue
        if spec.type == "attachment" and check_attachment:
            for key in clean[spec.name]:
                reason = check_attachment(spec, key)
                if reason:
                    problems[spec.name] = reason
                    break
        if spec.type == "person" and check_person:
            reason = check_person(spec, clean[spec.name])
            if reason:
                problems[spec.name] = reason
    for first, second in definition.spans():
        if first in clean and second in clean and second not in problems and first not in problems:
            if (days_between(clean[first], clean[second]) or Decimal(0)) < 0:
                problems[second] = f"must not be before {first}"
    if problems:
        raise FormInvalid(problems)
    return clean


_PROVINCE_TEXT = 50


def _clean(spec: FieldSpec, value: Any) -> Any:
    kind = spec.type
    if kind in ("text", "textarea"):
        if not isinstance(value, str):
            raise ValueError("must be text")
        text = value.strip()
        limit = spec.max_length or MAX_TEXT[kind]
        if len(text) > limit:
            raise ValueError(f"at most {limit} characters")
        if kind == "text" and ("\n" in text or "\r" in text):
            raise ValueError("must be one line")
        return text
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if not -MAX_NUMBER <= value <= MAX_NUMBER:  # also refuses NaN and infinities
            raise ValueError(f"must be between -{MAX_NUMBER:g} and {MAX_NUMBER:g}")
        if spec.integer and not float(value).is_integer():
            raise ValueError("must be a whole number")
        if spec.min is not None and value < spec.min:
            raise ValueError(f"must be at least {spec.min:g}")
        if spec.max is not None and value > spec.max:
            raise ValueError(f"must be at most {spec.max:g}")
        return int(value) if spec.integer else value  # plain JSON numbers; conditions compare as Decimal
    if kind == "date":
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError("must be a date YYYY-MM-DD")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("must be a date YYYY-MM-DD") from None
    if kind == "datetime":
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ValueError("must be an ISO-8601 time with offset")
        return moment.isoformat()
    if kind == "select":
        if not isinstance(value, str) or value not in {o.value for o in spec.options}:
            raise ValueError("not one of the options")
        return value
    if kind == "multiselect":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of options")
        allowed = {o.value for o in spec.options}
        if not set(value) <= allowed:
            raise ValueError("not one of the options")
        if spec.max_items and len(value) > spec.max_items:
            raise ValueError(f"at most {spec.max_items} choices")
        return list(dict.fromkeys(value))
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        if spec.must_be_true and value is not True:
            raise ValueError("must be confirmed")
        return value
    if kind == "idcard":
        if not isinstance(value, str):
            raise ValueError("must be an ID number")
        try:
            return normalise_id_number(value)
        except InvalidIdentity as exc:
            raise ValueError(f"not a valid ID number: {exc}") from None
    if kind == "phone":
        try:
            return normalise_mobile(value) if isinstance(value, str) else normalise_mobile("")
        except InvalidIdentity:
            raise ValueError("not a mainland mobile number") from None
    if kind == "location":
        if not isinstance(value, dict) or set(value) - {"province", "city", "detail"}:
            raise ValueError("must be an object with province, city and an optional detail")
        place = {}
        for part, required, limit in (("province", True, _PROVINCE_TEXT), ("city", True, _PROVINCE_TEXT),
                                      ("detail", False, 200)):
            text = value.get(part)
            if text is None and not required:
                continue
            if not isinstance(text, str) or not text.strip() or len(text.strip()) > limit:
                raise ValueError(f"{part} must be text of 1 to {limit} characters")
            place[part] = text.strip()
        if spec.options and place["province"] not in {o.value for o in spec.options}:
            raise ValueError("province must be one of the listed provinces")
        return place
    if kind == "attachment":
        keys = value if isinstance(value, list) else None
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise ValueError("must be a list of upload keys")
        if len(keys) > spec.max_files:
            raise ValueError(f"at most {spec.max_files} files")
        return list(dict.fromkeys(keys))
    if kind == "person":
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", value.strip()):
            raise ValueError("must be a userid")
        return value.strip().lower()
    raise ValueError(f"unsupported field type {kind}")  # unreachable: the type is a Literal


def is_sensitive(spec: FieldSpec) -> bool:
    """Fields whose value is masked in lists and never logged (ID numbers, mobile numbers, places)."""
    return spec.type in ("idcard", "phone", "location")
