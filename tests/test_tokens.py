"""The token service: refresh only when needed, once, under a short lease; dead chains are reported."""
import datetime as dt
import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from portals import tokens
from portals.bitrix import errors
from portals.models import Credential, Portal
from tests.helpers import install_portal

PAST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def admin(client, fake_b24, db):
    portal, fake_portal = install_portal(client, fake_b24)
    fake_b24.reset_calls()
    return portal.admin_credential(), fake_portal


def test_fresh_token_is_used_as_is_without_any_call(admin, fake_b24):
    credential, _ = admin
    stored = credential.access_token
    assert tokens.credential_access_token(credential=credential) == stored
    assert fake_b24.calls == []


def test_expired_token_is_refreshed_once_and_the_new_pair_saved(admin, fake_b24):
    credential, _ = admin
    old_refresh = credential.refresh_token
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()
    token = tokens.credential_access_token(credential=credential)
    assert fake_b24.count(method="oauth/token") == 1
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.access_token == token and stored.refresh_token != old_refresh
    assert stored.expires_at > timezone.now() and stored.refreshed_at
    # The client secret went to the configured OAuth server, and only there.
    (call,) = [c for c in fake_b24.calls if c.method == "oauth/token"]
    assert call.server == "oauth" and call.params["client_secret"] == fake_b24.client_secret


def test_early_expired_token_refreshes_once_and_retries_once(admin, fake_b24):
    credential, _ = admin
    fake_b24.expire_access_token(credential.access_token)
    result = tokens.portal_call(credential=credential, method="profile")
    assert result["result"]["ID"] == "1"
    assert fake_b24.count(method="oauth/token") == 1
    assert fake_b24.count(method="profile") == 2  # the refused call, then the retry


def test_a_second_expired_token_after_refresh_is_not_retried_again(admin, fake_b24):
    credential, _ = admin
    fake_b24.fail_next("profile", status=401, error="expired_token", times=2)
    with pytest.raises(errors.ExpiredToken):
        tokens.portal_call(credential=credential, method="profile")
    assert fake_b24.count(method="oauth/token") == 1


def test_worker_that_finds_the_row_already_refreshed_uses_those_tokens(admin, fake_b24):
    credential, _ = admin
    stale = Credential.objects.get(pk=credential.pk)
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    first = Credential.objects.get(pk=credential.pk)
    tokens.credential_access_token(credential=first)  # another worker refreshed
    token = tokens.credential_refresh(credential=stale, stale_access_token=stale.access_token).access_token
    assert token == first.access_token
    assert fake_b24.count(method="oauth/token") == 1


def test_spent_refresh_token_marks_portal_needs_reauth(admin, fake_b24):
    credential, fake_portal = admin
    # The OAuth server rotated the pair but we never saved it (a crash, say).
    import requests

    requests.get(fake_b24.oauth_url + "/oauth/token/", params={
        "grant_type": "refresh_token", "client_id": fake_b24.client_id,
        "client_secret": fake_b24.client_secret, "refresh_token": credential.refresh_token,
    }, timeout=5)
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()
    with pytest.raises(tokens.ReauthRequired) as raised:
        tokens.credential_access_token(credential=credential)
    assert "administrator must open the app" in str(raised.value)
    portal = Portal.objects.get()
    assert portal.status == Portal.Status.NEEDS_REAUTH
    assert "invalid_grant" in portal.status_detail
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.refresh_token == credential.refresh_token  # kept, not overwritten with garbage


def test_uninstalled_app_refresh_marks_needs_reauth(admin, fake_b24):
    credential, fake_portal = admin
    fake_b24.uninstall(fake_portal)
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()
    with pytest.raises(tokens.ReauthRequired):
        tokens.credential_access_token(credential=credential)
    assert Portal.objects.get().status == Portal.Status.NEEDS_REAUTH


def test_oauth_server_down_during_refresh_raises_and_keeps_tokens(admin, fake_b24):
    credential, _ = admin
    before = (credential.access_token, credential.refresh_token)
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()
    fake_b24.oauth_down = True
    with pytest.raises(errors.TransportError):
        tokens.credential_access_token(credential=credential)
    stored = Credential.objects.get(pk=credential.pk)
    assert (stored.access_token, stored.refresh_token) == before
    assert Portal.objects.get().status == Portal.Status.ACTIVE


def test_wrong_client_answered_with_200_is_an_error_and_keeps_tokens(admin, fake_b24, settings):
    credential, _ = admin
    settings.B24_CLIENT_ID = "app.unknown.0001"
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()
    with pytest.raises(errors.InvalidClient):
        tokens.credential_access_token(credential=credential)
    assert Credential.objects.get(pk=credential.pk).refresh_token == credential.refresh_token


