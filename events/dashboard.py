"""The events' part of the admin home: events by status, and the portals whose events failed."""
from __future__ import annotations

from django.urls import reverse

from events.models import Event
from events.selectors import event_counts_by_status

STATUS_COLOURS = {Event.Status.QUEUED: "#1565c0", Event.Status.DONE: "#2e7d32", Event.Status.FAILED: "#c62828"}


def events_by_status(now) -> dict:
    """One bar per status: a GROUP BY status over the (status, next_attempt_at) index. Each label
    carries its count, so 2 failed beside 40,000 done still reads."""
    counts = event_counts_by_status()
    return {
        "labels": [f"{status} ({count})" for status, count in counts.items()],
        "datasets": [{"label": "events", "data": list(counts.values()),
                      "backgroundColor": [STATUS_COLOURS.get(status, "#757575") for status in counts]}],
    }


def register() -> None:
    """Called from EventsConfig.ready()."""
    from portals import dashboard
    from portals.models import Portal

    dashboard.chart_register(dashboard.Chart(key="events", title="Events from Bitrix24 by status",
                                             build=events_by_status, order=30))
    dashboard.attention_register(dashboard.Attention(
        key="failed_events", title="Failed events",
        fix="Their handlers kept failing after every retry. Open Events filtered to failed, read the error "
            "on each, fix its cause, then select them and run Retry.",
        portals=lambda now: Portal.objects.filter(
            pk__in=Event.objects.filter(status=Event.Status.FAILED).values("portal_id")
        ),
        more_url=lambda: reverse("admin:events_event_changelist") + "?status__exact=failed",
    ))
