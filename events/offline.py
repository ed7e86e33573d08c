"""The offline-queue consumer (protocol 13.8): nothing a portal queued is lost, even in a crash.

Records are read with ``clear=0``, which reserves them under a ``process_id`` (``clear=1`` would
delete them before they are processed, and a crash would lose them). The ``process_id`` is stored
(``OfflineBatch``) before any record is processed, so a drain that dies mid-batch is resumed: the
next drain asks for that ``process_id`` again and gets what is still unsettled. Each record becomes
an ``Event`` (source ``offline``) processed by the same handlers as an online one; the queue holds
the latest state per object, so handlers re-read the object. What succeeded is cleared, what failed
is flagged with ``event.offline.error`` and read again later with ``error=1`` (with backoff).
The doorbell (ONOFFLINEEVENT), the periodic sweep and ``manage.py drain_offline_events`` all run
``offline_drain``.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from events import registry
from events.models import Event, OfflineBatch, OfflineState
from events.services import _finish, event_process, event_store, retry_delay
from portals.models import Portal
from portals.operations import portal_admin_credential
from portals.tokens import portal_call

logger = logging.getLogger(__name__)

PAGE = 50  # event.offline.get answers at most 50 records (13.3)
# A drain holds the portal for this long, renewed before each batch (a batch is at most 50
# re-reads, about 25 s at Bitrix24's 2 calls a second).
LEASE = dt.timedelta(seconds=120)
MAX_BATCHES = 5  # per run; a full last batch queues another run, so a task stays short


@dataclass
class DrainOutcome:
    read: int = 0
    done: int = 0
    flagged: int = 0  # event.offline.error: read again with error=1 later
    given_up: int = 0  # malformed, or failed for good: cleared, the Event says why
    resumed: int = 0
    busy: bool = False
    more: bool = False  # records are left for another run

    def describe(self) -> str:
        if self.busy:
            return "another drain of this portal is running"
        text = f"{self.read} record(s): {self.done} done, {self.flagged} flagged for retry, {self.given_up} failed"
        if self.resumed:
            text += f"; resumed {self.resumed} interrupted batch(es)"
        return text + ("; more queued" if self.more else "")


def offline_drain(*, portal: Portal, lock_id: str = "", max_batches: int = MAX_BATCHES) -> DrainOutcome:
    """Read and settle the portal's offline queue: interrupted batches first, then new records,
    then (when due) the records flagged as failed."""
    lock_id = lock_id or uuid.uuid4().hex
    state, _ = OfflineState.objects.get_or_create(portal=portal)
    outcome = DrainOutcome()
    if not _lease(state, lock_id):
        outcome.busy = True
        return outcome
    try:
        credential = portal_admin_credential(portal)
        for batch in OfflineBatch.objects.filter(portal=portal).order_by("id"):
            _lease(state, lock_id)
            records = _get(credential, process_id=batch.process_id)["events"]
            _settle(portal, credential, batch, records, outcome, lock_id)
            outcome.resumed += 1
        batches = 0
        while batches < max_batches:
            _lease(state, lock_id)
            batches += 1
            if _take(portal, credential, outcome, lock_id, error_pass=False) < PAGE:
                break
        else:
            outcome.more = True
        state.refresh_from_db()
        if outcome.flagged:  # just failed: retried by a later drain, after a backoff
            OfflineState.objects.filter(pk=state.pk).update(
                next_error_pass_at=timezone.now() + dt.timedelta(seconds=retry_delay(state.error_passes + 1))
            )
        elif not outcome.more and (state.next_error_pass_at is None or state.next_error_pass_at <= timezone.now()):
            _error_pass(portal, credential, state, lock_id, outcome)
        OfflineState.objects.filter(pk=state.pk).update(drained_at=timezone.now())
    finally:
        OfflineState.objects.filter(pk=state.pk, lock_id=lock_id).update(locked_until=None, lock_id="")
    logger.info("offline queue of %s: %s", portal.member_id, outcome.describe())
    return outcome


def _lease(state: OfflineState, lock_id: str) -> bool:
    """Take or renew the portal's drain lease (the same task id may take it back after its
    worker died: the broker redelivers the task with its id)."""
    now = timezone.now()
    free = Q(locked_until__isnull=True) | Q(locked_until__lt=now) | Q(lock_id=lock_id)
    return bool(OfflineState.objects.filter(free, pk=state.pk).update(locked_until=now + LEASE, lock_id=lock_id))


def _get(credential, *, process_id: str = "", error_pass: bool = False) -> dict:
    params = {"clear": 0, "limit": PAGE}  # never clear=1: a crash would lose what was read
    if process_id:
        params["process_id"] = process_id
    elif error_pass:
        params["error"] = 1
    answer = portal_call(credential=credential, method="event.offline.get", params=params)
    result = answer.get("result")
    if not isinstance(result, dict):
        return {"process_id": "", "events": []}
    records = result.get("events")
    return {
        "process_id": str(result.get("process_id") or ""),
        "events": [r for r in records if isinstance(r, dict)] if isinstance(records, list) else [],
    }


def _take(portal: Portal, credential, outcome: DrainOutcome, lock_id: str, *, error_pass: bool) -> int:
    """Reserve one batch, store its process_id, settle it; the number of records read."""
    answer = _get(credential, error_pass=error_pass)
    records = answer["events"]
    if not records or not answer["process_id"]:
        return 0
    batch, _ = OfflineBatch.objects.get_or_create(
        portal=portal, process_id=answer["process_id"][:128], defaults={"error_pass": error_pass}
    )
    _settle(portal, credential, batch, records, outcome, lock_id)
    return len(records)


def _error_pass(portal: Portal, credential, state: OfflineState, lock_id: str, outcome: DrainOutcome) -> None:
    flagged_before = outcome.flagged
    read = 0
    for _ in range(MAX_BATCHES):
        _lease(state, lock_id)
        count = _take(portal, credential, outcome, lock_id, error_pass=True)
        read += count
        if count < PAGE:
            break
    if outcome.flagged > flagged_before:  # still failing: wait longer before the next pass
        passes = state.error_passes + 1
        OfflineState.objects.filter(pk=state.pk).update(
            error_passes=passes, next_error_pass_at=timezone.now() + dt.timedelta(seconds=retry_delay(passes))
        )
    elif read or state.error_passes:
        OfflineState.objects.filter(pk=state.pk).update(error_passes=0, next_error_pass_at=None)


def _settle(
    portal: Portal, credential, batch: OfflineBatch, records: list[dict], outcome: DrainOutcome, lock_id: str
) -> None:
    """Process each record, then clear the settled ones and flag the failed ones, then forget the
    batch. Until the batch row is deleted, a crash means: resume it."""
    settled, flagged = [], []
    for record in records:
        outcome.read += 1
        verdict = _record_process(portal, record, lock_id)
        if verdict == "done":
            outcome.done += 1
            settled.append(str(record.get("ID", "")))
        elif verdict == "failed":
            outcome.given_up += 1
            settled.append(str(record.get("ID", "")))
        else:
            outcome.flagged += 1
            flagged.append(str(record.get("MESSAGE_ID", "")))
    settled = [record_id for record_id in settled if record_id]
    flagged = [message_id for message_id in flagged if message_id]
    if settled:
        portal_call(credential=credential, method="event.offline.clear",
                    params={"process_id": batch.process_id, "id": settled})
    if flagged:
        portal_call(credential=credential, method="event.offline.error",
                    params={"process_id": batch.process_id, "message_id": flagged})
    batch.delete()
    # Pending flagged records in an error batch go back to the flagged set; a new drain may read
    # them again with error=1 once their backoff is over.


def _record_process(portal: Portal, record: dict, lock_id: str) -> str:
    """One record: "done", "failed" (clear it: it can never succeed) or "retry" (flag it)."""
    name = str(record.get("EVENT_NAME") or "").strip().upper()[:64]
    delivery = f"offline:{str(record.get('ID', ''))[:40]}:{str(record.get('TIMESTAMP_X', ''))[:40]}"
    data = record.get("EVENT_DATA")
    event, created = event_store(
        portal=portal, name=name or "UNKNOWN", data=data if isinstance(data, dict) else {},
        delivery=delivery, source=Event.Source.OFFLINE, enqueue_processing=False,
    )
    if event.status == Event.Status.DONE:
        return "done"  # processed before a crash, or by an earlier read of the same record
    if event.status == Event.Status.FAILED:
        return "failed"
    if not name or not registry.handlers_for(name):
        _finish(event, status=Event.Status.FAILED, error=f"no handler for the event {name or '(unnamed)'!r}")
        return "failed"
    if not isinstance(data, dict):  # EVENT_DATA may be false (13.3): nothing names the object
        _finish(event, status=Event.Status.FAILED,
                error=f"malformed offline record {record.get('ID')!r}: EVENT_DATA is {str(data)[:20]!r}, no object named")
        return "failed"
    # The drain's own id: a drain redelivered after its worker died takes back the record it held.
    processed = event_process(event_id=event.pk, lock_id=lock_id, schedule_retry=False)
    if processed is None:
        return "retry"  # held by another worker right now: read it again later
    if processed.status == Event.Status.DONE:
        return "done"
    return "failed" if processed.status == Event.Status.FAILED else "retry"
