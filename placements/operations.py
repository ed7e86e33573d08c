"""What operators do with our placements on a portal: bind, unbind, list; and pruning the
invocation log. The placement commands and the portal admin's bind actions call these.

Each ``portal_*`` function handles one portal and returns a ``PortalOutcome`` instead of
raising; ``portals.fanout.run_across_portals`` runs one of them over many portals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from django.utils.translation import gettext_lazy

from placements import registry
from placements.dashboard import days_shown, invocation_days_ensure
from placements.models import Invocation
from portals.binding_state import portal_record_bindings
from portals.binds import public_url
from portals.bitrix import errors
from portals.fanout import PortalOutcome, outcome_failed
from portals.models import Portal
from portals.operations import portal_admin_credential
from portals.tokens import portal_call

DEFAULT_PLACEMENT = "TASK_VIEW_TOP_PANEL"


def handler_url() -> str:
    """The one handler URL every placement is bound to (dispatch is on PLACEMENT)."""
    return public_url("placements:handler")


def placement_bind_commands() -> dict[str, tuple[str, dict]]:
    """What the install binds for us (``portals.binds`` provider): every served placement."""
    handler = handler_url()
    return {
        f"placement_{placement.code}": (
            "placement.bind", {"PLACEMENT": placement.code, "HANDLER": handler, "TITLE": placement.title}
        )
        for placement in registry.all_placements()
    }


def placement_features() -> list[tuple[str, str]]:
    """What the app's own page tells users (``portals.binds`` feature provider): each widget."""
    return [(gettext_lazy(placement.title), placement.where or placement.code) for placement in registry.all_placements()]


def invocations_purge_on_uninstall(*, portal: Portal, clean: bool, **_) -> None:
    """``portal_uninstalled`` receiver: Bitrix24's CLEAN=1 means "delete this portal's data"."""
    if clean:
        Invocation.objects.filter(portal=portal).delete()


def placement_defaults(*, placement: str | None, handler: str | None, title: str | None) -> tuple[str, str, str]:
    """(code, handler URL, title) with the contract's defaults filled in."""
    code = (placement or DEFAULT_PLACEMENT).strip().upper()
    handler = handler or handler_url()
    known = registry.get(code)
    return code, handler, title if title is not None else (known.title if known else code)


@dataclass(frozen=True)
class PlacementTargets:
    """What a bind or unbind run works on: (code, title) pairs and our handler URL."""

    placements: tuple[tuple[str, str], ...]
    handler: str

    @property
    def codes(self) -> str:
        return ", ".join(code for code, _ in self.placements)


def placement_targets(*, placement: str | None, handler: str | None, title: str | None) -> PlacementTargets:
    """The named placement, or every placement the app serves (B24_PLACEMENTS) when none is
    named: so a portal installed before a placement existed gets it from Bind widget or
    ``bind_placement --all`` like a new install does."""
    if placement:
        code, handler, title = placement_defaults(placement=placement, handler=handler, title=title)
        return PlacementTargets(((code, title),), handler)
    served = tuple((known.code, known.title) for known in registry.all_placements())
    return PlacementTargets(served or ((DEFAULT_PLACEMENT, DEFAULT_PLACEMENT),), handler or handler_url())


def _merged(portal: Portal, outcomes: list[tuple[str, PortalOutcome]]) -> PortalOutcome:
    """One line for a portal on which several placements were (un)bound."""
    if len(outcomes) == 1:
        return outcomes[0][1]
    failed = [outcome for _, outcome in outcomes if not outcome.ok]
    detail = "; ".join(
        f"{code}: {outcome.status}" + (f" ({outcome.detail})" if outcome.detail else "") for code, outcome in outcomes
    )
    if failed:
        return PortalOutcome(portal, failed[0].status, False, detail)
    statuses = [outcome.status for _, outcome in outcomes]
    changed = [status for status in statuses if status in ("bound", "removed")]
    return PortalOutcome(portal, changed[0] if changed else statuses[0], True, detail)


def _each_placement(
    *, portal: Portal, targets: PlacementTargets, pace: Callable[[], None] | None,
    work: Callable[[str, str], PortalOutcome],
) -> PortalOutcome:
    """``work(code, title)`` for each target, one call at a time (``pace`` between them)."""
    outcomes = []
    for code, title in targets.placements:
        if pace is not None:
            pace()
        outcome = work(code, title)
        outcomes.append((code, outcome))
        if outcome.status in ("uninstalled", "needs re-authorisation"):
            break  # the portal cannot be called at all: one line says so
    return _merged(portal, outcomes)


def portal_bind_placements(
    *, portal: Portal, targets: PlacementTargets, pace: Callable[[], None] | None = None
) -> PortalOutcome:
    return _each_placement(portal=portal, targets=targets, pace=pace, work=lambda code, title: portal_bind_placement(
        portal=portal, placement=code, handler=targets.handler, title=title
    ))


