"""Suggestions (建言"十四五"): filings collected by a hall hook, listed and exported for the planners.

Leaders, the IT centre and student affairs read them: ``GET /suggestions`` (newest first, by
topic) and ``GET /suggestions/export`` (CSV for Excel, oldest first). Anonymous suggestions carry
no author anywhere.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone

from chalice import Response
from pydantic import BaseModel, Field

from chalicelib.api import deps
from chalicelib.api.routing import Area, RequestModel
from chalicelib.api.schemas import CURSOR_PATTERN, PageQuery, cursor
from chalicelib.api.security import authenticated
from chalicelib.db.suggestions import SuggestionRepository
from chalicelib.domain.access import Actor, Role
from chalicelib.domain.forms import SERVICE_ID_PATTERN
from chalicelib.domain.hall import on_transition
from chalicelib.domain.suggestions import DEFAULT_CAMPAIGN, Suggestion, SuggestionBox, export_filename
from chalicelib.domain.workflow import Application, Transition
from chalicelib.settings import get_settings

area = Area("suggestions")
READERS = authenticated(Role.LEADER, Role.IT_ADMIN, Role.STUDENT_AFFAIRS)
TOPIC_PATTERN = r"^[a-z0-9_-]{1,64}$"


# -- shapes -------------------------------------------------------------------------------------
class SuggestionView(BaseModel):
    id: str = Field(description="The id of the filing")
    campaign: str
    topic: str
    topic_label: str
    title: str
    content: str
    filed_at: str
    attachments: int = Field(description="How many files came with it")
    anonymous: bool
    author: str | None = Field(description="Userid; null when anonymous")
    author_name: str | None
    author_department: str | None

    @classmethod
    def of(cls, s: Suggestion) -> SuggestionView:
        return cls(id=s.suggestion_id, campaign=s.campaign, topic=s.topic, topic_label=s.topic_label, title=s.title,
                   content=s.content, filed_at=s.filed_at, attachments=s.attachments, anonymous=s.anonymous,
                   author=s.author, author_name=s.author_name, author_department=s.author_department)


class SuggestionPage(BaseModel):
    items: list[SuggestionView]
    next: str | None


class SuggestionsQuery(PageQuery):
    topic: str | None = Field(None, pattern=TOPIC_PATTERN, description="Only this topic (the form's option value)")
    campaign: str = Field(DEFAULT_CAMPAIGN, pattern=SERVICE_ID_PATTERN, description="The collecting service")


class ExportQuery(RequestModel):
    topic: str | None = Field(None, pattern=TOPIC_PATTERN)
    campaign: str = Field(DEFAULT_CAMPAIGN, pattern=SERVICE_ID_PATTERN)
    next: str | None = Field(None, max_length=400, pattern=CURSOR_PATTERN,
                             description="X-Next-Cursor of the previous file")

    def position(self) -> str | None:
        return PageQuery(next=self.next).position()


# -- collaborators ------------------------------------------------------------------------------
@functools.cache
def _store() -> SuggestionRepository:
    return SuggestionRepository()


def box() -> SuggestionBox:
    return SuggestionBox(store=_store(), directory=deps.directory(), definition_of=deps.catalogue().version,
                         tz=get_settings().tz, pseudonym=_pseudonym)


def _pseudonym(app_id: str) -> str:
    return deps.protector().lookup_key("suggestion", app_id)[:32]


@on_transition("suggestions")
def collect_suggestion(app: Application, transition: Transition) -> None:
    """Approved (at filing): collect it once. Cancelled by its author: take it out."""
    box().on_transition(app, transition)


# -- routes -------------------------------------------------------------------------------------
@area.route("/suggestions", "GET", summary="Suggestions, newest first, optionally of one topic", policy=READERS,
            query=SuggestionsQuery, response=SuggestionPage)
def list_suggestions(query: SuggestionsQuery, actor: Actor) -> SuggestionPage:
    items, position = box().page(query.campaign, query.topic, query.limit, query.position())
    return SuggestionPage(items=[SuggestionView.of(s) for s in items], next=cursor(position))


@area.route("/suggestions/export", "GET", summary="Suggestions as CSV for Excel (UTF-8 with BOM), oldest first",
            policy=READERS, query=ExportQuery)
def export_suggestions(query: ExportQuery, actor: Actor) -> Response:
    """A file stays below a size limit; when more is left, ``X-Next-Cursor`` names where the next
    file starts (pass it as ``next``). Anonymous suggestions have blank author columns. Audited."""
    text, position = box().export(query.campaign, query.topic, query.position(),
                                  get_settings().suggestions_export_max_bytes)
    deps.audit().record(subject=f"suggestions#{query.campaign}", actor=actor.userid, action="suggestions.export",
                        detail={"topic": query.topic, "continued": query.next is not None})
    name = export_filename(query.campaign, query.topic, datetime.now(timezone.utc), get_settings().tz)
    return csv_response(text, name, cursor(position))


def csv_response(text: str, filename: str, next_cursor: str | None) -> Response:
    """A CSV download; ``X-Next-Cursor`` when the export continues in another file."""
    headers = {"Content-Type": "text/csv; charset=utf-8",
               "Content-Disposition": f'attachment; filename="{filename}"'}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return Response(body=text, status_code=200, headers=headers)
