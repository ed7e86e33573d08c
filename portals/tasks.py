"""Celery tasks of portals: thin shells over services, so the beat schedule, the command and the
admin's *Sync now* run the same code."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="portals.tasks.sync_portals")
def sync_portals() -> dict[str, int]:
    """Every portal brought in step with what the app declares (bitrix_widget/celeryconfig.py
    schedules it; ``PORTALS_SYNC_SECONDS``, hourly by default)."""
    from portals.sync import portals_sync_all

    return portals_sync_all()
