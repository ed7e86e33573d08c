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
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from tests.fixtures_gunicorn import app_env, postgres_url_of

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/1"


def redis_client_or_skip(url: str):
    """A client of one Redis DB (1-3 are the events tests'); the test is skipped when Redis does
    not answer (.ci/run starts it). Nothing is flushed: other runs of the suite on this machine
    may share the DB, so each test sends to a queue of its own (``own_queue``)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis does not answer on 127.0.0.1:6379 (.ci/run starts it)")
    return client


@pytest.fixture
def own_queue(settings) -> str:
    """A Celery queue name for this test alone (its workers consume it, its tasks go to it)."""
    settings.CELERY_TASK_DEFAULT_QUEUE = f"test-{uuid.uuid4().hex[:12]}"
    return settings.CELERY_TASK_DEFAULT_QUEUE


@pytest.fixture
def redis_broker(settings, own_queue):
    """Redis DB 1 and a queue of this test's own; the web side (this process) publishes to it."""
    if connection.vendor != "postgresql":
        pytest.skip("worker processes need a real database server: set DATABASE_URL=postgres://...")
    client = redis_client_or_skip(REDIS_URL)
    settings.CELERY_BROKER_URL = REDIS_URL
    yield client
    client.delete(own_queue)


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
    queue: str
    started: list = field(default_factory=list)

    def start(self, name: str = "w1", *, concurrency: int = 1, **env: str) -> Worker:
        log = self.tmp_path / f"worker-{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bitrix_widget", "worker", "--loglevel=INFO",
             "-P", "prefork", "-c", str(concurrency), "-n", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=app_env(self.fake, database_url=postgres_url_of(connection.settings_dict),
                                  CELERY_BROKER_URL=REDIS_URL, CELERY_TASK_DEFAULT_QUEUE=self.queue, **env),
            stdout=subprocess.DEVNULL, stderr=open(log, "w"),
        )
        worker = Worker(process, log, name)
        self.started.append(worker)
        deadline = time.monotonic() + 120  # a loaded machine boots a worker slowly
        while "ready." not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker did not start:\n" + log.read_text()[-3000:]
            time.sleep(0.2)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(fake_b24, redis_broker, tmp_path, own_queue):
    """Factory of real ``celery -A bitrix_widget worker`` processes; all stopped at the end."""
    pool = Workers(fake_b24, tmp_path, own_queue)
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
