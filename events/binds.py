"""What the events app binds on every portal at install (a provider for portals.binds).

Each event some handler is registered for is bound online to /portals/events/, plus the doorbell
``ONOFFLINEEVENT`` that tells us the portal's offline queue has records (protocol 13.5).
"""
from __future__ import annotations

from events import registry
from events.inbox import DOORBELL
from portals import binds

# Seconds between two doorbells of one portal (protocol 13.5: the first rings at once).
DOORBELL_MIN_TIMEOUT = 5


def event_bind_commands() -> binds.BindCommands:
    handler = binds.public_url("portals:events")
    commands: binds.BindCommands = {}
    for name in registry.event_names():
        commands[f"event_{name}"] = ("event.bind", {"event": name, "handler": handler})
    commands[f"event_{DOORBELL}"] = (
        "event.bind", {"event": DOORBELL, "handler": handler, "options": {"minTimeout": DOORBELL_MIN_TIMEOUT}},
    )
    return commands
