"""WeCom callbacks: URL verification, directory change events, and the nightly directory sync."""

from __future__ import annotations

from chalicelib.api.routing import Area

area = Area("wecom")
