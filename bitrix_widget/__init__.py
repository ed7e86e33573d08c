# The Celery app is loaded with Django, so @shared_task functions bind to it (Celery's convention).
from bitrix_widget.celery import app as celery_app

__all__ = ("celery_app",)
