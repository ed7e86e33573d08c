"""Keeping each portal in step with what the app declares: its handlers and its subscription.

Bitrix24 drops an app's handlers on every update (protocol 2.2, 14.4), and ONAPPUPDATE may not
even be sent, so ``sync_portals`` (and the admin's *Sync now*) compares every portal with the
bind registry (``portals.binds``) and ``app.info``, and binds what is missing. Nothing is ever
unbound: a handler that is not ours is not ours to remove.
"""
from __future__ import annotations

import logging
from typing import Callable

from portals import binds, fanout
from portals.binding_state import binding_label, portal_record_bindings
from portals.bitrix import errors
from portals.fanout import PortalOutcome, outcome_failed
from portals.logging import scrub
from portals.models import Portal
from portals.operations import portal_admin_credential
from portals.services import commands_bind
from portals.subscription import portal_subscription_store, subscription_from_app_info
from portals.tokens import portal_batch, portal_mark_payment_required

logger = logging.getLogger(__name__)

READ_COMMANDS = {
    "app_info": ("app.info", {}),
    "placements": ("placement.get", {}),
    "events": ("event.get", {}),
}


def _rows(value) -> list[dict]:
    rows = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    return [row for row in rows if isinstance(row, dict)]


def portal_sync(*, portal: Portal, dry_run: bool = False, pace: Callable[[], None] | None = None) -> PortalOutcome:
    """Bring one portal in step, in at most two requests: one ``batch`` reads ``app.info``,
    ``placement.get`` and ``event.get``; the subscription is stored (an unpaid portal that
    answers is active again); a second ``batch`` binds whatever declared command is missing.
    ``dry_run`` reads, then binds and stores nothing.
    """
    pace = pace or (lambda: None)
    try:
        credential = portal_admin_credential(portal, allow_unpaid=True)
        declared = binds.bind_commands()
        pace()
        read = portal_batch(credential=credential, commands=READ_COMMANDS)
        for error in read.errors.values():
            raise error  # PAYMENT_REQUIRED for one command is the portal's state too
        subscription = subscription_from_app_info(read.results.get("app_info"))
        placements, events = _rows(read.results.get("placements")), _rows(read.results.get("events"))
        missing = {
            key: command for key, command in declared.items()
            if not binds.bind_command_present(command, placements=placements, events=events)
        }
        detail = subscription.describe()
        if dry_run:
            if portal.status == Portal.Status.PAYMENT_REQUIRED:
                detail += "; would be active again"
            if not missing:
                return PortalOutcome(portal, "in step", True, detail)
            return PortalOutcome(portal, "would bind", True, f"{_names(missing)}; {detail}")
        if portal_subscription_store(portal=portal, subscription=subscription):
            detail += "; active again"
        if not missing:
            portal_record_bindings(portal=portal, bound=declared)
            return PortalOutcome(portal, "in step", True, detail)
        pace()
        bind, _ = commands_bind(credential=credential, commands=missing)
        portal_record_bindings(portal=portal, bound=[k for k in declared if k not in bind.failed], missing=bind.failed)
    except errors.PaymentRequired as exc:
        portal_mark_payment_required(portal=portal)  # Bitrix24's answer, recorded as every command does
        return outcome_failed(portal, exc)
    except errors.NotConfigured:
        raise
    except Exception as exc:  # one portal's failure is its line, never the end of the run
        return outcome_failed(portal, exc)
    done = _names(bind.bound + bind.already_bound)
    if bind.failed:
        failures = "; ".join(f"{key}: {scrub(error)}" for key, error in bind.failed.items())
        return PortalOutcome(portal, "failed", False, f"bound {done or 'nothing'}; {failures}")
    return PortalOutcome(portal, "repaired", True, f"bound {done}; {detail}")


def _names(keys) -> str:
    """``placement_TASK_VIEW_TOP_PANEL`` -> ``placement TASK_VIEW_TOP_PANEL``, for an operator."""
    return ", ".join(binding_label(key) for key in keys)


def portals_sync_all(*, concurrency: int = fanout.DEFAULT_CONCURRENCY) -> dict[str, int]:
    """``sync_portals --all`` without a terminal: the periodic run (Celery beat, see
    ``portals.tasks``). Same selection, concurrency and pacing as the command; counts by status."""
    from collections import Counter

    selection = fanout.portals_select(select_all=True, include_payment_required=True)
    outcomes = fanout.run_across_portals(
        portals=selection.portals, work=lambda portal, pace: portal_sync(portal=portal, pace=pace),
        concurrency=concurrency,
    )
    counts = Counter(outcome.status for outcome in outcomes)
    counts["skipped"] += len(selection.skipped)
    for outcome in outcomes:
        if outcome.failed:
            logger.warning("sync_portals: %s [%s] %s: %s", outcome.portal.domain, outcome.portal.member_id,
                           outcome.status, outcome.detail)
    logger.info("sync_portals: %s portal(s): %s", len(outcomes) + len(selection.skipped), dict(counts))
    return dict(counts)
