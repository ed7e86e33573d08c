"""Template context every page shares."""
from django.conf import settings


def bitrix24_library(request):
    """Where pages a portal frames load Bitrix24's JS library from (the sandbox stands it in)."""
    return {"B24_JS_LIBRARY_URL": settings.B24_JS_LIBRARY_URL}
