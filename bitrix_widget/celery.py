"""The Celery application: ``celery -A bitrix_widget worker`` and ``celery -A bitrix_widget beat``.

Its settings (concurrency, time limits, acks late, prefetch 1, the beat schedule) are in
``bitrix_widget/celeryconfig.py``, as gunicorn's are in ``gunicorn.conf.py``.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrix_widget.settings")

app = Celery("bitrix_widget")
app.config_from_object("bitrix_widget.celeryconfig")
app.autodiscover_tasks()
