"""manage.py sync_portals: portals kept in step with what the app declares (placements, events,
subscription), against the fake Bitrix24 over HTTP."""
from __future__ import annotations

import pytest

from portals import binds
from portals.models import Portal
from tests.fixtures_operators import run_command
from tests.helpers import ONLINE_EVENTS_BOUND

pytestmark = pytest.mark.django_db(transaction=True)  # worker threads read what the test wrote

HANDLER = "https://app.example.com/placements/handler/"
EVENTS_URL = "https://app.example.com/portals/events/"
OURS = set(ONLINE_EVENTS_BOUND)


def bind_calls(fake):
    """placement.bind and event.bind calls, inside batches too."""
    return fake.count("placement.bind", include_batch=True) + fake.count("event.bind", include_batch=True)


def our_events(fake_portal):
    return {e["event"] for e in fake_portal.events if e["handler"] == EVENTS_URL}


def our_placements(fake_portal):
    return [p["placement"] for p in fake_portal.placements if p["handler"] == HANDLER]


def test_drift_is_repaired_and_a_second_run_binds_nothing(install_portals, fake_b24):
    (first, first_fake), (second, second_fake), (steady, _) = install_portals(3)
    fake_b24.update_app(first_fake, drop_placements=True)  # handlers vanish on update (protocol 2.2)
    fake_b24.update_app(second_fake)  # only the events vanish
    fake_b24.reset_calls()
    # One portal at a time: the test database is SQLite's shared-cache memory database, where
    # writers from several threads get "table is locked" at once instead of waiting.
    run = run_command("sync_portals", "--all", "--concurrency", "1")
    assert run.code == 0, run.out + run.err
    assert our_placements(first_fake) == ["TASK_VIEW_TOP_PANEL"] and our_events(first_fake) == OURS
    assert our_placements(second_fake) == ["TASK_VIEW_TOP_PANEL"] and our_events(second_fake) == OURS
    line = next(line for line in run.lines if first.member_id in line)
    assert line.startswith(f"ok      {first.domain} [{first.member_id}] repaired: bound ")
    assert "placement TASK_VIEW_TOP_PANEL" in line and "event ONAPPUPDATE" in line
    assert f"ok      {steady.domain} [{steady.member_id}] in step" in run.out
    assert "2 repaired" in run.lines[-1] and "1 in step" in run.lines[-1]
    assert fake_b24.count("placement.bind", include_batch=True) == 1
    event_binds = [name for name, (method, _) in binds.bind_commands().items() if method == "event.bind"]
    assert fake_b24.count("event.bind", include_batch=True) == 2 * len(event_binds)  # online and offline
    # Two requests at most per portal: the reading batch, and the binding batch when needed.
    assert fake_b24.count(server="portal") == 5

    fake_b24.reset_calls()
    again = run_command("sync_portals", "--all", "--concurrency", "1")
    assert again.code == 0
    assert bind_calls(fake_b24) == 0
    assert "3 in step" in again.lines[-1]
    assert fake_b24.count(server="portal") == 3


