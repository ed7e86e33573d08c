"""The placements this app serves: one small class per Bitrix24 placement code.

Adding a placement is a subclass plus a template; the handler view and the install binding read
this registry and never name a placement themselves.
"""
from __future__ import annotations


class Placement:
    """A widget placement. Subclasses set ``code`` and ``title`` (shown in Bitrix24's menu)."""

    code: str = ""
    title: str = ""
    template: str = ""


_REGISTRY: dict[str, type[Placement]] = {}


def register(cls: type[Placement]) -> type[Placement]:
    _REGISTRY[cls.code] = cls
    return cls


def get(code: str) -> type[Placement] | None:
    return _REGISTRY.get(code)


def all_placements() -> list[type[Placement]]:
    return list(_REGISTRY.values())


@register
class TaskViewTopPanel(Placement):
    code = "TASK_VIEW_TOP_PANEL"
    title = "Task widget"
    template = "placements/task_view_top_panel.html"
