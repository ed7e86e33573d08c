"""The queue under test with a real Redis and real ``celery -A bitrix_widget worker`` processes:
the web answers before the work is done, duplicates are processed once, and every process shares
one per-portal budget of Bitrix24 calls."""
from __future__ import annotations

import os
import signal
import time

import pytest

from events.models import Event, OfflineBatch
from tests.fixtures_events import task_event_body
from tests.fixtures_hardening import record_figures
from tests.fixtures_queue import wait_until
from tests.helpers import install_portal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def post_timed(client, body) -> tuple[object, float]:
    started = time.perf_counter()
    response = client.post("/portals/events/", body)
    return response, time.perf_counter() - started


def test_an_event_is_acknowledged_under_half_a_second_while_the_portal_takes_two(client, fake_b24, workers):
    portal, fake_portal = install_portal(client, fake_b24)
    fake_b24.add_task(fake_portal, 31, title="Quarterly report", status="3")
    workers.start("w1", B24_READ_TIMEOUT="5")
    fake_b24.reset_calls()
    fake_b24.latency_for["portal"] = 2.0
    body = task_event_body(fake_b24, fake_portal)
    first, first_ack = post_timed(client, body)
    again, again_ack = post_timed(client, body)  # Bitrix24 (or a forger) delivers it twice
    assert first.status_code == again.status_code == 200, first.content
    assert first.json()["queued"] is True and again.json()["duplicate"] is True
    assert first_ack < 0.5 and again_ack < 0.5
    started = time.perf_counter()
    event = wait_until(lambda: Event.objects.filter(status="done").first(), timeout=30, what="the event done")
    processed_after = time.perf_counter() - started
    time.sleep(1.0)  # a second processing would have started by now
    assert Event.objects.count() == 1 and event.attempts == 1
    assert "task 31 read" in event.outcome
    assert fake_b24.count("tasks.task.get") == 1
    record_figures(
        "event_ack_with_a_2s_portal", ack_seconds=round(first_ack, 3), duplicate_ack_seconds=round(again_ack, 3),
        processed_seconds_after_ack=round(processed_after, 2),
    )


def test_two_worker_processes_keep_one_portal_at_its_rate(client, fake_b24, workers):
    """Four processes in two workers re-read 24 tasks of one portal: together they stay inside
    the portal's budget (4 a second, burst 2 here), so the portal never answers 503."""
    portal, fake_portal = install_portal(client, fake_b24)
    for task_id in range(1, 25):
        fake_b24.add_task(fake_portal, task_id, title=f"Task {task_id}")
    limits = {"B24_RATE_PER_SECOND": "4", "B24_RATE_BURST": "2"}
    workers.start("w1", concurrency=2, **limits)
    workers.start("w2", concurrency=2, **limits)
    fake_b24.set_rate_limit(capacity=3, drain_per_second=4.0)  # one over our burst: clock slack
    fake_b24.latency_for["portal"] = 0.05
    fake_b24.reset_calls()
    for task_id in range(1, 25):
        response = client.post("/portals/events/", task_event_body(fake_b24, fake_portal, task_id=str(task_id)))
        assert response.status_code == 200
    wait_until(lambda: Event.objects.filter(status="done").count() == 24, timeout=60, what="24 events done")
    reads = sorted(c.ts for c in fake_b24.calls if c.method == "tasks.task.get")
    refused = [c for c in fake_b24.calls if c.status == 503]
    observed = (len(reads) - 2) / (reads[-1] - reads[0])  # the burst of 2 goes at once
    threads = {c.thread for c in fake_b24.calls if c.method == "tasks.task.get"}
    assert len(reads) == 24 and refused == []
    assert fake_b24.max_rate(fake_portal.domain, window=1.0) <= 2 + 4 + 1
    assert 2.0 <= observed <= 4.4  # never above the rate; below it only on a loaded machine
    workers_used = [w.name for w in workers.started if "succeeded" in w.log.read_text()]
    record_figures(
        "shared_limiter_two_workers", rate_limit=4, burst=2, calls=len(reads), refused_503=len(refused),
        observed_calls_per_second=round(observed, 2), busiest_second=fake_b24.max_rate(fake_portal.domain, 1.0),
        workers_that_ran_tasks=len(workers_used), fake_threads=len(threads),
    )


