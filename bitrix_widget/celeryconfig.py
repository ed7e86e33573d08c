"""Celery worker and beat settings (``celery -A bitrix_widget worker|beat``); the environment
overrides each. Tasks call slow portals (100-500 ms, sometimes seconds), so they are I/O-bound:
a few processes, each taking one task at a time, acknowledged only when done.

CELERY_BROKER_URL       redis://127.0.0.1:6379/0 or amqp://... (unset: no worker is needed, tasks
                        run in the web process right after its response)
CELERY_CONCURRENCY      worker processes (default 2 x cores + 1)
CELERY_TIME_LIMIT       seconds before a task is killed (default 300); soft limit 30 s earlier
CELERY_MAX_TASKS_PER_CHILD  recycle a process after this many tasks (default 1000)
EVENTS_OFFLINE_SWEEP_SECONDS  period of the offline-queue sweep across all portals (default 300)
"""
import multiprocessing
from pathlib import Path

import environ

env = environ.Env()
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)  # as settings.py

broker_url = env.str("CELERY_BROKER_URL", default="") or "memory://"
# The queue tasks go to and workers consume (CELERY_TASK_DEFAULT_QUEUE; default "celery").
task_default_queue = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Results are not read back: events and outcomes live in the database.
task_ignore_result = True
result_backend = None

worker_concurrency = env.int("CELERY_CONCURRENCY", default=multiprocessing.cpu_count() * 2 + 1)
task_time_limit = env.int("CELERY_TIME_LIMIT", default=300)
task_soft_time_limit = max(1, task_time_limit - 30)
worker_max_tasks_per_child = env.int("CELERY_MAX_TASKS_PER_CHILD", default=1000)

# Nothing is lost when a worker dies mid-task: the message is acknowledged after the task ran,
# and given back to the queue if the process was killed; each process reserves one task only,
# so a slow portal never holds others' events hostage in a prefetch buffer.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Redis: a message not acknowledged within this time is delivered again (longer than a task).
broker_transport_options = {"visibility_timeout": task_time_limit * 4}
broker_connection_retry_on_startup = True

task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

beat_schedule = {
    "events-offline-sweep": {
        "task": "events.tasks.offline_sweep",
        "schedule": float(env.int("EVENTS_OFFLINE_SWEEP_SECONDS", default=300)),
    },
    # Events stored while the broker was down, and retries that are due, are put on the queue.
    "events-requeue-due": {"task": "events.tasks.requeue_due", "schedule": 60.0},
    # Handlers an app update dropped are bound again, and subscriptions re-read (sync_portals).
    "portals-sync": {
        "task": "portals.tasks.sync_portals",
        "schedule": float(env.int("PORTALS_SYNC_SECONDS", default=3600)),
    },
}
