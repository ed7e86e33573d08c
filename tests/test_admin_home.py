"""The admin home (the fleet at a glance) and the portal list and page: charts in [data-chart]
elements with their data, the portals needing attention with what fixes each, a read-only portal
page whose actions are buttons, and bounded work at a million invocations."""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench import seed
from placements import dashboard as placement_dashboard
from placements.models import Invocation, InvocationDay
from portals.models import Credential, Portal
from tests.fixtures_operators import install_portals, staff_client  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def make_portal(domain: str, *, status: str = Portal.Status.ACTIVE, bindings_ok=True, refreshed_days_ago: int = 1,
                installed_days_ago: int = 3, **fields) -> Portal:
    now = timezone.now()
    portal = Portal.objects.create(
        member_id=secrets.token_hex(16), domain=domain, client_endpoint=f"https://{domain}/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/", status=status, bindings_ok=bindings_ok,
        bindings_missing={} if bindings_ok in (True, None) else {"placement_TASK_VIEW_TOP_PANEL": "ACCESS_DENIED"},
        installed_at=now - dt.timedelta(days=installed_days_ago), **fields,
    )
    Credential.objects.create(portal=portal, user_id=1, is_admin=True, access_token="a" * 40, refresh_token="r" * 40,
                              expires_at=now, refreshed_at=now - dt.timedelta(days=refreshed_days_ago))
    return portal


