"""Suggestions (建言"十四五"): filings collected for the planning office, listed and exported as CSV.

``five-year-plan-suggestions`` is a filing without approval steps: it is approved when it is
filed, and the hall hook copies it into the suggestions store (keyed by the application id, so a
repeated hook stores it once). An applicant who cancels their approved filing takes it back out.

Anonymity: the shipped form has no anonymity field, so shipped filings are attributed. A version
of the service with a ``bool`` field named ``anonymous`` (added by the IT centre) lets an author
opt out; an anonymous suggestion is stored *without* its author (not merely hidden), so neither
the list nor the export nor a later bug can reveal who wrote it. The optional mobile number on
the form is never copied: it stays with the author's own application.

The export is CSV for Excel: UTF-8 with a BOM (so Chinese opens correctly), campus-time stamps,
and cells that would start a formula neutralised (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol

from chalicelib.domain.forms import ServiceDefinition
from chalicelib.domain.workflow import Application, Transition, became_approved, was_cancelled

ANONYMOUS_FIELD = "anonymous"
TOPIC_FIELD = "topic"
DEFAULT_CAMPAIGN = "five-year-plan-suggestions"
BOM = "\ufeff"
CSV_HEADER = ("编号", "提交时间", "建言方向", "标题", "建议内容", "附件数", "建言人", "工号/学号", "部门")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Suggestion:
    suggestion_id: str  # a keyed pseudonym of the application id: an anonymous one cannot be traced back
    campaign: str  # the service id it was filed under
    topic: str
    topic_label: str
    title: str
    content: str
    filed_at: str  # UTC ISO-8601
    attachments: int
    anonymous: bool
    author: str | None = None  # None when anonymous
    author_name: str | None = None
    author_department: str | None = None  # the department's name at filing time


# -- when the hall tells us -----------------------------------------------------------------------
def is_anonymous(data: Mapping[str, Any]) -> bool:
    return data.get(ANONYMOUS_FIELD) is True


def topic_labels(definition: ServiceDefinition) -> dict[str, str]:
    """``{value: label}`` of the form's topic options (empty when the form has no topic select)."""
    for spec in definition.fields:
        if spec.name == TOPIC_FIELD:
            return {option.value: option.label for option in spec.options}
    return {}


def suggestion_from(app: Application, labels: Mapping[str, str], author_name: str | None,
                    department_name: str | None, suggestion_id: str | None = None) -> Suggestion:
    """The stored suggestion for an approved filing; an anonymous one carries no author at all."""
    data = app.data
    anonymous = is_anonymous(data)
    topic = str(data.get(TOPIC_FIELD) or "other")
    return Suggestion(
        suggestion_id=suggestion_id or app.app_id, campaign=app.service_id, topic=topic, topic_label=labels.get(topic, topic),
        title=str(data.get("title") or ""), content=str(data.get("content") or ""), filed_at=app.filed_at,
        attachments=len(data.get("attachments") or ()), anonymous=anonymous,
        author=None if anonymous else app.applicant.userid,
        author_name=None if anonymous else author_name,
        author_department=None if anonymous else (department_name or app.applicant.department),
    )


# -- CSV ------------------------------------------------------------------------------------------
def safe_cell(value: Any) -> str:
    """Text for a spreadsheet cell: ``None`` is blank, and text Excel would run as a formula is
    prefixed with an apostrophe (CSV injection: ``=HYPERLINK(...)`` in a suggestion)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(suggestion: Suggestion, tz: tzinfo) -> list[str]:
    filed = datetime.fromisoformat(suggestion.filed_at).astimezone(tz).isoformat(timespec="seconds")
    values = (suggestion.suggestion_id, filed, suggestion.topic_label, suggestion.title, suggestion.content,
              suggestion.attachments, suggestion.author_name, suggestion.author, suggestion.author_department)
    return [safe_cell(v) for v in values]


def render_csv(rows: Iterable[tuple[str, Suggestion]], tz: tzinfo, max_bytes: int) -> tuple[str, str | None]:
    """The CSV text (BOM, header, one line per suggestion) and where to continue, if anything is left.

    ``rows`` yields ``(position, suggestion)`` in export order; lines are added while the UTF-8
    size stays within ``max_bytes`` (a Lambda response is at most 6 MB). The returned position is
    that of the last suggestion written, or ``None`` when every row fitted.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    text = BOM + buffer.getvalue()
    size = len(text.encode("utf-8"))
    parts, last = [text], None
    for position, suggestion in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(csv_row(suggestion, tz))
        line = buffer.getvalue()
        line_size = len(line.encode("utf-8"))
        if size + line_size > max_bytes and last is not None:
            return "".join(parts), last
        parts.append(line)
        size += line_size
        last = position
    return "".join(parts), None


def export_filename(campaign: str, topic: str | None, now: datetime, tz: tzinfo) -> str:
    """``five-year-plan-suggestions-campus-20261201.csv``: ASCII, dated by the campus calendar."""
    return f"{campaign}{'-' + topic if topic else ''}-{now.astimezone(tz):%Y%m%d}.csv"


# -- the box: rules wired to their collaborators ---------------------------------------------------
class SuggestionStore(Protocol):
    def create(self, suggestion: Suggestion) -> bool: ...
    def delete(self, suggestion_id: str) -> None: ...
    def page(self, campaign: str, topic: str | None, limit: int,
             after: str | None) -> tuple[list[Suggestion], str | None]: ...
    def in_order(self, campaign: str, topic: str | None, after: str | None) -> Iterator[tuple[str, Suggestion]]: ...


class Directory(Protocol):
    def get_person(self, userid: str, *, consistent: bool = False) -> Any: ...
    def departments(self, dept_ids: Iterable[str]) -> Mapping[str, Any]: ...


@dataclass
class SuggestionBox:
    store: SuggestionStore
    directory: Directory
    definition_of: Callable[[str, int], ServiceDefinition]
    tz: tzinfo
    # application id -> suggestion id; keyed, so that neither readers of the collection nor anyone
    # holding an application id can link an anonymous suggestion to the filing (and its author)
    pseudonym: Callable[[str], str] = lambda app_id: app_id

    def on_transition(self, app: Application, transition: Transition) -> Suggestion | None:
        """Collect an approved filing or drop a cancelled one; returns what it collected now.

        Idempotent: the store refuses a second copy, and deleting twice is harmless.
        """
        if became_approved(app, transition):
            suggestion = self._suggestion(app)
            return suggestion if self.store.create(suggestion) else None
        if was_cancelled(app, transition):
            self.store.delete(self.pseudonym(app.app_id))
        return None

    def page(self, campaign: str, topic: str | None, limit: int,
             after: str | None) -> tuple[list[Suggestion], str | None]:
        """Newest first, optionally of one topic."""
        return self.store.page(campaign, topic, limit, after)

    def export(self, campaign: str, topic: str | None, after: str | None, max_bytes: int) -> tuple[str, str | None]:
        """The CSV of the suggestions, oldest first, from ``after`` on; and where the next file starts."""
        return render_csv(self.store.in_order(campaign, topic, after), self.tz, max_bytes)

    def _suggestion(self, app: Application) -> Suggestion:
        labels = topic_labels(self.definition_of(app.service_id, app.service_version))
        suggestion_id = self.pseudonym(app.app_id)
        if is_anonymous(app.data):
            return suggestion_from(app, labels, None, None, suggestion_id)
        person = self.directory.get_person(app.applicant.userid)
        department = self.directory.departments([app.applicant.department]).get(app.applicant.department)
        return suggestion_from(app, labels, getattr(person, "name", None), getattr(department, "name", None),
                               suggestion_id)
