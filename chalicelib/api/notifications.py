"""WeCom app messages: the notifications consumer and the outbox listing."""

from __future__ import annotations

from chalicelib.api.routing import Area

area = Area("notifications")