def chart_data(html: str, key: str) -> dict:
    assert f'data-chart="{key}"' in html, f"no chart {key}"
    match = re.search(rf'<script id="{re.escape(key)}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no data for chart {key}"
    return json.loads(match.group(1))


def attention_items(html: str) -> dict[str, str]:
    """{item key: its HTML} of the attention list."""
    parts = re.split(r'<div class="attention-item" data-attention-item="([^"]+)">', html)
    return {parts[i]: parts[i + 1].split("</div>")[0] for i in range(1, len(parts), 2)}


@pytest.fixture
def fleet():
    """One portal in each state the attention list knows, and a healthy one."""
    return {
        "healthy": make_portal("healthy.example.com"),
        "reauth": make_portal("reauth.example.com", status=Portal.Status.NEEDS_REAUTH, status_detail="refused"),
        "unpaid": make_portal("unpaid.example.com", status="payment_required"),
        "unbound": make_portal("unbound.example.com", bindings_ok=False),
        "lapsing": make_portal("lapsing.example.com", refreshed_days_ago=170),
        "gone": make_portal("gone.example.com", status=Portal.Status.UNINSTALLED, bindings_ok=False,
                            refreshed_days_ago=400, uninstalled_at=timezone.now() - dt.timedelta(days=2)),
    }


def test_admin_home_names_the_app_and_draws_each_chart(staff_client, fleet):
    now = timezone.now()
    portal = fleet["healthy"]
    Invocation.objects.bulk_create(
        [Invocation(portal=portal, placement="TASK_VIEW_TOP_PANEL", outcome="ok", duration_ms=120, created_at=now)] * 3
        + [Invocation(portal=portal, placement="TASK_VIEW_TOP_PANEL", outcome="error", duration_ms=900,
                      created_at=now - dt.timedelta(days=2))]
    )
    html = staff_client.get("/admin/").content.decode()
    assert "<title>Fleet at a glance | Bitrix24 widget backend admin</title>" in html
    assert "Bitrix24 widget backend: operators" in html
    assert "portals/vendor/chart.umd.min.js" in html and "portals/fleet.js" in html
    opens = chart_data(html, "widget-opens")
    assert len(opens["labels"]) == placement_dashboard.DAYS_SHOWN and opens["labels"][-1] == now.date().isoformat()
    by_label = {dataset["label"]: dataset["data"] for dataset in opens["datasets"]}
    assert by_label["ok"][-1] == 3 and by_label["error"][-3] == 1 and sum(by_label["rejected"]) == 0
    assert by_label["p95 ms"][-1] is not None and 100 <= by_label["p95 ms"][-1] <= 150
    installs = chart_data(html, "installs")
    by_label = {dataset["label"]: dataset["data"] for dataset in installs["datasets"]}
    assert sum(by_label["installs"]) == len(fleet) and sum(by_label["uninstalls"]) == 1
    assert 'href="/admin/portals/portal/"' in html  # the app list is still there below


def test_attention_lists_each_portal_with_what_fixes_it(staff_client, fleet):
    items = attention_items(staff_client.get("/admin/").content.decode())
    expected = {"needs_reauth": "reauth", "payment_required": "unpaid", "binding_missing": "unbound",
                "refresh_lapsing": "lapsing"}
    assert set(items) == set(expected)
    for key, name in expected.items():
        assert f'href="/admin/portals/portal/{fleet[name].pk}/change/"' in items[key], key
        others = [p for n, p in fleet.items() if n != name]
        assert not any(f"/admin/portals/portal/{p.pk}/change/" in items[key] for p in others), key
    assert "open the app once" in items["needs_reauth"]
    assert "renew" in items["payment_required"]
    assert "Bind widget" in items["binding_missing"]
    assert "Refresh tokens now" in items["refresh_lapsing"]


def test_failed_events_are_charted_and_listed_with_the_retry_hint(staff_client, fleet):
    from events.models import Event

    portal = fleet["healthy"]
    for n, status in enumerate(["done", "done", "failed", "queued"]):
        Event.objects.create(portal=portal, name="ONTASKUPDATE", object_id=str(n), delivery=str(n), status=status)
    html = staff_client.get("/admin/").content.decode()
    events = chart_data(html, "events")
    assert dict(zip(events["labels"], events["datasets"][0]["data"])) == {"queued (1)": 1, "done (2)": 2, "failed (1)": 1}
    item = attention_items(html)["failed_events"]
    assert f"/admin/portals/portal/{portal.pk}/change/" in item and "Retry" in item
    assert 'href="/admin/events/event/?status__exact=failed"' in item


def test_attention_says_so_when_nothing_needs_it(staff_client):
    make_portal("healthy.example.com")
    html = staff_client.get("/admin/").content.decode()
    assert attention_items(html) == {} and "Nothing needs attention" in html


def test_a_closed_day_is_added_up_once_and_today_is_counted_live():
    now = timezone.now().replace(hour=12)
    portal = make_portal("healthy.example.com")
    two_days_ago = now - dt.timedelta(days=2)
    Invocation.objects.create(portal=portal, placement="TASK_VIEW_TOP_PANEL", outcome="ok", duration_ms=40,
                              created_at=two_days_ago)
    first = placement_dashboard.widget_opens_per_day(now)
    assert InvocationDay.objects.filter(day=two_days_ago.date()).get().outcomes == {"ok": 1}
    assert not InvocationDay.objects.filter(day=now.date()).exists()  # today is not over
    Invocation.objects.create(portal=portal, placement="TASK_VIEW_TOP_PANEL", outcome="ok", duration_ms=40,
                              created_at=now)
    second = placement_dashboard.widget_opens_per_day(now)
    ok_first, ok_second = first["datasets"][0]["data"], second["datasets"][0]["data"]
    assert ok_second[-3] == ok_first[-3] == 1 and ok_second[-1] == ok_first[-1] + 1


def test_p95_is_read_from_the_duration_histogram():
    buckets = [0] * (len(placement_dashboard.DURATION_BOUNDS_MS) + 1)
    buckets[3] = 95  # 75-100 ms
    buckets[10] = 5  # 500-600 ms
    assert 75 <= placement_dashboard.percentile_ms(buckets, 0.95) <= 100
    buckets[10] = 20
    assert 500 <= placement_dashboard.percentile_ms(buckets, 0.95) <= 600
    assert placement_dashboard.percentile_ms([0] * len(buckets), 0.95) is None


def test_prune_keeps_the_history_of_the_days_it_deletes(fleet):
    from django.core.management import call_command

    old = timezone.now() - dt.timedelta(days=5)
    Invocation.objects.create(portal=fleet["healthy"], placement="TASK_VIEW_TOP_PANEL", outcome="ok", created_at=old)
    call_command("prune_invocations", "--older-than-days", "3", stdout=open("/dev/null", "w"))
    assert not Invocation.objects.filter(created_at__lte=old).exists()
    assert InvocationDay.objects.get(day=old.date()).outcomes == {"ok": 1}


# --- the portal list and page ------------------------------------------------------------------


def test_portal_list_shows_badges_and_a_short_member_id(staff_client, fleet):
    html = staff_client.get("/admin/portals/portal/").content.decode()
    portal = fleet["unbound"]
    assert f'<span class="member-id" title="{portal.member_id}">{portal.member_id[:8]}\u2026</span>' in html
    assert 'class="status-badge status-needs_reauth"' in html and 'class="status-badge status-active"' in html
    assert 'class="status-badge binding-missing" title="placement TASK_VIEW_TOP_PANEL: ACCESS_DENIED"' in html
    assert 'class="status-badge binding-bound"' in html
    # One timestamp format everywhere: 2026-12-01 23:05 (UTC on hover).
    assert re.search(r'<time datetime="[^"]+" title="UTC">\d{4}-\d\d-\d\d \d\d:\d\d</time>', html)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+", html) and "a.m." not in html and "p.m." not in html
    filtered = staff_client.get("/admin/portals/portal/?bindings_ok__exact=0").content.decode()
    assert portal.domain in filtered and fleet["healthy"].domain not in filtered


def test_portal_page_is_read_only_with_action_buttons_and_a_hint(staff_client, fleet):
    portal = fleet["reauth"]
    html = staff_client.get(f"/admin/portals/portal/{portal.pk}/change/").content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html and 'name="_addanother"' not in html
    for action in ("bind_widget", "unbind_widget", "refresh_tokens_now", "disable", "enable"):
        assert f'data-action="{action}"' in html, action
    assert "Please open our app once in Bitrix24" in html
    assert portal.member_id in html  # in full on the page
    unpaid = staff_client.get(f"/admin/portals/portal/{fleet['unpaid'].pk}/change/").content.decode()
    assert "renew the app&#x27;s subscription" in unpaid or "renew the app's subscription" in unpaid


def test_a_button_on_the_portal_page_runs_its_action_on_that_portal_only(staff_client, fleet):
    portal, other = fleet["healthy"], fleet["lapsing"]
    url = f"/admin/portals/portal/{portal.pk}/change/"
    ask = staff_client.post(url, {"action": "disable", "_selected_action": str(other.pk)})
    assert ask.status_code == 200 and b"Disable these portals?" in ask.content  # asks first
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.ACTIVE
    done = staff_client.post(url, {"action": "disable", "_selected_action": str(portal.pk), "confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == url
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.UNINSTALLED
    assert Portal.objects.get(pk=other.pk).status == Portal.Status.ACTIVE
    assert staff_client.post(url, {"action": "delete_selected"}).status_code == 403


def test_install_and_bind_record_bound_and_not_bound_for_the_list(install_portals, staff_client, fake_b24):
    (portal, fake_portal), = install_portals(1)
    portal.refresh_from_db()
    assert portal.bindings_ok is True and portal.bindings_checked_at  # the install's batch bound everything
    fake_b24.fail_next("placement.bind", status=403, error="ACCESS_DENIED", description="Access denied")
    staff_client.post("/admin/portals/portal/", {"action": "bind_widget", "_selected_action": [str(portal.pk)]})
    portal.refresh_from_db()
    assert portal.bindings_ok is False and "ACCESS_DENIED" in portal.bindings_missing["placement_TASK_VIEW_TOP_PANEL"]
    html = staff_client.get("/admin/").content.decode()
    assert f"/admin/portals/portal/{portal.pk}/change/" in attention_items(html)["binding_missing"]
    staff_client.post("/admin/portals/portal/", {"action": "bind_widget", "_selected_action": [str(portal.pk)]})
    portal.refresh_from_db()
    assert portal.bindings_ok is True and portal.bindings_missing == {}


# --- a million invocations ---------------------------------------------------------------------


@pytest.mark.million
def test_admin_home_at_a_million_invocations_is_a_few_bounded_queries(staff_client):
    seed.portals_filler(up_to=1000)
    seconds_to_seed = seed.invocations_generated(total=1_000_000)
    try:
        _admin_home_at_a_million(staff_client, seconds_to_seed)
    finally:
        if connection.vendor == "postgresql":
            # The seed's ANALYZE wrote the planner's row estimate in place (a rollback keeps it):
            # put it back to an empty table, or the invocation list's capped count would read
            # "a million" in the tests that follow.
            Invocation.objects.all().delete()
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {Invocation._meta.db_table}")


def _admin_home_at_a_million(staff_client, seconds_to_seed: float) -> None:
    assert Invocation.objects.count() == 1_000_000
    started = time.perf_counter()
    assert staff_client.get("/admin/").status_code == 200  # the first visit adds up the closed days
    first_visit = time.perf_counter() - started
    with CaptureQueriesContext(connection) as queries:
        html = staff_client.get("/admin/").content.decode()
    aggregate_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
    print(f"\nseed {seconds_to_seed:.1f} s; first visit {first_visit:.2f} s; then {len(queries)} queries, "
          f"{aggregate_ms:.0f} ms of SQL")
    opens = chart_data(html, "widget-opens")
    total_shown = sum(sum(d["data"]) for d in opens["datasets"] if d["label"] != "p95 ms")
    assert 300_000 < total_shown < 360_000  # 30 of the 90 days
    assert len(queries) <= 20
    assert aggregate_ms < 300, [(q["time"], q["sql"][:120]) for q in queries.captured_queries]