def portal_unbind_placements(
    *, portal: Portal, targets: PlacementTargets, pace: Callable[[], None] | None = None
) -> PortalOutcome:
    return _each_placement(portal=portal, targets=targets, pace=pace, work=lambda code, title: portal_unbind_placement(
        portal=portal, placement=code, handler=targets.handler
    ))


def portal_bind_placement(*, portal: Portal, placement: str, handler: str, title: str = "") -> PortalOutcome:
    """``placement.bind``; "Handler already binded" is success (binding is idempotent)."""
    try:
        credential = portal_admin_credential(portal)
        portal_call(
            credential=credential,
            method="placement.bind",
            params={"PLACEMENT": placement, "HANDLER": handler, "TITLE": title},
        )
    except errors.AlreadyBound:
        outcome = PortalOutcome(portal, "already bound", True)
    except errors.NotConfigured:
        raise
    except Exception as exc:  # one portal's failure is its line, never the end of the run
        outcome = outcome_failed(portal, exc)
    else:
        outcome = PortalOutcome(portal, "bound", True)
    _record_binding(outcome, placement=placement, bound=outcome.ok)
    return outcome


def _record_binding(outcome: PortalOutcome, *, placement: str, bound: bool) -> None:
    """Remember what the call showed (the admin's bound / not bound), unless it never reached
    Bitrix24 (a portal skipped for needing re-authorisation tells nothing about its handlers)."""
    if outcome.portal.status != Portal.Status.ACTIVE and not outcome.ok:
        return
    key = f"placement_{placement}"
    if bound:
        portal_record_bindings(portal=outcome.portal, bound=[key])
    else:
        portal_record_bindings(portal=outcome.portal, missing={key: outcome.detail or outcome.status})


def portal_unbind_placement(*, portal: Portal, placement: str, handler: str) -> PortalOutcome:
    """``placement.unbind`` with our HANDLER, so other handlers on the placement survive.

    Bitrix24's ``count`` is not a number of handlers (protocol 0.10): only ``> 0`` means removed.
    """
    try:
        credential = portal_admin_credential(portal)
        answer = portal_call(
            credential=credential,
            method="placement.unbind",
            params={"PLACEMENT": placement, "HANDLER": handler},
        )
    except errors.NotConfigured:
        raise
    except Exception as exc:
        return outcome_failed(portal, exc)
    result = answer.get("result")
    count = result.get("count", 0) if isinstance(result, dict) else 0
    try:
        removed = int(count) > 0
    except (TypeError, ValueError):
        removed = False
    outcome = PortalOutcome(portal, "removed" if removed else "was not bound", True)
    portal_record_bindings(portal=portal, missing={f"placement_{placement}": "unbound by an operator"})
    return outcome


def portal_list_placements(*, portal: Portal) -> PortalOutcome:
    """``placement.get``: our app's handlers on the portal, as rows of dicts."""
    try:
        credential = portal_admin_credential(portal)
        answer = portal_call(credential=credential, method="placement.get")
    except errors.NotConfigured:
        raise
    except Exception as exc:
        return outcome_failed(portal, exc)
    rows = answer.get("result") or []
    rows = [row for row in (rows if isinstance(rows, list) else [rows]) if isinstance(row, dict)]
    _record_listed(portal, rows)
    return PortalOutcome(portal, f"{len(rows)} bound", True, rows=rows)


def _record_listed(portal: Portal, rows: list[dict]) -> None:
    """What ``placement.get`` showed: each served placement is bound if our handler is there."""
    try:
        ours = handler_url().rstrip("/")
    except errors.NotConfigured:
        return
    present = {
        str(row.get("placement", "")).upper() for row in rows if str(row.get("handler", "")).rstrip("/") == ours
    }
    codes = [placement.code for placement in registry.all_placements()]
    portal_record_bindings(
        portal=portal,
        bound=[f"placement_{code}" for code in codes if code in present],
        missing={f"placement_{code}": "not in placement.get" for code in codes if code not in present},
    )


def invocations_prune(*, cutoff, batch_size: int, report=None) -> int:
    """Delete invocations created before ``cutoff``, one short DELETE (and transaction) per batch,
    so a table of millions is never locked for long; a LIMIT-ed subquery on the created_at index
    picks each batch. The days it deletes from are added up first (placements.dashboard), so
    the admin home's chart keeps them."""
    invocation_days_ensure(days=[day for day in days_shown() if day <= cutoff.date()])
    total = 0
    while True:
        batch = Invocation.objects.filter(created_at__lt=cutoff).order_by().values("pk")[:batch_size]
        deleted, _ = Invocation.objects.filter(pk__in=batch).delete()
        total += deleted
        if deleted and report:
            report(f"deleted {deleted} (total {total})")
        if deleted < batch_size:
            return total
