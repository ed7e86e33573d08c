"""What the last install, bind or sync saw of our handlers on a portal, so the admin can show
"bound / not bound" without asking Bitrix24 (a portal whose bind failed still reads "active").

Keys name one handler the way the install's batch does: ``placement_TASK_VIEW_TOP_PANEL``,
``event_ONAPPUNINSTALL``. Each writer reports only what it looked at; the rest is kept.
"""
from __future__ import annotations

from typing import Iterable

from django.utils import timezone

from portals.models import Portal


def binding_label(key: str) -> str:
    """``placement_TASK_VIEW_TOP_PANEL`` as an operator reads it: ``placement TASK_VIEW_TOP_PANEL``."""
    return key.replace("_", " ", 1)


def portal_record_bindings(*, portal: Portal, bound: Iterable[str] = (), missing: dict[str, str] | None = None) -> None:
    """Mark ``bound`` keys present and ``missing`` ones absent (with why), in one UPDATE."""
    state = dict(portal.bindings_missing or {})
    for key in bound:
        state.pop(key, None)
    state.update({key: str(reason)[:300] for key, reason in (missing or {}).items()})
    now = timezone.now()
    Portal.objects.filter(pk=portal.pk).update(bindings_missing=state, bindings_ok=not state, bindings_checked_at=now)
    portal.bindings_missing, portal.bindings_ok, portal.bindings_checked_at = state, not state, now
