"""Concurrency on PostgreSQL, threads with their own database connections: one expired token,
many users of it, exactly one refresh; identical installs at once leave one consistent row."""
from __future__ import annotations

import threading
from urllib.parse import urlencode

import pytest
from django.db import connection, connections
from django.test import Client

from portals import tokens
from portals.models import Credential, Portal
from tests.fixtures_hardening import PAST, record_figures
from tests.helpers import install_payload, install_portal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 32


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no row locks: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test")


def run_at_once(count: int, work) -> tuple[list, list]:
    """``work(i)`` in ``count`` threads released together; (results, failures)."""
    barrier, results, failures = threading.Barrier(count), [], []

    def worker(i):
        try:
            barrier.wait(10)
            results.append(work(i))
        except Exception as exc:  # noqa: BLE001 - every failure is asserted on
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, failures


def invalid_grants(fake) -> int:
    return sum(1 for call in fake.calls if call.method == "oauth/token" and call.status != 200)


@pytest.fixture(autouse=True)
def no_bulkhead(settings):
    """These tests are about races: all THREADS may call one portal at once (the per-portal
    bulkhead, which would answer some of them "busy", has its own tests in test_capacity.py)."""
    settings.B24_PORTAL_MAX_CALLS = THREADS


@pytest.fixture
def admin(client, fake_b24):
    portal, fake_portal = install_portal(client, fake_b24)
    fake_b24.set_rate_limit(None)
    fake_b24.latency_for["oauth"] = 0.2  # a slow OAuth server widens the window for a race
    fake_b24.reset_calls()
    return Credential.objects.get(portal=portal, is_admin=True), fake_portal


def _fresh_credential(pk: int) -> Credential:
    return Credential.objects.select_related("portal").get(pk=pk)


def test_threads_on_an_expired_token_cause_exactly_one_refresh(admin, fake_b24):
    credential, _ = admin
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    results, failures = run_at_once(
        THREADS, lambda i: tokens.credential_access_token(credential=_fresh_credential(credential.pk))
    )
    assert failures == []
    assert len(results) == THREADS and len(set(results)) == 1
    assert fake_b24.count(method="oauth/token") == 1 and invalid_grants(fake_b24) == 0
    assert Credential.objects.get(pk=credential.pk).access_token == results[0]
    record_figures("concurrent_expiry_threads_expired_in_db", threads=THREADS,
                   refresh_calls=fake_b24.count(method="oauth/token"), invalid_grant=invalid_grants(fake_b24))


def test_threads_calling_with_a_token_bitrix24_expired_early_cause_exactly_one_refresh(admin, fake_b24):
    """Our row says fresh, Bitrix24 says expired_token: every thread's call fails, one refreshes."""
    credential, _ = admin
    fake_b24.expire_access_token(credential.access_token)
    results, failures = run_at_once(
        THREADS, lambda i: tokens.portal_call(credential=_fresh_credential(credential.pk), method="profile")
    )
    assert failures == []
    assert all(result["result"]["ID"] == "1" for result in results) and len(results) == THREADS
    assert fake_b24.count(method="oauth/token") == 1 and invalid_grants(fake_b24) == 0
    record_figures("concurrent_expiry_threads_expired_early", threads=THREADS,
                   refresh_calls=fake_b24.count(method="oauth/token"), invalid_grant=invalid_grants(fake_b24))


@pytest.mark.parametrize("copies", [2, 8])
def test_identical_installs_at_once_all_answer_200_and_leave_one_row(fake_b24, copies):
    fake_portal = fake_b24.add_portal(domain="race.example.com")
    grant = fake_b24.issue_tokens(fake_portal, user_id=1)
    fake_b24.set_rate_limit(None)
    query, body = install_payload(fake_b24, fake_portal, grant)
    url = "/portals/install/?" + urlencode(query)

    def install(i):
        return Client().post(url, urlencode(body), content_type="application/x-www-form-urlencoded").status_code

    statuses, failures = run_at_once(copies, install)
    assert failures == [] and statuses == [200] * copies
    assert Portal.objects.count() == 1 and Credential.objects.count() == 1
    portal = Portal.objects.get()
    credential = portal.credentials.get()
    assert portal.status == Portal.Status.ACTIVE and portal.client_endpoint == fake_portal.client_endpoint
    assert (credential.access_token, credential.refresh_token) == (grant["access_token"], grant["refresh_token"])
    assert credential.is_admin
    record_figures(f"identical_installs_at_once_{copies}", requests=copies, statuses=statuses,
                   portal_rows=Portal.objects.count(), credential_rows=Credential.objects.count())
