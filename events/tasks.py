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
