"""The admin home's fleet at a glance: charts and the portals needing attention, each with the
action that fixes it. A registry other apps fill in their ``AppConfig.ready()`` (placements: the
widget opens and missing bindings; events: events by status and failed events), so ``portals``
names none of them; ``portals`` itself adds installs per week and the token and status checks.

A chart's ``build(now)`` returns Chart.js data (``labels`` and ``datasets``) from a few aggregate
queries; an attention item is a Portal queryset, counted and shown up to ``ATTENTION_SHOWN``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from portals.models import Credential, Portal

ATTENTION_SHOWN = 10
WEEKS_SHOWN = 12
# Bitrix24 refresh tokens live 180 days (protocol 3.4); warn two weeks before the chain lapses.
REFRESH_TOKEN_LIFETIME = dt.timedelta(days=180)
REFRESH_WARNING = dt.timedelta(days=14)


@dataclass(frozen=True)
class Chart:
    key: str  # the element's data-chart attribute
    title: str
    build: Callable[[dt.datetime], dict]
    kind: str = "bar"
    note: str = ""
    order: int = 100  # lower comes first


@dataclass(frozen=True)
class Attention:
    key: str
    title: str
    fix: str  # what the operator does, in one or two sentences
    portals: Callable[[dt.datetime], QuerySet]
    changelist_query: str = ""  # the portal list filtered to these, when a filter exists
    more_url: Callable[[], str] | None = None  # or another list that shows them (events, ...)


_CHARTS: dict[str, Chart] = {}
_ATTENTION: dict[str, Attention] = {}


def chart_register(chart: Chart) -> None:
    _CHARTS[chart.key] = chart


def attention_register(item: Attention) -> None:
    _ATTENTION[item.key] = item


def fleet_at_a_glance(*, now: dt.datetime | None = None) -> dict:
    """Everything the admin home shows: {"charts": [...], "attention": [...]}."""
    now = now or timezone.now()
    charts = [{"key": c.key, "title": c.title, "kind": c.kind, "note": c.note, "data": c.build(now)}
              for c in sorted(_CHARTS.values(), key=lambda c: c.order)]
    changelist = reverse("admin:portals_portal_changelist")
    attention = []
    for item in _ATTENTION.values():
        portals = item.portals(now).defer("application_token")
        count = portals.count()
        if not count:
            continue
        attention.append({
            "key": item.key, "title": item.title, "fix": item.fix, "count": count,
            "portals": list(portals.order_by("domain", "pk")[:ATTENTION_SHOWN]),
            "more_url": item.more_url() if item.more_url else
                        f"{changelist}?{item.changelist_query}" if item.changelist_query else "",
        })
    return {"charts": charts, "attention": attention}


def week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def installs_per_week(now: dt.datetime) -> dict:
    """Installs and uninstalls per ISO week (Monday), the last WEEKS_SHOWN weeks: two GROUP BY day
    queries over the portals of that period (a few thousand rows at most)."""
    first = week_start(now.date()) - dt.timedelta(weeks=WEEKS_SHOWN - 1)
    since = dt.datetime.combine(first, dt.time.min, tzinfo=dt.timezone.utc)
    weeks = [first + dt.timedelta(weeks=n) for n in range(WEEKS_SHOWN)]

    def per_week(field: str) -> list[int]:
        counts = dict.fromkeys(weeks, 0)
        rows = (Portal.objects.filter(**{f"{field}__gte": since}).annotate(day=TruncDate(field))
                .values("day").annotate(n=Count("pk")).order_by())
        for row in rows:
            counts[week_start(row["day"])] += row["n"]
        return list(counts.values())

    return {
        "labels": [week.isoformat() for week in weeks],
        "datasets": [
            {"label": "installs", "data": per_week("installed_at"), "backgroundColor": "#2e7d32"},
            {"label": "uninstalls", "data": per_week("uninstalled_at"), "backgroundColor": "#c62828"},
        ],
    }


def _refresh_chain_lapsing(now: dt.datetime) -> QuerySet:
    """Active portals whose installer's refresh token was last renewed so long ago that it lapses
    within REFRESH_WARNING (or that hold no refresh token at all)."""
    cutoff = now - REFRESH_TOKEN_LIFETIME + REFRESH_WARNING
    stale = Credential.objects.filter(is_admin=True).filter(
        Q(refresh_token="") | Q(refreshed_at__lt=cutoff) | Q(refreshed_at__isnull=True, created_at__lt=cutoff)
    )
    fresh = Credential.objects.filter(is_admin=True, refreshed_at__gte=cutoff).exclude(refresh_token="")
    return Portal.objects.active().filter(pk__in=stale.values("portal_id")).exclude(pk__in=fresh.values("portal_id"))


def register_portal_charts_and_checks() -> None:
    """What ``portals`` itself knows: installs, status, binding state and the installer's token."""
    chart_register(Chart(key="installs", title=f"Installs and uninstalls per week (last {WEEKS_SHOWN} weeks)",
                         build=installs_per_week, order=20))
    attention_register(Attention(
        key="needs_reauth", title="Needs re-authorisation",
        fix="The installer's token was refused. Ask an administrator of the portal to open the app once "
            "in Bitrix24 (or reinstall it): that stores a new token and the portal is active again.",
        portals=lambda now: Portal.objects.filter(status=Portal.Status.NEEDS_REAUTH),
        changelist_query="status__exact=needs_reauth",
    ))
    attention_register(Attention(
        key="payment_required", title="Payment required",
        fix="The app's trial or subscription ended on the portal. Ask its administrator to renew it in "
            "Bitrix24 (Applications, the app's page); the payment event or Sync now brings it back.",
        portals=lambda now: Portal.objects.filter(status=Portal.Status.PAYMENT_REQUIRED),
        changelist_query="status__exact=payment_required",
    ))
    attention_register(Attention(
        key="binding_missing", title="Handlers not bound",
        fix="The last install, bind or sync found a handler missing. Select the portals and run Bind "
            "widget (or manage.py bind_placement --portal DOMAIN); the reason is on each portal's page.",
        portals=lambda now: Portal.objects.installed().filter(bindings_ok=False),
        changelist_query="bindings_ok__exact=0",
    ))
    attention_register(Attention(
        key="refresh_lapsing", title="Admin token expiring",
        fix="The installer's refresh token lapses within two weeks unless it is used. Run Refresh tokens "
            "now on these portals (or manage.py refresh_tokens --all --idle-days 150 from cron).",
        portals=_refresh_chain_lapsing,
    ))
