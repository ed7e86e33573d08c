"""What portals/ hands over: a verified business event, stored and answered at once."""
from __future__ import annotations

from events import registry
from events.models import Event
from events.services import event_store
from portals.event_receivers import BusinessEvent

DOORBELL = "ONOFFLINEEVENT"


def accepts(name: str) -> bool:
    return name == DOORBELL or bool(registry.handlers_for(name))


def receive(delivery: BusinessEvent) -> dict:
    """Store the event; the answer waits for nothing else (Bitrix24 throttles slow handlers and
    never resends, protocol 14.4). A second delivery of the same event is answered the same."""
    event, created = event_store(
        portal=delivery.portal, name=delivery.name, data=delivery.data, delivery=delivery.ts,
        source=Event.Source.ONLINE,
    )
    return {"queued": created, "duplicate": not created}