def test_handlers_of_others_are_never_unbound(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    other = {"placement": "TASK_VIEW_TOP_PANEL", "userId": 0, "handler": "https://other.example.com/w/",
             "options": [], "title": "Another widget", "description": "", "langAll": []}
    other_event = {"event": "ONAPPUPDATE", "handler": "https://other.example.com/e/", "auth_type": "0", "offline": 0}
    fake_b24.update_app(fake_portal, drop_placements=True)
    fake_portal.placements.append(other)
    fake_portal.events.append(other_event)
    fake_b24.reset_calls()
    run = run_command("sync_portals", "--portal", portal.domain)
    assert run.code == 0
    assert other in fake_portal.placements and other_event in fake_portal.events
    assert our_placements(fake_portal) == ["TASK_VIEW_TOP_PANEL"] and our_events(fake_portal) == OURS
    assert fake_b24.count("placement.unbind", include_batch=True) == 0
    assert fake_b24.count("event.unbind", include_batch=True) == 0


def test_dry_run_reads_and_calls_no_bind(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    fake_b24.update_app(fake_portal, drop_placements=True)
    fake_b24.set_subscription(fake_portal, status="T", days=5)
    fake_b24.reset_calls()
    run = run_command("sync_portals", "--all", "--dry-run", "--concurrency", "1")
    assert run.code == 0
    assert bind_calls(fake_b24) == 0
    assert fake_portal.placements == [] and fake_portal.events == []
    assert "would bind: " in run.out and "placement TASK_VIEW_TOP_PANEL" in run.out
    assert "trial, 5 day(s) left" in run.out
    assert "dry run" in run.lines[-1]
    assert Portal.objects.get(pk=portal.pk).app_status == "L"  # nothing stored either


def test_sync_stores_the_subscription_and_brings_a_paid_portal_back(install_portals, fake_b24):
    (paid, paid_fake), (unpaid, unpaid_fake), (trial, trial_fake) = install_portals(3)
    Portal.objects.filter(pk__in=[paid.pk, unpaid.pk]).update(status=Portal.Status.PAYMENT_REQUIRED)
    fake_b24.pay(paid_fake, status="S", days=28)
    fake_b24.require_payment(unpaid_fake)
    fake_b24.set_subscription(trial_fake, status="T", days=2, license="ru_pro100")
    run = run_command("sync_portals", "--all", "--concurrency", "1")
    assert run.code == 0, run.out + run.err  # an unpaid portal is a line, not a failure
    assert f"skipped {unpaid.domain} [{unpaid.member_id}] payment required" in run.out
    assert f"ok      {paid.domain} [{paid.member_id}] in step: subscription, 28 day(s) left" in run.out
    assert "active again" in run.out
    paid.refresh_from_db()
    assert (paid.status, paid.app_status, paid.days_left) == ("active", "S", 28)
    assert Portal.objects.get(pk=unpaid.pk).status == Portal.Status.PAYMENT_REQUIRED
    trial.refresh_from_db()
    assert (trial.app_status, trial.days_left, trial.license) == ("T", 2, "ru_pro100")


def test_needs_reauth_is_skipped_and_a_failure_exits_1(install_portals, fake_b24):
    (waiting, _), (broken, broken_fake), (fine, _) = install_portals(3)
    Portal.objects.filter(pk=waiting.pk).update(status=Portal.Status.NEEDS_REAUTH)
    fake_b24.uninstall(broken_fake)
    run = run_command("sync_portals", "--all", "--concurrency", "1")
    assert run.code == 1
    assert f"skipped {waiting.domain}" in run.out
    assert f"FAILED  {broken.domain}" in run.out
    assert f"ok      {fine.domain}" in run.out


@pytest.mark.parametrize("args", [(), ("--portal", "nobody.example.com"), ("--all", "--concurrency", "0")])
def test_wrong_flags_exit_2(install_portals, fake_b24, args):
    install_portals(1)
    assert run_command("sync_portals", *args).code == 2


def test_an_event_another_app_declares_is_bound_by_the_next_sync(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    binds.bind_provider_register(
        name="test.events",
        provider=lambda: {"event_ONCRMDEALADD": ("event.bind", {"event": "ONCRMDEALADD", "handler": EVENTS_URL})},
    )
    try:
        run = run_command("sync_portals", "--portal", portal.member_id)
        assert run.code == 0 and "bound event ONCRMDEALADD" in run.out
        again = run_command("sync_portals", "--portal", portal.member_id)
        assert "in step" in again.out
    finally:
        binds.bind_provider_unregister(name="test.events")
    assert "ONCRMDEALADD" in our_events(fake_portal)


def test_every_placement_in_b24_placements_is_compared_and_bound(install_portals, fake_b24, settings):
    from placements import registry
    from placements.kinds.tasks import TaskPlacement

    class TaskViewTab(TaskPlacement):
        code, title = "TASK_VIEW_TAB", "Task tab"

    (portal, fake_portal), = install_portals(1)
    registry.register(TaskViewTab)
    try:
        settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL", "TASK_VIEW_TAB"]
        run = run_command("sync_portals", "--portal", portal.domain)
        assert run.code == 0 and "bound placement TASK_VIEW_TAB" in run.out
        assert sorted(our_placements(fake_portal)) == ["TASK_VIEW_TAB", "TASK_VIEW_TOP_PANEL"]
        settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL"]
        fake_portal.placements.clear()
        run = run_command("sync_portals", "--portal", portal.domain)
        assert "TASK_VIEW_TAB" not in run.out  # no longer declared: neither bound nor unbound
    finally:
        registry.unregister("TASK_VIEW_TAB")


# --- the admin: Sync now, and the subscription at a glance ------------------------------------------


def post_action(client, action, portals):
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    data = {"action": action, ACTION_CHECKBOX_NAME: [str(p.pk) for p in portals]}
    return client.post("/admin/portals/portal/", data, follow=True)


def test_sync_now_admin_action_runs_the_same_service(install_portals, staff_client, fake_b24):
    (portal, fake_portal), (other, other_fake) = install_portals(2)
    fake_b24.update_app(fake_portal, drop_placements=True)
    fake_b24.update_app(other_fake, drop_placements=True)
    fake_b24.set_subscription(fake_portal, status="T", days=4)
    response = post_action(staff_client, "sync_now", [portal])
    messages = [m.message for m in response.context["messages"]]
    assert len(messages) == 1 and messages[0].startswith(f"Sync {portal.domain}: repaired (bound ")
    assert our_placements(fake_portal) == ["TASK_VIEW_TOP_PANEL"] and our_events(fake_portal) == OURS
    assert other_fake.placements == []  # not selected, not touched
    assert Portal.objects.get(pk=portal.pk).days_left == 4


def test_admin_shows_trial_days_left_and_expired_with_a_filter(install_portals, staff_client, fake_b24):
    (ending, _), (expired, _), (paid, _), (unpaid, _) = install_portals(4)
    Portal.objects.filter(pk=ending.pk).update(app_status="T", days_left=3, payment_expired=False)
    Portal.objects.filter(pk=expired.pk).update(app_status="T", days_left=-2, payment_expired=True)
    Portal.objects.filter(pk=paid.pk).update(app_status="P", days_left=200, payment_expired=False)
    Portal.objects.filter(pk=unpaid.pk).update(status=Portal.Status.PAYMENT_REQUIRED)
    page = staff_client.get("/admin/portals/portal/").content.decode()
    assert "3 day(s) left" in page and "expired 2 day(s) ago" in page and "200 day(s) left" in page

    def listed(query):
        body = staff_client.get(f"/admin/portals/portal/?subscription={query}").content.decode()
        return {p.domain for p in (ending, expired, paid, unpaid) if f">{p.domain}<" in body}

    assert listed("trial_ending") == {ending.domain}
    assert listed("expired") == {expired.domain}
    assert listed("paid") == {paid.domain}
    assert listed("payment_required") == {unpaid.domain}
    assert listed("trial") == {ending.domain, expired.domain}


# --- comparing a bind command with what Bitrix24 lists -----------------------------------------------


@pytest.mark.parametrize("command, placements, events, present", [
    (("placement.bind", {"PLACEMENT": "TASK_VIEW_TOP_PANEL", "HANDLER": HANDLER}),
     [{"placement": "task_view_top_panel", "handler": HANDLER.rstrip("/")}], [], True),
    (("placement.bind", {"PLACEMENT": "TASK_VIEW_TOP_PANEL", "HANDLER": HANDLER}),
     [{"placement": "TASK_VIEW_TOP_PANEL", "handler": "https://other.example.com/placements/handler/"}], [], False),
    (("placement.bind", {"PLACEMENT": "TASK_VIEW_TOP_PANEL", "HANDLER": HANDLER}),
     [{"placement": None, "handler": 5}, {"placement": "TASK_VIEW_TAB", "handler": HANDLER}], [], False),
    (("event.bind", {"event": "ONAPPUPDATE", "handler": EVENTS_URL}),
     [], [{"event": "onappupdate", "handler": EVENTS_URL, "offline": 0}], True),
    (("event.bind", {"event": "ONAPPUPDATE", "handler": EVENTS_URL}),
     [], [{"event": "ONAPPUPDATE", "handler": EVENTS_URL, "offline": 1}], False),  # offline is not online
    (("event.bind", {"event": "ONTASKADD", "event_type": "offline"}),
     [], [{"event": "ONTASKADD", "handler": "", "offline": "1"}], True),  # offline binds have no handler
    (("event.bind", {"event": "ONTASKADD", "event_type": "offline"}),
     [], [{"event": "ONTASKADD", "handler": EVENTS_URL, "offline": 0}], False),
    (("user.option.set", {}), [], [], False),  # nothing to compare with: bound ("already bound" is success)
])
def test_a_bind_command_is_present_only_with_our_handler(command, placements, events, present):
    assert binds.bind_command_present(command, placements=placements, events=events) is present


def test_celery_beat_runs_the_same_sync_periodically(install_portals, fake_b24):
    from bitrix_widget import celeryconfig
    from portals.tasks import sync_portals

    schedule = celeryconfig.beat_schedule["portals-sync"]
    assert schedule["task"] == sync_portals.name and schedule["schedule"] == 3600.0
    (portal, fake_portal), (unpaid, _) = install_portals(2)
    Portal.objects.filter(pk=unpaid.pk).update(status=Portal.Status.PAYMENT_REQUIRED)
    fake_b24.update_app(fake_portal, drop_placements=True)
    counts = sync_portals.apply(kwargs={"concurrency": 1}).get()  # Celery's machinery, in this process
    assert counts["repaired"] == 1 and counts["in step"] == 1
    assert our_placements(fake_portal) == ["TASK_VIEW_TOP_PANEL"] and OURS <= our_events(fake_portal)
    assert Portal.objects.get(pk=unpaid.pk).status == Portal.Status.ACTIVE  # app.info answered
