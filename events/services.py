"""The inbox's writes: store a delivery once, process it with bounded retries, retry from the admin.

A handler may run more than once for one event (a retry, a worker killed mid-task), never twice
at the same time: a worker claims the row with a short conditional UPDATE (a lease), and no lock
is held while the handlers call Bitrix24.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from events import registry
from events.models import Event
from portals import metrics
from portals.logging import scrub
from portals.models import Portal

logger = logging.getLogger(__name__)

# A claim outlives the longest task (CELERY_TIME_LIMIT): a live worker is never doubled, a dead
# one's event is taken again by the redelivered message (same task id) or the requeue sweep.
LEASE = dt.timedelta(seconds=330)
RETRY_CAP_SECONDS = 3600.0
CLOCK_SLACK = dt.timedelta(seconds=5)


def object_id_of(data: object) -> str:
    """The id of the object an event is about: ``FIELDS_AFTER``/``FIELDS_BEFORE``/``FIELDS`` ``ID``
    (protocol 14.2; form-encoded, so strings, and ``undefined`` means nothing)."""
    if not isinstance(data, dict):
        return ""
    for key in ("FIELDS_AFTER", "FIELDS_BEFORE", "FIELDS"):
        fields = data.get(key)
        if isinstance(fields, dict):
            value = str(fields.get("ID", "")).strip()
            if value and value.lower() != "undefined":
                return value[:64]
    return ""


def event_store(
    *, portal: Portal, name: str, data: dict, delivery: str, source: str = Event.Source.ONLINE,
    object_id: str | None = None, enqueue_processing: bool = True,
) -> tuple[Event, bool]:
    """Write one delivery to the inbox and queue its processing; (event, created).

    The same delivery again (same portal, name, object and ``delivery``) is not stored twice,
    so it is processed once. The offline consumer processes its records itself
    (``enqueue_processing=False``): it must know the outcome to clear or flag each record.
    """
    from events.queue import enqueue
    from events.tasks import process_event

    fields = {
        "portal": portal,
        "name": name,
        "object_id": object_id_of(data) if object_id is None else object_id[:64],
        "delivery": (delivery or f"none:{uuid.uuid4().hex}")[:128],
    }
    try:
        with transaction.atomic():
            event = Event.objects.create(**fields, source=source, data=data if isinstance(data, dict) else {})
    except IntegrityError:
        return Event.objects.get(**fields), False
    metrics.events.labels("received").inc()
    if enqueue_processing:
        enqueue(process_event, event.pk)
    return event, True


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with jitter (so events that
    failed together, on one slow portal, do not all come back in the same second)."""
    base = settings.EVENTS_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1))
    return min(base, RETRY_CAP_SECONDS) * random.uniform(0.5, 1.0)


def event_claim(*, event_id: int, lock_id: str = "") -> Event | None:
    """Take the event for processing, or None when it is done, failed or held by another worker."""
    now = timezone.now()
    free = Q(locked_until__isnull=True) | Q(locked_until__lt=now)
    if lock_id:  # the same task again: the broker redelivered it after its worker died
        free |= Q(lock_id=lock_id)
    due = Q(next_attempt_at__lte=now + CLOCK_SLACK)  # a duplicate message never runs a retry early
    claimed = Event.objects.filter(free, due, pk=event_id, status=Event.Status.QUEUED).update(
        locked_until=now + LEASE, lock_id=lock_id or uuid.uuid4().hex, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    return Event.objects.select_related("portal").get(pk=event_id)


def event_process(*, event_id: int, lock_id: str = "", schedule_retry: bool = True) -> Event | None:
    """Run the event's handlers once; record done, a retry with backoff, or failed.

    ``schedule_retry=False``: a failed attempt leaves the event queued and due, for its caller
    to retry (the offline consumer retries through the portal's queue, ``error=1``)."""
    event = event_claim(event_id=event_id, lock_id=lock_id)
    if event is None:
        return None
    if event.portal.status == Portal.Status.UNINSTALLED:
        return _finish(event, status=Event.Status.DONE, outcome="skipped: the app is uninstalled from this portal")
    outcomes: list[str] = []
    try:
        for function in registry.handlers_for(event.name):
            outcome = function(event)
            if outcome:
                outcomes.append(str(outcome))
    except registry.PermanentFailure as exc:
        return _finish(event, status=Event.Status.FAILED, error=str(exc) or "permanent failure")
    except Exception as exc:
        return _failed_attempt(event, exc, schedule_retry=schedule_retry)
    return _finish(event, status=Event.Status.DONE, outcome="; ".join(outcomes) or "no handler had anything to do")


def _finish(event: Event, *, status: str, outcome: str = "", error: str = "") -> Event:
    now = timezone.now()
    Event.objects.filter(pk=event.pk).update(
        status=status, outcome=outcome[:2000], error=scrub(error)[:2000], processed_at=now,
        locked_until=None,
    )
    event.status, event.outcome, event.error, event.processed_at = status, outcome, error, now
    metrics.events.labels(status).inc()
    log = logger.info if status == Event.Status.DONE else logger.warning
    log("event %s %s on %s: %s", event.pk, event.name, event.portal.member_id, status)
    return event


def _failed_attempt(event: Event, exc: Exception, *, schedule_retry: bool = True) -> Event:
    from events.queue import enqueue
    from events.tasks import process_event

    error = scrub(f"{type(exc).__name__}: {exc}")
    if event.attempts >= settings.EVENTS_MAX_ATTEMPTS:
        return _finish(event, status=Event.Status.FAILED, error=f"after {event.attempts} attempts: {error}")
    delay = retry_delay(event.attempts) if schedule_retry else 0.0
    next_attempt = timezone.now() + dt.timedelta(seconds=delay)
    Event.objects.filter(pk=event.pk).update(
        error=error[:2000], next_attempt_at=next_attempt, locked_until=None, lock_id=""
    )
    event.error, event.next_attempt_at = error, next_attempt
    metrics.events.labels("retried").inc()
    logger.info("event %s %s attempt %s failed, retry in %.1f s: %s", event.pk, event.name, event.attempts, delay, error)
    if schedule_retry:
        enqueue(process_event, event.pk, countdown=delay)
    return event


def events_retry(*, event_ids) -> int:
    """The admin's Retry: failed (or stuck) events go back to the queue with a fresh budget."""
    from events.queue import enqueue
    from events.tasks import process_event

    ids = list(
        Event.objects.filter(pk__in=list(event_ids)).exclude(status=Event.Status.DONE).values_list("pk", flat=True)
    )
    Event.objects.filter(pk__in=ids).update(
        status=Event.Status.QUEUED, attempts=0, error="", next_attempt_at=timezone.now(), locked_until=None,
        lock_id="", processed_at=None,
    )
    for pk in ids:
        enqueue(process_event, pk)
    return len(ids)


def events_requeue_due(*, limit: int = 1000) -> int:
    """Queue again what no message stands for any more: events stored while the broker was
    down, retries whose message was lost, leases of dead workers that ran out."""
    from events.queue import enqueue
    from events.tasks import process_event

    now = timezone.now()
    stale = now - dt.timedelta(seconds=60)  # leave fresh ones to the message sent with them
    ids = list(Event.objects.due(now).filter(next_attempt_at__lte=stale).values_list("pk", flat=True)[:limit])
    for pk in ids:
        enqueue(process_event, pk)
    return len(ids)
