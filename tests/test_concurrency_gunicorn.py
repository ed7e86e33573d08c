"""Concurrency across processes: gunicorn with 4 workers (gunicorn.conf.py) on the real PostgreSQL
test database, many widget actions at once that all need the same expired token: exactly one
refresh reaches the OAuth server, every request succeeds, and no invalid_grant is ever seen."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from portals.models import Credential
from tests.fixtures_hardening import PAST, free_port, record_figures
from tests.fixtures_placements import VIEWER_ID

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
REQUESTS = 48


@pytest.fixture
def gunicorn(fake_b24, tmp_path):
    """gunicorn serving this checkout against the test database the test's rows are committed to."""
    if connection.vendor != "postgresql":
        pytest.skip("several processes need a real database server: set DATABASE_URL=postgres://...")
    db = connection.settings_dict
    port, access_log = free_port(), tmp_path / "access.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,  # the action tokens this process signs must verify there
        "TOKEN_ENCRYPTION_KEYS": ",".join(settings.TOKEN_ENCRYPTION_KEYS),
        "B24_OAUTH_SERVERS": fake_b24.oauth_url,
        "B24_CLIENT_ID": fake_b24.client_id,
        "B24_CLIENT_SECRET": fake_b24.client_secret,
        "B24_ALLOW_PRIVATE_ENDPOINTS": "true",
        "B24_APP_BASE_URL": "https://app.example.com",
        "ALLOWED_HOSTS": "127.0.0.1",
        # This test is about the single refresh: every one of the REQUESTS may call the portal at
        # once (the bulkhead, which would answer some of them "busy", is tested on its own).
        "B24_PORTAL_MAX_CALLS": str(REQUESTS),
    }
    if db.get("PASSWORD"):
        env["DATABASE_URL"] = env["DATABASE_URL"].replace(f"{db['USER']}@", f"{db['USER']}:{db['PASSWORD']}@")
    error_log = open(tmp_path / "error.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "bitrix_widget.wsgi", "-c", "gunicorn.conf.py",
         "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
         "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(s)s %(U)s"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=error_log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "error.log").read_text()
            time.sleep(0.2)
        yield base, access_log
    finally:
        process.terminate()
        process.wait(15)
        error_log.close()


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
