"""Reads of the inbox for the admin home and /metrics."""
from __future__ import annotations

from django.db.models import Count

from events.models import Event


def event_counts_by_status(*, portal=None) -> dict[str, int]:
    """{"queued": n, "done": n, "failed": n}, every status present (0 when none)."""
    queryset = Event.objects.all() if portal is None else Event.objects.filter(portal=portal)
    counts = {status: 0 for status in Event.Status.values}
    for row in queryset.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts
