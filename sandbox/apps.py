from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SandboxConfig(AppConfig):
    """A simulated Bitrix24 portal for development: installed only when settings.SANDBOX is on."""

    name = "sandbox"

    def ready(self):
        # Defence in depth: settings.py only installs this app with DEBUG on and no credentials.
        if not settings.DEBUG or not settings.SANDBOX:
            raise ImproperlyConfigured("The sandbox runs only with DEBUG on and no Bitrix24 credentials.")
