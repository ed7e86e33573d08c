"""Concurrency across processes: gunicorn with 4 workers (gunicorn.conf.py) on the real PostgreSQL
test database, many widget actions at once that all need the same expired token: exactly one
refresh reaches the OAuth server, every request succeeds, and no invalid_grant is ever seen."""
from __future__ import annotations

import threading

import pytest
import requests
from django.db import connection

from portals.models import Credential
from tests.fixtures_gunicorn import app_env, gunicorn_serving, postgres_url_of
from tests.fixtures_hardening import PAST, record_figures
from tests.fixtures_placements import VIEWER_ID

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
WORKERS = 4
REQUESTS = 48


@pytest.fixture
def gunicorn(fake_b24, tmp_path):
    """gunicorn serving this checkout against the test database the test's rows are committed to."""
    if connection.vendor != "postgresql":
        pytest.skip("several processes need a real database server: set DATABASE_URL=postgres://...")
    access_log = tmp_path / "access.log"
    # This test is about the single refresh: every one of the REQUESTS may call the portal at
    # once (the bulkhead, which would answer some of them "busy", is tested on its own).
    env = app_env(fake_b24, database_url=postgres_url_of(connection.settings_dict),
                  B24_PORTAL_MAX_CALLS=str(REQUESTS))
    with gunicorn_serving(env, tmp_path, workers=WORKERS, access_log=access_log) as base:
        yield base, access_log


def test_gunicorn_workers_on_an_expired_token_cause_exactly_one_refresh(client, widget, gunicorn):
    base, access_log = gunicorn
    fake = widget.fake
    token = widget.action_token(client)
    Credential.objects.filter(user_id=VIEWER_ID).update(expires_at=PAST)
    fake.set_rate_limit(None)
    fake.latency_for["oauth"] = 0.3  # every worker is waiting on the lock while the refresh runs
    fake.reset_calls()
    barrier, statuses = threading.Barrier(REQUESTS), []

    def act():
        barrier.wait(10)
        response = requests.post(base + "/placements/action/", data={"action": "reload", "token": token}, timeout=30)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=act) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    pids = {line.split()[0] for line in access_log.read_text().splitlines() if "/placements/action/" in line}
    refreshes = fake.count(method="oauth/token")
    refused = [call for call in fake.calls if call.method == "oauth/token" and call.status != 200]
    record_figures(
        "concurrent_expiry_gunicorn", workers=WORKERS, processes_that_served=len(pids), requests=REQUESTS,
        ok=statuses.count(200), refresh_calls=refreshes, invalid_grant=len(refused),
    )
    assert statuses == [200] * REQUESTS
    assert refreshes == 1 and refused == []
    assert len(pids) > 1, "the requests were all served by one process"
    stored = Credential.objects.get(user_id=VIEWER_ID)
    assert stored.expires_at > PAST and stored.access_token != widget.tokens["access_token"]
