"""Work across many portals: which portals a command names, one outcome per portal, pacing,
and the runner that fans one portal's work out over a bounded number of threads.

Each piece of work handles one portal and returns a ``PortalOutcome`` instead of raising, so one
bad portal never stops a run. The work itself lives with its app: token and disable operations
in ``portals.operations``, placement operations in ``placements.operations``.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from django.db import connections

from portals.bitrix import errors
from portals.failures import PAYMENT_REQUIRED, failure_line, failure_remedy
from portals.models import Portal

DEFAULT_CONCURRENCY = 32
# Bitrix24 drains 2 requests a second per portal (protocol 4.4): never go faster on average.
DEFAULT_PER_PORTAL_RATE = 2.0


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
    remedy: str = ""  # what an operator does about a failure (the command's recap prints it)

    @property
    def failed(self) -> bool:
        return not self.ok and self.status not in SKIPPED_STATUSES

    @property
    def skipped(self) -> bool:
        return not self.ok and self.status in SKIPPED_STATUSES


# Not done, but not a failure either (exit status 0): the portal is in a known state that an
# operator cannot fix by running the command again.
SKIPPED_STATUSES = frozenset({"skipped", PAYMENT_REQUIRED})


def outcome_failed(portal: Portal, exc: BaseException) -> PortalOutcome:
    """The line of a portal whose work raised: re-authorisation needed, or a scrubbed error."""
    status, detail = failure_line(exc)
    return PortalOutcome(portal, status, False, detail, remedy=failure_remedy(exc))


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


def portals_select(
    *, portal_names: Iterable[str] = (), select_all: bool = False, include_payment_required: bool = False
) -> Selection:
    """The portals a command works on: the named ones (any status, each reported), or with
    ``select_all`` every active portal plus the ``needs_reauth`` and ``payment_required`` ones as
    skipped lines (``include_payment_required``: worked on, for sync_portals)."""
    names = [name for name in portal_names if name and name.strip()]
    if not names and not select_all:
        raise SelectionRequired("name a portal with --portal ID_OR_DOMAIN, or use --all")
    chosen: dict[int, Portal] = {}
    for name in names:
        portal = portal_by_name(name=name)
        chosen.setdefault(portal.pk, portal)
    skipped: list[Portal] = []
    if select_all:
        left_out = {Portal.Status.NEEDS_REAUTH}
        if not include_payment_required:
            left_out.add(Portal.Status.PAYMENT_REQUIRED)
        for portal in Portal.objects.served().order_by("domain", "pk").iterator(chunk_size=2000):
            if portal.status in left_out and portal.pk not in chosen:
                skipped.append(portal)
            else:
                chosen.setdefault(portal.pk, portal)
    return Selection(portals=list(chosen.values()), skipped=skipped)


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
        return outcome_failed(portal, exc)


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
