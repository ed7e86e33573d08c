"""Template context every page shares."""
from django.conf import settings
from django.utils.functional import SimpleLazyObject

from portals.framing import csp_nonce


def bitrix24_library(request):
    """Where pages a portal frames load Bitrix24's JS library from (the sandbox stands it in),
    and the nonce their own <script> and <style> tags carry (portals.framing's page policy)."""
    return {
        "B24_JS_LIBRARY_URL": settings.B24_JS_LIBRARY_URL,
        "csp_nonce": SimpleLazyObject(lambda: csp_nonce(request)),
    }
