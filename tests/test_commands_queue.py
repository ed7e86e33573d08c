"""Fan-out commands with --queue: one Celery task per portal on the broker (Redis DB 3 here),
which a real worker runs as the same command on that portal alone."""
import base64
import json

import pytest

from tests.fixtures_operators import run_command
from tests.fixtures_queue import redis_client_or_skip, wait_until

REDIS_URL = "redis://127.0.0.1:6379/3"


@pytest.fixture
def broker(settings, own_queue):
    client = redis_client_or_skip(REDIS_URL)
    settings.CELERY_BROKER_URL = REDIS_URL
    yield client
    client.delete(own_queue)


@pytest.mark.django_db
def test_queue_puts_one_task_per_portal_on_the_broker_and_calls_no_portal(install_portals, fake_b24, broker, own_queue):
    installed = install_portals(3)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--all", "--queue", "--placement", "TASK_VIEW_TAB")
    assert run.code == 0, run.out + run.err
    assert "bind_placement TASK_VIEW_TAB: 3 portal(s) queued for the workers" in run.out
    messages = [json.loads(raw) for raw in broker.lrange(own_queue, 0, -1)]
    assert len(messages) == 3 and fake_b24.calls == []
    assert {m["headers"]["task"] for m in messages} == {"portals.tasks.portal_command"}
    members = sorted(json.loads(base64.b64decode(m["body"]))[0][1] for m in messages)
    assert members == sorted(portal.member_id for portal, _ in installed)


@pytest.mark.django_db
def test_queue_without_a_broker_is_a_usage_error(install_portals, settings):
    install_portals(1)
    settings.CELERY_BROKER_URL = ""
    run = run_command("sync_portals", "--all", "--queue")
    assert run.code == 2 and "--queue needs CELERY_BROKER_URL" in run.err


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_queued_portals_are_worked_on_by_a_real_worker(install_portals, fake_b24, workers, settings):
    installed = install_portals(3)
    workers.start("w1", concurrency=2)
    run = run_command("bind_placement", "--all", "--queue", "--placement", "TASK_VIEW_TAB")
    assert run.code == 0, run.out + run.err
    for _, fake_portal in installed:
        wait_until(lambda: "TASK_VIEW_TAB" in {p["placement"] for p in fake_portal.placements}, timeout=30,
                   what="the worker's bind")
