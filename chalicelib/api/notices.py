"""The notices area of the service hall (being built)."""

from __future__ import annotations

from chalicelib.api.routing import Area

area = Area("notices")
