"""A real Redis (DB 1-3 are the events tests') and real Celery worker processes for the queue tests.

Workers are child processes of this test run, on the PostgreSQL test database the test's rows
are committed to (several processes cannot share pytest's in-memory SQLite database).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/1"


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_environment(fake, **extra: str) -> dict:
    """The environment of a server or worker process run by a test: this test database, the
    secrets this process encrypts tokens with, and the fake Bitrix24 as the trusted servers."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "TOKEN_ENCRYPTION_KEYS": ",".join(settings.TOKEN_ENCRYPTION_KEYS),
        "B24_OAUTH_SERVERS": fake.oauth_url,
        "B24_CLIENT_ID": fake.client_id,
        "B24_CLIENT_SECRET": fake.client_secret,
        "B24_ALLOW_PRIVATE_ENDPOINTS": "true",
        "B24_APP_BASE_URL": "https://app.example.com",
        "ALLOWED_HOSTS": "127.0.0.1",
        **extra,
    }


@pytest.fixture
def redis_broker(settings):
    """Redis DB 1, emptied before and after; the web side (this process) publishes to it."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis does not answer on 127.0.0.1:6379 (.ci/run starts it)")
    if connection.vendor != "postgresql":
        pytest.skip("worker processes need a real database server: set DATABASE_URL=postgres://...")
    client.flushdb()
    settings.CELERY_BROKER_URL = REDIS_URL
    yield client
    client.flushdb()


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path
    name: str

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL the worker and its pool, as an OOM killer or a lost machine would."""
        for pid in self.child_pids():
            os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Workers:
    fake: object
    tmp_path: Path
    started: list = field(default_factory=list)

    def start(self, name: str = "w1", *, concurrency: int = 1, **env: str) -> Worker:
        log = self.tmp_path / f"worker-{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bitrix_widget", "worker", "--loglevel=INFO",
             "-P", "prefork", "-c", str(concurrency), "-n", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=child_environment(self.fake, CELERY_BROKER_URL=REDIS_URL, **env),
            stdout=subprocess.DEVNULL, stderr=open(log, "w"),
        )
        worker = Worker(process, log, name)
        self.started.append(worker)
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker did not start:\n" + log.read_text()[-3000:]
            time.sleep(0.2)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(fake_b24, redis_broker, tmp_path):
    """Factory of real ``celery -A bitrix_widget worker`` processes; all stopped at the end."""
    pool = Workers(fake_b24, tmp_path)
    yield pool
    pool.stop_all()


def wait_until(predicate, *, timeout: float = 30.0, every: float = 0.1, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
