"""Framing rules: only Bitrix24-facing pages may be shown in a portal's iframe.

Everything else keeps X-Frame-Options: DENY (Django's middleware). A page passed through here
drops that header and names the one origin allowed to frame it.
"""
from django.http import HttpResponse


def allow_framing_by(response: HttpResponse, origin: str | None) -> HttpResponse:
    """Let ``origin`` (the stored portal's scheme://host[:port]) frame this response."""
    response.xframe_options_exempt = True
    if origin:
        response["Content-Security-Policy"] = f"frame-ancestors 'self' {origin}"
    else:
        response["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response