def test_a_worker_killed_mid_batch_loses_nothing_the_stored_process_id_is_resumed(client, fake_b24, workers):
    portal, fake_portal = install_portal(client, fake_b24)
    for task_id in range(1, 13):
        fake_b24.add_task(fake_portal, task_id, title=f"Task {task_id}")
        fake_b24.task_changed(fake_portal, task_id)  # queued offline while the app was down
    worker = workers.start("w1", B24_READ_TIMEOUT="5")
    fake_b24.latency_for["portal"] = 0.3
    fake_b24.reset_calls()
    doorbell = {
        "event": "ONOFFLINEEVENT", "ts": "1766047200", "auth[member_id]": fake_portal.member_id,
        "auth[domain]": fake_portal.domain, "auth[application_token]": fake_portal.application_token,
    }
    assert client.post("/portals/events/", doorbell).status_code == 200
    wait_until(lambda: Event.objects.filter(source="offline", status="done").count() >= 3, timeout=30,
               what="the drain under way")
    assert OfflineBatch.objects.filter(portal=portal).exists()  # the process_id is stored
    killed = worker.child_pids()
    for pid in killed:  # the process running the batch dies (an OOM kill, a lost container)
        os.kill(pid, signal.SIGKILL)
    done_at_kill = Event.objects.filter(source="offline", status="done").count()
    wait_until(lambda: not fake_b24.offline_records(fake_portal), timeout=60, what="the queue emptied")
    wait_until(lambda: not OfflineBatch.objects.exists(), timeout=10, what="the batch settled")
    offline = Event.objects.filter(source="offline")
    assert offline.count() == 12 and set(offline.values_list("status", flat=True)) == {"done"}
    gets = [c for c in fake_b24.calls if c.method == "event.offline.get"]
    process_ids = {c.params.get("process_id") for c in gets if c.params.get("process_id")}
    assert len(process_ids) == 1  # the interrupted reservation was asked for again
    assert all(str(c.params.get("clear")) == "0" for c in gets)  # never clear=1
    assert "SIGKILL" in worker.log.read_text() or "WorkerLostError" in worker.log.read_text()
    record_figures("worker_killed_mid_batch", records=12, done_before_the_kill=done_at_kill,
                   killed_processes=len(killed), lost=0)


def test_throughput_of_one_worker_against_a_portal_answering_in_100_ms(client, fake_b24, workers):
    """A figure for bench/events.py: 40 task events queued, then drained by one worker (4 pool
    processes) from a 100 ms portal, against the baseline of the same re-reads one after another."""
    portal, fake_portal = install_portal(client, fake_b24)
    count, latency, processes = 40, 0.1, 4
    for task_id in range(1, count + 1):
        fake_b24.add_task(fake_portal, task_id, title=f"Task {task_id}")
    fake_b24.latency_for["portal"] = latency
    fake_b24.set_rate_limit(None)
    acks = []
    for task_id in range(1, count + 1):  # the app is up, its worker is not: the events wait in Redis
        response, ack = post_timed(client, task_event_body(fake_b24, fake_portal, task_id=str(task_id)))
        assert response.status_code == 200
        acks.append(ack)
    workers.start("w1", concurrency=processes, B24_RATE_PER_SECOND="0")  # the budget is not measured here
    started = time.perf_counter()
    wait_until(lambda: Event.objects.filter(status="done").count() == count, timeout=120, what="all events done")
    seconds = time.perf_counter() - started
    baseline = count * latency  # one process re-reading each task in turn: the portal's latency alone
    acks.sort()
    record_figures(
        "one_worker_throughput", events=count, portal_latency_s=latency, worker_processes=processes,
        seconds=round(seconds, 2), events_per_second=round(count / seconds, 1),
        baseline_sequential_events_per_second=round(count / baseline, 1),
        ratio_to_baseline=round(baseline / seconds, 2),
        ack_p50_ms=round(acks[len(acks) // 2] * 1000, 1), ack_max_ms=round(acks[-1] * 1000, 1),
    )
