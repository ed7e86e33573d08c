"""What operators do to installed portals: bind, unbind, list, refresh, disable, enable.

The management commands and the admin actions call these functions and nothing else, so a
portal is treated the same way whichever tool an operator picked. Each ``portal_*`` function
handles one portal and returns a ``PortalOutcome`` instead of raising, so one bad portal never
stops a run; ``run_across_portals`` runs one of them over many portals at once.
"""
from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from django.db import connections
from django.db.models import Q
from django.utils import timezone

from placements import registry
from placements.models import Invocation
from portals.bitrix import errors
from portals.logging import scrub
from portals.models import Credential, Portal
from portals.services import handler_urls
from portals.tokens import ReauthRequired, credential_refresh, portal_call

DEFAULT_PLACEMENT = "TASK_VIEW_TOP_PANEL"
DEFAULT_CONCURRENCY = 32
# Bitrix24 drains 2 requests a second per portal (protocol 4.4): never go faster on average.
DEFAULT_PER_PORTAL_RATE = 2.0
DISABLED_DETAIL = "Disabled by operator"


class UnknownPortal(Exception):
    """A name given to --portal matches no portal (or several): an operator's typo, exit 2."""


class SelectionRequired(Exception):
    """Neither a portal nor --all was given to a command that needs one."""


@dataclass
class PortalOutcome:
    """What happened on one portal: ``status`` is a short word that the summary counts."""

    portal: Portal
    status: str
    ok: bool
    detail: str = ""
    rows: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return not self.ok and self.status != "skipped"


def _failed(portal: Portal, exc: BaseException) -> PortalOutcome:
    if isinstance(exc, ReauthRequired):
        status = "uninstalled" if exc.code == "UNINSTALLED" else "needs re-authorisation"
        return PortalOutcome(portal, status, False, exc.description or str(exc))
    if isinstance(exc, errors.BitrixError):
        return PortalOutcome(portal, "failed", False, scrub(str(exc)))
    return PortalOutcome(portal, "failed", False, scrub(f"{type(exc).__name__}: {exc}"))


# --- selection --------------------------------------------------------------------------------


@dataclass
class Selection:
    portals: list[Portal]
    skipped: list[Portal]  # portals --all leaves out on purpose, reported as "skipped"


def portal_by_name(*, name: str) -> Portal:
    """The portal a member_id or a domain names; UnknownPortal if none or ambiguous."""
    name = name.strip()
    portal = Portal.objects.filter(member_id=name).first()
    if portal is not None:
        return portal
    matches = list(Portal.objects.filter(domain__iexact=name.rstrip(".")).order_by("-updated_at")[:3])
    installed = [p for p in matches if p.status != Portal.Status.UNINSTALLED]
    if len(installed) == 1 or (len(matches) == 1 and not installed):
        return (installed or matches)[0]
    if not matches:
        raise UnknownPortal(f"unknown portal: {name!r} (give a member_id or a domain)")
    raise UnknownPortal(f"several portals have the domain {name!r}: give the member_id instead")


def portals_select(*, portal_names: Iterable[str] = (), select_all: bool = False) -> Selection:
    """The portals a command works on: the named ones (any status, each reported), or with
    ``select_all`` every active portal plus the ``needs_reauth`` ones as skipped lines."""
    names = [name for name in portal_names if name and name.strip()]
    if not names and not select_all:
        raise SelectionRequired("name a portal with --portal ID_OR_DOMAIN, or use --all")
    chosen: dict[int, Portal] = {}
    for name in names:
        portal = portal_by_name(name=name)
        chosen.setdefault(portal.pk, portal)
    skipped: list[Portal] = []
    if select_all:
        for portal in Portal.objects.installed().order_by("domain", "pk").iterator(chunk_size=2000):
            if portal.status == Portal.Status.NEEDS_REAUTH and portal.pk not in chosen:
                skipped.append(portal)
            else:
                chosen.setdefault(portal.pk, portal)
    return Selection(portals=list(chosen.values()), skipped=skipped)


# --- one portal -------------------------------------------------------------------------------


def _admin_credential(portal: Portal) -> Credential:
    """The installer's credential of a portal that may be called, or ReauthRequired.

    A portal marked needs_reauth is not called again: its refresh chain is dead until an
    administrator opens the app, and trying again would only repeat the refusal.
    """
    if portal.status == Portal.Status.UNINSTALLED:
        raise ReauthRequired("UNINSTALLED", portal.status_detail or "the app is uninstalled from this portal")
    if portal.status == Portal.Status.NEEDS_REAUTH:
        raise ReauthRequired(
            "NEEDS_REAUTH", portal.status_detail or "an administrator must open the app in Bitrix24 again"
        )
    credential = portal.admin_credential()
    if credential is None or not (credential.access_token or credential.refresh_token):
        raise ReauthRequired("NO_CREDENTIAL", "no administrator token is stored for this portal")
    credential.portal = portal  # one object, so a needs_reauth mark is seen by the caller too
    return credential


