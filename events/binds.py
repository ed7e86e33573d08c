"""What the events app binds on every portal at install (a provider for portals.binds).

Each event some handler is registered for is bound twice: online to /portals/events/ (at once,
but lost if we miss it), and offline (``event_type=offline``, no handler: the portal keeps a record
until we clear it, protocol 13.2); plus the doorbell ``ONOFFLINEEVENT`` that tells us the offline
queue has records (13.5). Offline binding is for administrators: install runs as the installer.
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
        if name == DOORBELL:
            continue
        commands[f"event_{name}"] = ("event.bind", {"event": name, "handler": handler})
        commands[f"offline_{name}"] = ("event.bind", {"event": name, "event_type": "offline"})
    commands[f"event_{DOORBELL}"] = (
        "event.bind", {"event": DOORBELL, "handler": handler, "options": {"minTimeout": DOORBELL_MIN_TIMEOUT}},
    )
    return commands
