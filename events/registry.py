"""Which code runs for which Bitrix24 event: the handler registry.

    import events

    @events.handler("ONTASKUPDATE")
    def remember_task(event):            # event: events.models.Event, with .portal and .data
        ...
        return "stored"                  # optional: recorded in the event's outcome

A handler runs on a worker, never in the request that delivered the event. It may run more than
once for one event (a retry after a failure, a worker killed mid-task), so it must be idempotent:
re-read the object from Bitrix24 rather than trusting what the event carried. Raising retries the
event with backoff; raising ``PermanentFailure`` ends it ``failed`` at once. Register handlers in
your app's ``AppConfig.ready()`` (import the module that holds them), as this app does.
"""
from __future__ import annotations

from typing import Callable

Handler = Callable[[object], "str | None"]

_handlers: dict[str, list[Handler]] = {}


class PermanentFailure(Exception):
    """The event can never succeed (malformed, refers to nothing): no retry."""


def handler(*names: str) -> Callable[[Handler], Handler]:
    """Decorator: run ``function(event)`` for every event of these names (upper-cased)."""
    if not names:
        raise TypeError("name at least one event, e.g. @events.handler('ONTASKUPDATE')")

    def register(function: Handler) -> Handler:
        for name in names:
            chain = _handlers.setdefault(name.strip().upper(), [])
            if function not in chain:  # a module imported twice registers once
                chain.append(function)
        return function

    return register


def handlers_for(name: str) -> list[Handler]:
    return list(_handlers.get(name.upper(), ()))


def event_names() -> list[str]:
    """Every event name some handler is registered for (what the inbox accepts)."""
    return sorted(name for name, chain in _handlers.items() if chain)


def unregister(name: str, function: Handler) -> None:
    """For tests that register a handler of their own."""
    chain = _handlers.get(name.upper(), [])
    if function in chain:
        chain.remove(function)