def placement_defaults(*, placement: str | None, handler: str | None, title: str | None) -> tuple[str, str, str]:
    """(code, handler URL, title) with the contract's defaults filled in."""
    code = (placement or DEFAULT_PLACEMENT).strip().upper()
    handler = handler or handler_urls()["placement"]
    known = registry.get(code)
    return code, handler, title if title is not None else (known.title if known else code)


def portal_bind_placement(*, portal: Portal, placement: str, handler: str, title: str = "") -> PortalOutcome:
    """``placement.bind``; "Handler already binded" is success (binding is idempotent)."""
    try:
        credential = _admin_credential(portal)
        portal_call(
            credential=credential,
            method="placement.bind",
            params={"PLACEMENT": placement, "HANDLER": handler, "TITLE": title},
        )
    except errors.AlreadyBound:
        return PortalOutcome(portal, "already bound", True)
    except errors.NotConfigured:
        raise
    except Exception as exc:  # one portal's failure is its line, never the end of the run
        return _failed(portal, exc)
    return PortalOutcome(portal, "bound", True)


def portal_unbind_placement(*, portal: Portal, placement: str, handler: str) -> PortalOutcome:
    """``placement.unbind`` with our HANDLER, so other handlers on the placement survive.

    Bitrix24's ``count`` is not a number of handlers (protocol 0.10): only ``> 0`` means removed.
    """
    try:
        credential = _admin_credential(portal)
        answer = portal_call(
            credential=credential,
            method="placement.unbind",
            params={"PLACEMENT": placement, "HANDLER": handler},
        )
    except errors.NotConfigured:
        raise
    except Exception as exc:
        return _failed(portal, exc)
    result = answer.get("result")
    count = result.get("count", 0) if isinstance(result, dict) else 0
    try:
        removed = int(count) > 0
    except (TypeError, ValueError):
        removed = False
    return PortalOutcome(portal, "removed" if removed else "was not bound", True)


def portal_list_placements(*, portal: Portal) -> PortalOutcome:
    """``placement.get``: our app's handlers on the portal, as rows of dicts."""
    try:
        credential = _admin_credential(portal)
        answer = portal_call(credential=credential, method="placement.get")
    except errors.NotConfigured:
        raise
    except Exception as exc:
        return _failed(portal, exc)
    rows = answer.get("result") or []
    rows = [row for row in (rows if isinstance(rows, list) else [rows]) if isinstance(row, dict)]
    return PortalOutcome(portal, f"{len(rows)} bound", True, rows=rows)


def idle_credentials(*, idle_days: int | None, now=None):
    """Credentials with a refresh token that were neither used nor refreshed for ``idle_days``."""
    queryset = Credential.objects.exclude(refresh_token="").exclude(refresh_token__isnull=True)
    if idle_days is None:
        return queryset
    cutoff = (now or timezone.now()) - dt.timedelta(days=idle_days)
    return queryset.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff),
        Q(refreshed_at__isnull=True) | Q(refreshed_at__lt=cutoff),
    )


def portal_refresh_tokens(
    *, portal: Portal, idle_days: int | None = None, pace: Callable[[], None] | None = None
) -> PortalOutcome:
    """Spend each (idle) refresh token of the portal once, so that none lapses unused.

    A refusal of the installer's token marks the portal needs_reauth (the token service does)
    and fails the line; a refusal of another user's token is only reported, since that user's
    next widget open brings a new pair.
    """
    try:
        _admin_credential(portal)
    except ReauthRequired as exc:
        return _failed(portal, exc)
    credentials = list(
        idle_credentials(idle_days=idle_days).filter(portal=portal).order_by("-is_admin", "user_id")
    )
    if not credentials:
        return PortalOutcome(portal, "nothing idle", True)
    refreshed, refused = 0, []
    for credential in credentials:
        credential.portal = portal
        if pace is not None:
            pace()
        try:
            credential_refresh(credential=credential, stale_access_token=credential.access_token)
        except ReauthRequired as exc:
            if credential.is_admin:
                return _failed(portal, exc)
            refused.append(str(credential.user_id))
        except errors.NotConfigured:
            raise
        except Exception as exc:
            return _failed(portal, exc)
        else:
            refreshed += 1
    detail = f"{refreshed} of {len(credentials)} credential(s)"
    if refused:
        detail += f"; refused for user(s) {', '.join(refused)}"
    return PortalOutcome(portal, "refreshed", True, detail)


