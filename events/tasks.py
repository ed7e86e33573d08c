"""Celery tasks. Each is a thin shell over a service, so the in-process mode (no broker), the
commands and the admin run exactly the same code as the workers."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from portals import ratelimit


@shared_task(name="events.tasks.process_event", bind=True)
def process_event(self, event_id: int) -> None:
    from events.services import event_process

    with ratelimit.patience(settings.B24_RATE_MAX_WAIT_BACKGROUND):
        event_process(event_id=event_id, lock_id=(self.request.id or "") if self.request else "")


@shared_task(name="events.tasks.requeue_due")
def requeue_due() -> int:
    from events.services import events_requeue_due

    return events_requeue_due()


@shared_task(name="events.tasks.drain_offline", bind=True)
def drain_offline(self, portal_id: int) -> str:
    """One portal's offline queue (the doorbell, the sweep, ``drain_offline_events --queue``)."""
    from events.offline import offline_drain
    from events.queue import enqueue
    from portals.models import Portal

    portal = Portal.objects.filter(pk=portal_id).first()
    if portal is None or portal.status != Portal.Status.ACTIVE:
        return "skipped: the portal is not active"
    with ratelimit.patience(settings.B24_RATE_MAX_WAIT_BACKGROUND):
        outcome = offline_drain(portal=portal, lock_id=(self.request.id or "") if self.request else "")
    if outcome.more:
        enqueue(drain_offline, portal_id)
    return outcome.describe()


@shared_task(name="events.tasks.offline_sweep")
def offline_sweep() -> int:
    """Beat: a drain of every active portal's offline queue, each a task of its own, so the
    sweep spreads over every worker (what the doorbell missed, and the retries of failures)."""
    from events.queue import enqueue
    from portals.models import Portal

    count = 0
    for portal_id in Portal.objects.active().values_list("pk", flat=True).iterator(chunk_size=2000):
        enqueue(drain_offline, portal_id)
        count += 1
    return count
