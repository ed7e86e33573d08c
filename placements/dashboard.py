"""The widget's part of the admin home: opens per day by outcome, with the p95 duration.

A day that is over never changes, so it is added up once into an ``InvocationDay`` row (one
indexed range scan of that day) and read back from there; only today is counted live. The chart
then costs two small queries however many invocations the log holds (bench/run.py measures it
at a million). The p95 comes from a duration histogram, the way Prometheus' histogram_quantile
estimates it: exact enough to see a slow day, with no per-row work.
"""
from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.db.models import Case, Count, IntegerField, Value, When
from django.utils import timezone

from placements.models import Invocation, InvocationDay

DAYS_SHOWN = 30
# Upper bounds (ms) of the duration buckets; the last bucket is everything slower.
DURATION_BOUNDS_MS = (25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 700, 800, 900, 1000,
                      1500, 2000, 3000, 5000, 10000)
# A day is added up only this long after it ended, so a request still writing its row is counted.
SETTLE = dt.timedelta(minutes=10)
OUTCOME_COLOURS = {"ok": "#2e7d32", "rejected": "#f9a825", "error": "#c62828"}


def _day_range(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


def _bucket():
    """SQL CASE: the bucket index of a row's duration_ms."""
    whens = [When(duration_ms__lt=bound, then=Value(index)) for index, bound in enumerate(DURATION_BOUNDS_MS)]
    return Case(*whens, default=Value(len(DURATION_BOUNDS_MS)), output_field=IntegerField())


def invocations_counted(*, start: dt.datetime, end: dt.datetime) -> tuple[dict[str, int], list[int]]:
    """(opens by outcome, opens per duration bucket) of the invocations in [start, end): one
    GROUP BY over the created_at index range."""
    outcomes: dict[str, int] = {}
    buckets = [0] * (len(DURATION_BOUNDS_MS) + 1)
    rows = (Invocation.objects.filter(created_at__gte=start, created_at__lt=end).order_by()
            .values("outcome").annotate(bucket=_bucket()).values("outcome", "bucket").annotate(n=Count("pk")))
    for row in rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + row["n"]
        buckets[row["bucket"]] += row["n"]
    return outcomes, buckets


def invocation_days_ensure(*, days: list[dt.date], now: dt.datetime | None = None) -> int:
    """Add up each settled day of ``days`` that has no ``InvocationDay`` yet; how many were added.
    The admin home calls it for its window, and prune_invocations before deleting."""
    now = now or timezone.now()
    settled = [day for day in days if _day_range(day)[1] + SETTLE <= now]
    done = set(InvocationDay.objects.filter(day__in=settled).values_list("day", flat=True))
    added = 0
    for day in settled:
        if day in done:
            continue
        outcomes, buckets = invocations_counted(start=_day_range(day)[0], end=_day_range(day)[1])
        try:
            with transaction.atomic():
                InvocationDay.objects.create(day=day, outcomes=outcomes, duration_buckets=buckets, computed_at=now)
        except IntegrityError:  # another request added the same day a moment ago: same numbers
            continue
        added += 1
    return added


def percentile_ms(buckets: list[int], fraction: float) -> int | None:
    """The ``fraction`` quantile from bucket counts, interpolated inside its bucket."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = fraction * total, 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = DURATION_BOUNDS_MS[index - 1] if index else 0
            high = DURATION_BOUNDS_MS[index] if index < len(DURATION_BOUNDS_MS) else low * 2
            return round(low + (high - low) * (rank - seen) / count)
        seen += count
    return DURATION_BOUNDS_MS[-1]


def days_shown(now: dt.datetime | None = None) -> list[dt.date]:
    """The chart's days, oldest first, today last (UTC)."""
    today = (now or timezone.now()).astimezone(dt.timezone.utc).date()
    return [today - dt.timedelta(days=n) for n in range(DAYS_SHOWN - 1, -1, -1)]


def widget_opens_per_day(now: dt.datetime) -> dict:
    """Chart.js data: a stacked bar per day (ok, rejected, error) and the p95 line (right axis)."""
    days = days_shown(now)
    invocation_days_ensure(days=days, now=now)
    stored = {row.day: row for row in InvocationDay.objects.filter(day__in=days)}
    # Today (and yesterday for its first minutes) is counted live: an index range of one day.
    live = {day: invocations_counted(start=_day_range(day)[0], end=_day_range(day)[1])
            for day in days if day not in stored}
    series: dict[str, list[int]] = {outcome: [] for outcome in OUTCOME_COLOURS}
    p95: list[int | None] = []
    for day in days:
        outcomes, buckets = (stored[day].outcomes, stored[day].duration_buckets) if day in stored else live[day]
        for outcome in series:
            series[outcome].append(int(outcomes.get(outcome, 0)))
        p95.append(percentile_ms(list(buckets), 0.95))
    datasets = [
        {"label": outcome, "data": values, "backgroundColor": OUTCOME_COLOURS[outcome], "stack": "opens"}
        for outcome, values in series.items()
    ]
    datasets.append({"label": "p95 ms", "data": p95, "type": "line", "yAxisID": "ms",
                     "borderColor": "#1565c0", "backgroundColor": "#1565c0", "spanGaps": True})
    return {"labels": [day.isoformat() for day in days], "datasets": datasets}


def register() -> None:
    """Called from PlacementsConfig.ready()."""
    from portals import dashboard

    dashboard.chart_register(dashboard.Chart(
        key="widget-opens", title=f"Widget opens per day by outcome, and p95 duration (last {DAYS_SHOWN} days)",
        build=widget_opens_per_day, order=10, note="p95 estimated from a duration histogram; closed days are kept added up.",
    ))