def portal_disable(*, portal: Portal) -> PortalOutcome:
    """Stop serving the widget on a portal, reversibly: status ``uninstalled`` with the detail
    "Disabled by operator", tokens and bindings kept (``portal_enable`` undoes it)."""
    if portal.status == Portal.Status.UNINSTALLED:
        return PortalOutcome(portal, "already disabled or uninstalled", True)
    now = timezone.now()
    Portal.objects.filter(pk=portal.pk).update(
        status=Portal.Status.UNINSTALLED, status_detail=DISABLED_DETAIL, uninstalled_at=now, updated_at=now
    )
    portal.status, portal.status_detail, portal.uninstalled_at = Portal.Status.UNINSTALLED, DISABLED_DETAIL, now
    return PortalOutcome(portal, "disabled", True)


def portal_enable(*, portal: Portal) -> PortalOutcome:
    """Undo ``portal_disable``. A portal that Bitrix24 uninstalled stays uninstalled (its tokens
    are blanked; only a reinstall brings it back)."""
    if portal.status != Portal.Status.UNINSTALLED or portal.status_detail != DISABLED_DETAIL:
        return PortalOutcome(portal, "not disabled by an operator", False, "left as it is")
    now = timezone.now()
    Portal.objects.filter(pk=portal.pk).update(
        status=Portal.Status.ACTIVE, status_detail="", uninstalled_at=None, updated_at=now
    )
    portal.status, portal.status_detail, portal.uninstalled_at = Portal.Status.ACTIVE, "", None
    return PortalOutcome(portal, "enabled", True)


def invocations_prune(*, cutoff, batch_size: int, report=None) -> int:
    """Delete invocations created before ``cutoff``, one short DELETE (and transaction) per batch,
    so a table of millions is never locked for long; a LIMIT-ed subquery on the created_at index
    picks each batch."""
    total = 0
    while True:
        batch = Invocation.objects.filter(created_at__lt=cutoff).order_by().values("pk")[:batch_size]
        deleted, _ = Invocation.objects.filter(pk__in=batch).delete()
        total += deleted
        if deleted and report:
            report(f"deleted {deleted} (total {total})")
        if deleted < batch_size:
            return total


# --- many portals ------------------------------------------------------------------------------


class Pacer:
    """Keeps calls to one portal at least ``1 / rate`` seconds apart (the first goes at once)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._last: float | None = None

    def __call__(self) -> None:
        now = time.monotonic()
        if self._last is not None and self.interval:
            wait = self._last + self.interval - now
            if wait > 0:
                time.sleep(wait)
                now = time.monotonic()
        self._last = now


Work = Callable[[Portal, Pacer], PortalOutcome]


def _run_one(portal: Portal, work: Work, rate: float | None) -> PortalOutcome:
    try:
        return work(portal, Pacer(rate))
    except errors.NotConfigured:
        raise
    except Exception as exc:
        return _failed(portal, exc)


def run_across_portals(
    *,
    portals: Iterable[Portal],
    work: Work,
    concurrency: int = DEFAULT_CONCURRENCY,
    per_portal_rate: float | None = DEFAULT_PER_PORTAL_RATE,
    on_result: Callable[[PortalOutcome, int, int], None] | None = None,
) -> list[PortalOutcome]:
    """Run ``work(portal, pace)`` on every portal, at most ``concurrency`` at a time.

    A portal's calls are sequential within its task and spaced by ``pace()``, so no portal sees
    more than ``per_portal_rate`` requests a second; portals run side by side. ``on_result`` is
    called in the calling thread as each portal finishes. With ``concurrency`` 1 everything runs
    in the calling thread (the admin, and tests that hold a transaction open).
    """
    portals = list(portals)
    total = len(portals)
    outcomes: list[PortalOutcome] = []

    def record(outcome: PortalOutcome) -> None:
        outcomes.append(outcome)
        if on_result:
            on_result(outcome, len(outcomes), total)

    if concurrency <= 1 or total <= 1:
        for portal in portals:
            record(_run_one(portal, work, per_portal_rate))
        return outcomes
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for portal in portals:
        pending.put(portal)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def worker() -> None:
        # Each worker takes portals until none are left, on one database connection of its
        # own that it closes at the end (a connection per portal would cost a connect each).
        try:
            while not stop.is_set():
                try:
                    portal = pending.get_nowait()
                except queue.Empty:
                    return
                finished.put(_run_one(portal, work, per_portal_rate))
        except BaseException as exc:  # NotConfigured: the whole run is wrong, not one portal
            stop.set()
            finished.put(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, name=f"portal-{n}", daemon=True) for n in range(min(concurrency, total))
    ]
    for thread in threads:
        thread.start()
    try:
        while len(outcomes) < total:
            item = finished.get()
            if isinstance(item, BaseException):
                raise item
            record(item)
    finally:
        stop.set()  # on an error or Ctrl-C, workers finish the portal in hand and leave
        for thread in threads:
            thread.join()
    return outcomes
