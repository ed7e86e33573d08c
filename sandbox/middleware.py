"""Starts the sandbox's fake Bitrix24 with the server, so it runs before the first request."""
from django.core.exceptions import MiddlewareNotUsed

from sandbox.runtime import sandbox


class SandboxStartMiddleware:
    """Django builds middleware once, when a server loads its handler (not for manage.py
    commands): start the fake then, and drop out of the request path (MiddlewareNotUsed)."""

    def __init__(self, get_response):
        sandbox()
        raise MiddlewareNotUsed("the sandbox is running")
