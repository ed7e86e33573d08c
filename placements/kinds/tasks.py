"""Placements inside a Bitrix24 task card: the entity is the task, loaded with the viewer's rights."""
from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from placements import registry, tasks


class TaskPlacement(registry.Placement):
    """Any placement inside a task card (TASK_VIEW_TOP_PANEL, TASK_VIEW_TAB, ...)."""

    scope = "task"
    entity_keys = ("taskId", "TASK_ID")  # TASK_ID: portals older than 2026-08 (protocol 0.2)
    answer_key = "task"
    script = "placements/_task_actions.js.html"
    actions = {
        "start": "tasks.task.start",
        "complete": "tasks.task.complete",
        "defer": "tasks.task.defer",
    }
    words = {
        "title": _("Task widget"),
        "not_found_title": _("Task not found"),
        "not_found_text": _("The task does not exist, or you do not have access to it."),
        "gone": _("The task was not found, or you no longer have access to it."),
        "session_expired": _("Your Bitrix24 session has expired. Close the task and open it again."),
        "unreachable_text": _(
            "Bitrix24 could not be reached or did not answer in time. Close the task and open it again in a minute."
        ),
        "error_text": _("Bitrix24 answered with an error. Close the task and open it again."),
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


@registry.register
class TaskViewTopPanel(TaskPlacement):
    code = "TASK_VIEW_TOP_PANEL"
    title = "Task widget"
    where = _("In every task card, at the top: the task's status, deadline and people, with buttons "
              "to start, complete or defer it.")
    template = "placements/task_view_top_panel.html"
