"""The event inbox: every business event Bitrix24 sends, stored, acknowledged, then processed.

App developers add handlers with ``@events.handler("ONTASKUPDATE")`` (see events/registry.py).
"""
from events.registry import handler

__all__ = ("handler",)