def test_expiry_from_prefers_absolute_expires():
    now = timezone.now()
    assert tokens.expiry_from(expires=2_000_000_000, now=now).year == 2033
    assert tokens.expiry_from(expires_in="60", now=now) == now + dt.timedelta(seconds=60)
    assert tokens.expiry_from(expires="garbage", expires_in=None, now=now) == now + dt.timedelta(hours=1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_workers_on_an_expired_token_cause_exactly_one_refresh(client, fake_b24):
    """PostgreSQL row locks make the single-use refresh token safe across workers."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are only real on PostgreSQL (set DATABASE_URL=postgres://...)")
    portal, _ = install_portal(client, fake_b24)
    Credential.objects.update(expires_at=PAST)
    credential_id = portal.admin_credential().pk
    fake_b24.reset_calls()
    workers, barrier, results, failures = 16, threading.Barrier(16), [], []

    def worker():
        try:
            barrier.wait()
            credential = Credential.objects.select_related("portal").get(pk=credential_id)
            token = tokens.credential_access_token(credential=credential)
            results.append(token)
        except Exception as exc:  # noqa: BLE001 - every failure is reported below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert len(results) == workers and len(set(results)) == 1
    assert fake_b24.count(method="oauth/token") == 1
    assert not [c for c in fake_b24.calls if c.status == 400]  # no invalid_grant


def test_moved_portal_is_relearned_from_the_oauth_server_and_the_call_retried(admin, fake_b24):
    credential, fake_portal = admin
    fake_b24.move_portal(fake_portal, "renamed.example.com")
    result = tokens.portal_call(credential=credential, method="profile")
    assert result["result"]["ID"] == "1"
    portal = Portal.objects.get()
    assert portal.domain == "renamed.example.com"
    assert portal.client_endpoint == fake_portal.client_endpoint
    # The 302's Location was never called; the OAuth server told us the new address.
    assert fake_b24.count(method="oauth/app.info") == 1


# --- the refresh lease: no lock across the OAuth call, and a crashed holder does not block ------


@pytest.mark.django_db(transaction=True)
def test_the_oauth_call_runs_with_no_transaction_open_and_the_lease_taken(admin, fake_b24, monkeypatch):
    credential, _ = admin
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()
    seen = {}
    real_refresh = tokens.client.oauth_refresh

    def observed(**kwargs):
        row = Credential.objects.get(pk=credential.pk)
        seen.update(atomic=connection.in_atomic_block, lease=row.refresh_lease_id,
                    until=row.refresh_lease_until)
        return real_refresh(**kwargs)

    monkeypatch.setattr(tokens.client, "oauth_refresh", observed)
    tokens.credential_access_token(credential=credential)
    assert seen["atomic"] is False  # a slow OAuth server holds no lock on the database
    assert len(seen["lease"]) == 32 and seen["until"] > timezone.now()
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.refresh_lease_id == "" and stored.refresh_lease_until is None
    assert stored.access_token == credential.access_token and not stored.is_expired()


def test_a_crashed_refreshers_lease_expires_and_the_next_caller_refreshes(admin, fake_b24):
    credential, _ = admin
    Credential.objects.filter(pk=credential.pk).update(
        expires_at=PAST, refresh_lease_id="c" * 32, refresh_lease_until=timezone.now() + dt.timedelta(seconds=0.3))
    credential.refresh_from_db()
    token = tokens.credential_access_token(credential=credential)
    assert fake_b24.count(method="oauth/token") == 1
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.access_token == token and stored.refresh_lease_id == ""


@pytest.mark.django_db(transaction=True)
def test_a_caller_waits_for_the_lease_holder_and_uses_its_pair(admin, fake_b24):
    """Another process holds the lease: this caller spends nothing and gets the holder's pair."""
    credential, fake_portal = admin
    Credential.objects.filter(pk=credential.pk).update(
        expires_at=PAST, refresh_lease_id="h" * 32, refresh_lease_until=timezone.now() + dt.timedelta(seconds=5))
    credential.refresh_from_db()
    holder_pair = fake_b24.issue_tokens(fake_portal, user_id=1)

    def holder_stores():
        Credential.objects.filter(pk=credential.pk, refresh_lease_id="h" * 32).update(
            access_token=holder_pair["access_token"], refresh_token=holder_pair["refresh_token"],
            expires_at=timezone.now() + dt.timedelta(hours=1), refresh_lease_id="", refresh_lease_until=None)
        connections.close_all()

    timer = threading.Timer(0.3, holder_stores)
    timer.start()
    try:
        assert tokens.credential_access_token(credential=credential) == holder_pair["access_token"]
    finally:
        timer.join()
    assert fake_b24.count(method="oauth/token") == 0


def test_a_failed_refresh_frees_the_lease(admin, fake_b24):
    credential, _ = admin
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()
    fake_b24.oauth_down = True
    with pytest.raises(errors.TransportError):
        tokens.credential_access_token(credential=credential)
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.refresh_lease_id == "" and stored.refresh_lease_until is None
