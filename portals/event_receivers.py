"""Business events (ONTASKUPDATE, ONOFFLINEEVENT, ...): portals/ proves them genuine, another app
receives them. The events app registers its receiver in its ``AppConfig.ready()``, so portals/
names no business event and imports nothing from the app that handles them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from portals.models import Portal


@dataclass(frozen=True)
class BusinessEvent:
    """A verified delivery: the portal it is for, and what Bitrix24 posted besides ``auth``
    (whose tokens belong to the acting user and are never passed on)."""

    portal: Portal
    name: str
    data: dict
    ts: str


Receive = Callable[[BusinessEvent], dict]

_receivers: list[tuple[Callable[[str], bool], Receive]] = []


def receiver_register(*, accepts: Callable[[str], bool], receive: Receive) -> None:
    """``receive(event)`` handles every event whose name ``accepts``; it answers a dict that is
    added to the 200 JSON answer, and must return fast (Bitrix24 throttles slow handlers)."""
    if (accepts, receive) not in _receivers:
        _receivers.append((accepts, receive))


def receiver_for(name: str) -> Receive | None:
    for accepts, receive in _receivers:
        if accepts(name):
            return receive
    return None
