"""Framing rules and the page policy of everything a portal frames.

Everything else keeps X-Frame-Options: DENY (Django's middleware). A page passed through here
drops that header and names the one origin allowed to frame it; given the request, it also gets
a full Content-Security-Policy: nothing loads but Bitrix24's library and the page's own script
and style (marked with this response's nonce), so markup slipped into the page runs nothing.
"""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def csp_nonce(request: HttpRequest) -> str:
    """This response's nonce: templates put it on their <script> and <style> tags."""
    nonce = getattr(request, "_csp_nonce", None)
    if nonce is None:
        nonce = request._csp_nonce = secrets.token_urlsafe(18)
    return nonce


def library_source(url: str) -> str:
    """B24_JS_LIBRARY_URL as a CSP source: its origin (a scheme-relative ``//host/...`` gives the
    bare host, which matches the page's own scheme), or 'self' for a path of ours (the sandbox)."""
    parts = urlsplit(url)
    if parts.netloc:
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme else parts.netloc
    return "'self'"


def page_policy(*, request: HttpRequest, frame_origin: str, form_action: str = "'none'") -> str:
    nonce = csp_nonce(request)
    image_sources = " ".join(dict.fromkeys(["'self'", frame_origin, "https:", "data:"]))
    return "; ".join([
        "default-src 'none'",
        f"script-src {library_source(settings.B24_JS_LIBRARY_URL)} 'nonce-{nonce}'",
        f"style-src 'nonce-{nonce}'",
        f"img-src {image_sources}",  # people's avatars: on the portal, or its CDN
        "connect-src 'self'",  # the widget's actions
        "base-uri 'none'",
        f"form-action {form_action}",
        f"frame-ancestors 'self' {frame_origin}",
    ])


def allow_framing_by(
    response: HttpResponse, origin: str | None, *, request: HttpRequest | None = None, form_action: str = "'none'"
) -> HttpResponse:
    """Let ``origin`` (the stored portal's scheme://host[:port]) frame this response; with
    ``request``, under the full page policy (the template must use ``csp_nonce``)."""
    response.xframe_options_exempt = True
    if request is not None and origin:
        response["Content-Security-Policy"] = page_policy(request=request, frame_origin=origin, form_action=form_action)
    elif origin:
        response["Content-Security-Policy"] = f"frame-ancestors 'self' {origin}"
    else:
        response["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response
