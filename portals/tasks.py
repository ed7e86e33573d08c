"""Celery tasks of portals: thin shells over services, so the beat schedule, the command and the
admin's *Sync now* run the same code."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="portals.tasks.sync_portals")
def sync_portals(concurrency: int | None = None) -> dict[str, int]:
    """Every portal brought in step with what the app declares (bitrix_widget/celeryconfig.py
    schedules it; ``PORTALS_SYNC_SECONDS``, hourly by default)."""
    from portals.sync import portals_sync_all

    return portals_sync_all() if concurrency is None else portals_sync_all(concurrency=concurrency)


# Options every Django command has, and the selection: not passed on to a queued portal's run.
_NOT_PASSED_ON = {
    "verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color", "skip_checks",
    "portal", "all_portals", "queue", "concurrency",
}


def queued_command_options(options: dict) -> dict:
    """The command's own options (placement, handler, dry_run, ...), as a task can carry them."""
    return {
        key: value for key, value in options.items()
        if key not in _NOT_PASSED_ON and isinstance(value, (str, int, float, bool, type(None)))
    }


@shared_task(name="portals.tasks.portal_command")
def portal_command(name: str, member_id: str, options: dict) -> str:
    """A fan-out command's work on one portal (``<command> --queue``): the same command, run
    here with ``--portal`` and the options it was given. Returns the portal's line."""
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    try:
        call_command(name, portal=[member_id], stdout=out, stderr=out, verbosity=1, **options)
    except CommandError as exc:  # the portal failed: its line says why, the task is done
        out.write(f"\n{exc}")
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return lines[0] if lines else ""
