"""Storage of the repair area (being built)."""

from __future__ import annotations

from pynamodb.models import Model

MODELS: tuple[type[Model], ...] = ()
