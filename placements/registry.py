"""The placements this app serves: one small class per Bitrix24 placement code.

Adding a placement is a subclass plus a template; the handler view, the action view and the
install binding read this registry and never name a placement themselves.
"""
from __future__ import annotations

from portals.payload import PayloadError
from placements import tasks

class Placement:
    """A widget placement.

    ``code`` and ``title`` are what ``placement.bind`` registers; ``template`` renders the page;
    ``entity_keys`` are the ``PLACEMENT_OPTIONS`` keys that name the entity, first found wins;
    ``load_commands``/``view`` say what one ``batch`` fetches and how the page shows it;
    ``actions`` maps an action name (``reload`` is always there) to the REST method it calls.
    """

    code: str = ""
    title: str = ""
    scope: str = ""  # the Bitrix24 scope its REST calls need (the app asks for it at registration)
    template: str = ""
    entity_keys: tuple[str, ...] = ()
    actions: dict[str, str] = {}

    @classmethod
    def entity_id(cls, options: dict) -> str:
        """The numeric entity id from PLACEMENT_OPTIONS, or PayloadError (a 400)."""
        value = next((options[key] for key in cls.entity_keys if key in options), None)
        if value is None or (isinstance(value, str) and value.strip() in ("", "undefined")):
            raise PayloadError(f"PLACEMENT_OPTIONS has no {' or '.join(cls.entity_keys)}.")
        text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not text.isdigit() or len(text) > 18 or int(text) == 0:
            raise PayloadError(f"The {cls.entity_keys[0]} in PLACEMENT_OPTIONS must be a positive number.")
        return text

    @classmethod
    def load_commands(cls, entity_id: str) -> dict[str, tuple[str, dict]]:
        """The batch commands (besides the viewer's ``profile``) that load the entity."""
        raise NotImplementedError

    @classmethod
    def view(cls, results: dict, *, origin: str, options: dict, viewer_id: int | None) -> dict | None:
        """The entity as the template and the action answer show it; None when missing/forbidden."""
        raise NotImplementedError

    @classmethod
    def action_command(cls, action: str, entity_id: str) -> tuple[str, dict] | None:
        """The REST call an action makes before the entity is fetched again (None for reload)."""
        method = cls.actions.get(action)
        return None if method is None else (method, cls.action_params(entity_id))

    @classmethod
    def action_params(cls, entity_id: str) -> dict:
        raise NotImplementedError

    @classmethod
    def action_names(cls) -> tuple[str, ...]:
        return ("reload", *cls.actions)


class TaskPlacement(Placement):
    """Any placement inside a task card: the entity is the task, loaded with the viewer's rights."""

    scope = "task"
    entity_keys = ("taskId", "TASK_ID")  # TASK_ID: portals older than 2026-08 (protocol 0.2)
    actions = {
        "start": "tasks.task.start",
        "complete": "tasks.task.complete",
        "defer": "tasks.task.defer",
    }

    @classmethod
    def load_commands(cls, entity_id: str) -> dict[str, tuple[str, dict]]:
        return {"task": ("tasks.task.get", {"taskId": entity_id, "select": tasks.TASK_SELECT})}

    @classmethod
    def view(cls, results: dict, *, origin: str, options: dict, viewer_id: int | None) -> dict | None:
        return tasks.task_view(
            results.get("task"), origin=origin, uri=options.get("URI"), viewer_id=viewer_id
        )

    @classmethod
    def action_params(cls, entity_id: str) -> dict:
        return {"taskId": entity_id}


_REGISTRY: dict[str, type[Placement]] = {}


def register(cls: type[Placement]) -> type[Placement]:
    _REGISTRY[cls.code] = cls
    return cls


def unregister(code: str) -> None:
    _REGISTRY.pop(code, None)


def get(code: str) -> type[Placement] | None:
    return _REGISTRY.get(code)


def all_placements() -> list[type[Placement]]:
    return list(_REGISTRY.values())


@register
class TaskViewTopPanel(TaskPlacement):
    code = "TASK_VIEW_TOP_PANEL"
    title = "Task widget"
    template = "placements/task_view_top_panel.html"
