"""Storage of the suggestions area: the collected suggestions.

Access patterns and the keys that serve them (no Scan anywhere):

* a suggestion                              -> ``suggestions`` table, hash ``suggestion_id`` (the application id)
* a campaign's suggestions by filing time   -> GSI ``by_campaign`` (campaign, ``<filed_at>#<id>``)
* one topic of a campaign by filing time    -> GSI ``by_topic`` (``<campaign>#<topic>``, ``<filed_at>#<id>``)

Lists read newest first, the export oldest first; both continue from the sort key of the last row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName
from chalicelib.domain.suggestions import Suggestion


class ByCampaign(GlobalSecondaryIndex["SuggestionModel"]):
    class Meta:
        index_name = "by_campaign"
        projection = AllProjection()

    campaign = UnicodeAttribute(hash_key=True)
    filed_key = UnicodeAttribute(range_key=True)


class ByTopic(GlobalSecondaryIndex["SuggestionModel"]):
    class Meta:
        index_name = "by_topic"
        projection = AllProjection()

    campaign_topic = UnicodeAttribute(hash_key=True)
    filed_key = UnicodeAttribute(range_key=True)


class SuggestionModel(Model):
    class Meta(TableMeta):
        table_name = TableName("suggestions")

    suggestion_id = UnicodeAttribute(hash_key=True)
    campaign = UnicodeAttribute()
    campaign_topic = UnicodeAttribute()
    filed_key = UnicodeAttribute()
    record = UnicodeAttribute()  # JSON of the suggestion

    by_campaign = ByCampaign()
    by_topic = ByTopic()


MODELS: tuple[type[Model], ...] = (SuggestionModel,)


class SuggestionRepository:
    def create(self, suggestion: Suggestion) -> bool:
        """Store a suggestion unless it is there already; returns whether it was created."""
        row = SuggestionModel(
            suggestion_id=suggestion.suggestion_id, campaign=suggestion.campaign,
            campaign_topic=f"{suggestion.campaign}#{suggestion.topic}",
            filed_key=f"{suggestion.filed_at}#{suggestion.suggestion_id}",
            record=json.dumps(asdict(suggestion), ensure_ascii=False, separators=(",", ":")))
        try:
            row.save(condition=SuggestionModel.suggestion_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def delete(self, suggestion_id: str) -> None:
        """Remove a suggestion (nothing happens if it is not there)."""
        SuggestionModel(suggestion_id=suggestion_id).delete()

    def page(self, campaign: str, topic: str | None, limit: int,
             after: str | None) -> tuple[list[Suggestion], str | None]:
        """One page, newest first."""
        condition = SuggestionModel.filed_key < after if after else None
        rows = list(self._query(campaign, topic, condition, newest_first=True, limit=limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [_suggestion(row) for row in rows], (rows[-1].filed_key if more and rows else None)

    def in_order(self, campaign: str, topic: str | None, after: str | None) -> Iterator[tuple[str, Suggestion]]:
        """Every suggestion after ``after``, oldest first, read page by page as the caller consumes."""
        condition = SuggestionModel.filed_key > after if after else None
        for row in self._query(campaign, topic, condition, newest_first=False, limit=None):
            yield row.filed_key, _suggestion(row)

    @staticmethod
    def _query(campaign: str, topic: str | None, condition: Any, *, newest_first: bool,
               limit: int | None) -> Iterator[SuggestionModel]:
        if topic:
            return SuggestionModel.by_topic.query(f"{campaign}#{topic}", condition,
                                                  scan_index_forward=not newest_first, limit=limit)
        return SuggestionModel.by_campaign.query(campaign, condition, scan_index_forward=not newest_first,
                                                 limit=limit)


def _suggestion(row: SuggestionModel) -> Suggestion:
    return Suggestion(**json.loads(row.record))
