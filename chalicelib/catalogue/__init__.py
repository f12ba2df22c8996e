"""The shipped catalogues, as data: the 48 items of the service hall and the resource wing.

``services.json`` holds one definition per item (see :mod:`chalicelib.domain.forms` for the
format); ``resources.json`` one resource per line (:mod:`chalicelib.domain.resources`): the 26
literature databases with their public hosts and the demo campus's own systems. Each is
validated the first time it is read; a bad entry fails loudly there, and the unit tests read both
on every run so they cannot ship broken.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TypeVar

from chalicelib.domain.forms import ServiceDefinition
from chalicelib.domain.resources import Resource

CATALOGUE_FILE = Path(__file__).with_name("services.json")
RESOURCES_FILE = Path(__file__).with_name("resources.json")


@functools.cache
def shipped_definitions() -> dict[str, ServiceDefinition]:
    """The shipped definitions by id.

    Raises:
        ValueError: the file holds an invalid definition or a duplicate id (names which).
    """
    return _load(CATALOGUE_FILE, ServiceDefinition)


@functools.cache
def shipped_resources() -> dict[str, Resource]:
    """The shipped resources by id.

    Raises:
        ValueError: the file holds an invalid resource or a duplicate id (names which).
    """
    return _load(RESOURCES_FILE, Resource)


_Item = TypeVar("_Item", ServiceDefinition, Resource)


def _load(path: Path, model: type[_Item]) -> dict[str, _Item]:
    items: dict[str, _Item] = {}
    for index, raw in enumerate(json.loads(path.read_text(encoding="utf-8"))):
        try:
            item = model.model_validate(raw)
        except ValueError as exc:
            raise ValueError(f"{path.name} item {index} ({raw.get('id')!r}): {exc}") from None
        if item.id in items:
            raise ValueError(f"{path.name}: duplicate id {item.id!r}")
        items[item.id] = item
    return items
