"""The Celery application: ``celery -A bitrix_widget worker`` and ``celery -A bitrix_widget beat``.

Its settings (concurrency, time limits, acks late, prefetch 1, the beat schedule) are in
``bitrix_widget/celeryconfig.py``, as gunicorn's are in ``gunicorn.conf.py``.
"""
import os
import threading

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrix_widget.settings")

app = Celery("bitrix_widget")
app.config_from_object("bitrix_widget.celeryconfig")
app.autodiscover_tasks()


_pools: dict = {}
_pools_lock = threading.Lock()


def _connection_pool(url: str):
    """One pool of broker connections per URL: the URL is read from the settings when a task is
    sent (not frozen into the Celery app when it was first configured)."""
    with _pools_lock:
        if url not in _pools:
            from kombu import Connection

            _pools[url] = Connection(url, connect_timeout=2).Pool(limit=32)
        return _pools[url]


def publish(task, args, *, countdown: float = 0.0) -> None:
    """Send ``task(*args)`` to the broker named by CELERY_BROKER_URL (briefly retried; raises
    when the broker cannot be reached)."""
    from django.conf import settings

    with _connection_pool(settings.CELERY_BROKER_URL).acquire(block=True, timeout=2) as connection:
        task.apply_async(
            args=args, countdown=countdown or None, connection=connection, queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        )
