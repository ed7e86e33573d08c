"""WSGI entry point (gunicorn bitrix_widget.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrix_widget.settings")
application = get_wsgi_application()
