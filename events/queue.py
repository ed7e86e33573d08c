"""Where a task runs: on the Celery queue when CELERY_BROKER_URL is set, else in this process
right after the response (so ./scripts/dev needs no server besides itself).

Nothing depends on the broker accepting a message: the Event row is written first, and a
message lost on the way (broker down, worker killed) is put back by the ``requeue_due`` sweep.
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import transaction

from bitrix_widget.celery import publish

logger = logging.getLogger(__name__)

_request = threading.local()


def broker_configured() -> bool:
    return bool(settings.CELERY_BROKER_URL)


def enqueue(task, *args, countdown: float = 0.0) -> None:
    """Run the Celery ``task`` with ``args``: after the current transaction commits, on the
    queue; or, without a broker, after this request's response (at once outside a request)."""
    if broker_configured():
        transaction.on_commit(lambda: _publish(task, args, countdown))
    elif countdown > 0:
        timer = threading.Timer(countdown, _run_in_process, args=(task, args))
        timer.daemon = True
        timer.start()
    elif getattr(_request, "pending", None) is not None:
        _request.pending.append((task, args))
    else:  # a command, the admin after its response, a task run in-process: this connection
        _run_in_process(task, args)  # sees its own writes, so no need to wait for a commit


def _publish(task, args, countdown: float) -> None:
    try:
        publish(task, args, countdown=countdown)
    except Exception as exc:  # the row is stored; the requeue sweep sends it again later
        logger.warning("queue unavailable, %s left for the sweep: %s", task.name, type(exc).__name__)


def _run_in_process(task, args) -> None:
    try:
        task.run(*args)
    except Exception:
        logger.exception("in-process task %s failed", task.name)


# --- request boundaries (connected in EventsConfig.ready) -----------------------------------------


def request_started(**kwargs) -> None:
    _request.pending = []


def request_finished(**kwargs) -> None:
    """Run what the request queued, now that its response has been sent (and what those tasks
    queue in turn: the doorbell's drain)."""
    pending = getattr(_request, "pending", None) or []
    try:
        while pending:
            task, args = pending.pop(0)
            _run_in_process(task, args)
    finally:
        _request.pending = None
