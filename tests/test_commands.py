"""The operator commands against the fake Bitrix24 over HTTP (ARCHITECTURE.md, "Management commands")."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from placements.models import Invocation
from portals.models import Credential, Portal
from tests.fixtures_operators import run_command

HANDLER = "https://app.example.com/placements/handler/"
pytestmark = pytest.mark.django_db(transaction=True)  # worker threads read what the test wrote


def handlers_on(fake_portal, code="TASK_VIEW_TOP_PANEL"):
    return [p["handler"] for p in fake_portal.placements if p["placement"] == code]


# --- bind_placement ------------------------------------------------------------------------------


def test_bind_twice_second_run_is_already_bound(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    first = run_command("bind_placement", "--portal", portal.domain, "--placement", "TASK_VIEW_TAB")
    second = run_command("bind_placement", "--portal", portal.member_id, "--placement", "TASK_VIEW_TAB")
    assert first.code == 0 and "] bound" in first.out
    assert second.code == 0 and "already bound" in second.out
    assert handlers_on(fake_portal, "TASK_VIEW_TAB") == [HANDLER]
    assert second.lines[-1].startswith("bind_placement TASK_VIEW_TAB: 1 portal(s)")


def test_bind_after_install_is_already_bound_with_defaults(install_portals, fake_b24):
    install_portals(2)
    run = run_command("bind_placement", "--all")
    assert run.code == 0
    assert sum(line.startswith("ok ") and line.endswith("already bound") for line in run.lines) == 2
    assert "2 already bound" in run.lines[-1]


def test_bind_all_over_several_portals_binds_each_once(install_portals, fake_b24):
    installed = install_portals(4)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--all", "--placement", "TASK_VIEW_TAB", "--concurrency", "4")
    assert run.code == 0, run.err
    assert "4 bound" in run.lines[-1]
    for portal, fake_portal in installed:
        assert fake_b24.count("placement.bind", domain=fake_portal.domain) == 1
        assert f"ok      {portal.domain} [{portal.member_id}] bound" in run.out
    assert fake_b24.count(server="oauth") == 0  # tokens were fresh: no refresh


def test_one_failing_portal_does_not_stop_the_others_and_exits_1(install_portals, fake_b24):
    installed = install_portals(3)
    broken_portal, broken_fake = installed[1]
    fake_b24.uninstall(broken_fake)  # its tokens now answer invalid_token
    run = run_command("bind_placement", "--all", "--placement", "TASK_VIEW_TAB", "--concurrency", "3")
    assert run.code == 1
    assert f"FAILED  {broken_portal.domain}" in run.out and "invalid_token" in run.out
    for portal, fake_portal in (installed[0], installed[2]):
        assert handlers_on(fake_portal, "TASK_VIEW_TAB") == [HANDLER]
    assert "2 bound, 1 failed" in run.lines[-1] or "1 failed, 2 bound" in run.lines[-1]
    assert "1 of 3 portal(s) failed" in run.err


def test_expired_admin_token_is_refreshed_once_then_bound(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    fake_b24.expire_all(fake_portal)
    Credential.objects.filter(portal=portal).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--portal", portal.domain, "--placement", "TASK_VIEW_TAB")
    assert run.code == 0 and "] bound" in run.out
    assert fake_b24.count("oauth/token") == 1
    assert fake_b24.count("placement.bind") == 1
    assert Credential.objects.get(portal=portal).expires_at > timezone.now()


def test_token_expired_early_at_bitrix24_is_refreshed_once_and_retried(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    fake_b24.expire_all(fake_portal)  # our row still says valid: the portal answers expired_token
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--portal", portal.domain, "--placement", "TASK_VIEW_TAB")
    assert run.code == 0
    assert fake_b24.count("oauth/token") == 1
    assert fake_b24.count("placement.bind") == 2


def test_needs_reauth_portal_named_is_reported_failed_without_a_call(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    Portal.objects.filter(pk=portal.pk).update(status=Portal.Status.NEEDS_REAUTH, status_detail="refresh refused")
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--portal", portal.domain)
    assert run.code == 1
    assert "needs re-authorisation: refresh refused" in run.out
    assert fake_b24.count() == 0


def test_needs_reauth_portal_is_skipped_by_all_and_the_rest_succeed(install_portals, fake_b24):
    installed = install_portals(3)
    waiting, waiting_fake = installed[0]
    Portal.objects.filter(pk=waiting.pk).update(status=Portal.Status.NEEDS_REAUTH)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--all")
    assert run.code == 0
    assert f"skipped {waiting.domain}" in run.out
    assert fake_b24.count(domain=waiting_fake.domain) == 0
    assert "2 already bound" in run.lines[-1] and "1 skipped" in run.lines[-1]


def test_refresh_refused_during_bind_marks_needs_reauth_and_is_not_retried(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    fake_b24.uninstall(fake_portal)
    Credential.objects.filter(portal=portal).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    first = run_command("bind_placement", "--portal", portal.domain)
    assert first.code == 1 and "needs re-authorisation" in first.out
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.NEEDS_REAUTH
    fake_b24.reset_calls()
    second = run_command("bind_placement", "--portal", portal.domain)
    assert second.code == 1 and fake_b24.count() == 0


def test_dry_run_calls_nothing(install_portals, fake_b24):
    install_portals(2)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--all", "--dry-run")
    assert run.code == 0
    assert fake_b24.count() == 0
    assert sum(line.startswith("would ") for line in run.lines) == 2
    assert f"bind TASK_VIEW_TOP_PANEL -> {HANDLER}" in run.out


def test_concurrency_runs_portals_side_by_side(install_portals, fake_b24):
    install_portals(8)
    fake_b24.latency = 0.2
    started = time.monotonic()
    run = run_command("bind_placement", "--all", "--concurrency", "8")
    elapsed = time.monotonic() - started
    assert run.code == 0
    assert elapsed < 1.0, elapsed  # one after another would take 8 x 0.2 s at least


# --- unbind_placement / list_placements ------------------------------------------------------------


def test_unbind_removes_our_handler_and_keeps_others(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    other = "https://other.example.com/handler/"
    fake_portal.placements.append({"placement": "TASK_VIEW_TOP_PANEL", "handler": other, "userId": 0,
                                   "title": "Other", "description": "", "options": [], "langAll": []})
    run = run_command("unbind_placement", "--portal", portal.domain)
    assert run.code == 0 and "] removed" in run.out
    assert handlers_on(fake_portal) == [other]
    unbind_call = [c for c in fake_b24.calls if c.method == "placement.unbind"][0]
    assert unbind_call.params["HANDLER"] == HANDLER


def test_unbind_of_nothing_bound_is_was_not_bound(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    run = run_command("unbind_placement", "--portal", portal.domain, "--placement", "TASK_VIEW_TAB")
    assert run.code == 0 and "was not bound" in run.out


def test_unbind_dry_run_calls_nothing(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    fake_b24.reset_calls()
    run = run_command("unbind_placement", "--portal", portal.domain, "--dry-run")
    assert run.code == 0 and fake_b24.count() == 0
    assert handlers_on(fake_portal) == [HANDLER]


def test_list_placements_prints_a_table(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    run = run_command("list_placements", "--portal", portal.domain)
    assert run.code == 0
    header = next(line for line in run.lines if line.strip().startswith("placement"))
    assert header.split() == ["placement", "handler", "title", "userId"]
    row = next(line for line in run.lines if line.strip().startswith("TASK_VIEW_TOP_PANEL"))
    assert HANDLER in row and "Task widget" in row


def test_list_placements_needs_a_portal(fake_b24):
    run = run_command("list_placements", "--all")
    assert run.code == 2


# --- refresh_tokens ---------------------------------------------------------------------------------


def test_refresh_tokens_idle_days_refreshes_only_idle_credentials(install_portals, fake_b24):
    (idle, idle_fake), (busy, busy_fake) = install_portals(2)
    long_ago = timezone.now() - dt.timedelta(days=20)
    Credential.objects.filter(portal=idle).update(refreshed_at=long_ago, last_used_at=long_ago)
    before = Credential.objects.get(portal=idle).refresh_token
    fake_b24.reset_calls()
    run = run_command("refresh_tokens", "--all", "--idle-days", "7")
    assert run.code == 0, run.out + run.err
    assert fake_b24.count("oauth/token") == 1
    assert f"ok      {idle.domain}" in run.out and busy.domain not in run.out
    assert Credential.objects.get(portal=idle).refresh_token != before


def test_refresh_tokens_refused_marks_needs_reauth_and_exits_1(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    fake_b24.uninstall(fake_portal)
    run = run_command("refresh_tokens", "--portal", portal.domain)
    assert run.code == 1
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.NEEDS_REAUTH
    fake_b24.reset_calls()
    again = run_command("refresh_tokens", "--all")
    assert again.code == 0 and "skipped" in again.out and fake_b24.count() == 0


def test_refresh_tokens_named_portal_with_nothing_idle_says_so(install_portals, fake_b24):
    (portal, fake_portal), = install_portals(1)
    run = run_command("refresh_tokens", "--portal", portal.domain, "--idle-days", "7")
    assert run.code == 0 and "nothing idle" in run.out
    assert fake_b24.count("oauth/token") == 0


# --- prune_invocations ---------------------------------------------------------------------------


def test_prune_invocations_deletes_only_old_rows_in_batches(db):
    now = timezone.now()
    Invocation.objects.bulk_create(
        [Invocation(placement="TASK_VIEW_TOP_PANEL", outcome="ok", created_at=now - dt.timedelta(days=40))
         for _ in range(5)]
        + [Invocation(placement="TASK_VIEW_TOP_PANEL", outcome="ok", created_at=now - dt.timedelta(days=1))
           for _ in range(2)]
    )
    run = run_command("prune_invocations", "--older-than-days", "30", "--batch-size", "2")
    assert run.code == 0
    assert Invocation.objects.count() == 2
    assert [line for line in run.lines if line.startswith("deleted")] == [
        "deleted 2 (total 2)", "deleted 2 (total 4)", "deleted 1 (total 5)"
    ]
    assert "deleted 5 invocation(s)" in run.lines[-1]


def test_prune_invocations_without_days_is_exit_2(db):
    assert run_command("prune_invocations").code == 2


# --- wrong flags, unknown portal, missing app credentials: exit 2, one line ---------------------


@pytest.mark.parametrize(
    "args",
    [
        ["bind_placement", "--bogus"],
        ["bind_placement"],
        ["unbind_placement"],
        ["bind_placement", "--all", "--concurrency", "0"],
        ["refresh_tokens", "--all", "--idle-days", "soon"],
        ["list_placements"],
    ],
    ids=["unknown-flag", "no-selection", "unbind-no-selection", "zero-concurrency", "bad-days", "list-no-portal"],
)
def test_wrong_flags_are_exit_2(args, fake_b24):
    run = run_command(*args)
    assert run.code == 2
    assert len(run.err.strip().splitlines()) == 1


def test_unknown_portal_is_exit_2_and_nothing_is_called(install_portals, fake_b24):
    install_portals(1)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--portal", "portal-1.example.com", "--portal", "nowhere.example.com")
    assert run.code == 2 and "unknown portal: 'nowhere.example.com'" in run.err
    assert fake_b24.count() == 0


def test_missing_client_id_is_exit_2(install_portals, fake_b24, settings):
    install_portals(1)
    settings.B24_CLIENT_ID = ""
    run = run_command("bind_placement", "--all")
    assert run.code == 2 and "B24_CLIENT_ID" in run.err


def test_missing_app_base_url_without_handler_is_exit_2(install_portals, fake_b24, settings):
    install_portals(1)
    settings.B24_APP_BASE_URL = ""
    assert run_command("bind_placement", "--all").code == 2


def test_disabled_portal_named_is_reported_uninstalled_without_a_call(install_portals, fake_b24):
    from portals.operations import portal_disable

    (portal, fake_portal), = install_portals(1)
    portal_disable(portal=portal)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--portal", portal.member_id)
    assert run.code == 1 and "] uninstalled: Disabled by operator" in run.out
    assert fake_b24.count() == 0
    assert run_command("bind_placement", "--all").lines[-1].endswith("nothing to do")


def test_a_domain_shared_by_two_installed_portals_must_be_named_by_member_id(install_portals, fake_b24):
    (portal, _), = install_portals(1)
    Portal.objects.create(member_id="other-member", domain=portal.domain, client_endpoint=portal.client_endpoint,
                          server_endpoint=portal.server_endpoint)
    run = run_command("bind_placement", "--portal", portal.domain)
    assert run.code == 2 and "give the member_id instead" in run.err
    assert run_command("bind_placement", "--portal", portal.member_id).code == 0
