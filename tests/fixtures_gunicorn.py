"""The app as deployed, for tests across processes and threads: gunicorn with gunicorn.conf.py
(gthread) serving this checkout, pointed at the fake Bitrix24 and at a database the test names:
the PostgreSQL test database, or a SQLite file of its own (migrated first)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings

from tests.fixtures_hardening import free_port

ROOT = Path(__file__).resolve().parent.parent


def postgres_url_of(settings_dict: dict) -> str:
    """The DATABASE_URL of the database Django's connection uses (the test database)."""
    user = settings_dict["USER"] + (f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else "")
    return (f"postgres://{user}@{settings_dict['HOST'] or '127.0.0.1'}:{settings_dict['PORT'] or 5432}"
            f"/{settings_dict['NAME']}")


def app_env(fake, *, database_url: str, **extra: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": settings.SECRET_KEY,  # the action tokens this process signs must verify there
        "TOKEN_ENCRYPTION_KEYS": ",".join(settings.TOKEN_ENCRYPTION_KEYS),
        "B24_OAUTH_SERVERS": fake.oauth_url,
        "B24_CLIENT_ID": fake.client_id,
        "B24_CLIENT_SECRET": fake.client_secret,
        "B24_ALLOW_PRIVATE_ENDPOINTS": "true",
        "B24_APP_BASE_URL": "https://app.example.com",
        "ALLOWED_HOSTS": "127.0.0.1",
        **extra,
    }


def sqlite_database(tmp_path: Path, env: dict) -> str:
    """A migrated SQLite file for the server's processes to share; its DATABASE_URL."""
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT,
                   env={**env, "DATABASE_URL": url}, check=True, capture_output=True, timeout=120)
    return url


@contextlib.contextmanager
def gunicorn_serving(env: dict, tmp_path: Path, *, workers: int, threads: int | None = None, access_log: Path | None = None):
    """Start gunicorn, wait for /healthz, yield its base URL, stop it (by its own pid)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "bitrix_widget.wsgi", "-c", "gunicorn.conf.py",
               "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    if threads is not None:  # through the environment, as deployed: the settings read it too
        env = {**env, "GUNICORN_THREADS": str(threads)}
    if access_log is not None:
        command += ["--access-logfile", str(access_log), "--access-logformat", "%(p)s %(s)s %(U)s"]
    error_path = tmp_path / "gunicorn-error.log"
    with open(error_path, "w") as error_log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=error_log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, error_path.read_text()
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(15)


def server_errors(tmp_path: Path) -> list[str]:
    """Tracebacks and "database is locked" lines the server logged."""
    text = (tmp_path / "gunicorn-error.log").read_text()
    return [line for line in text.splitlines() if "Traceback" in line or "database is locked" in line]
