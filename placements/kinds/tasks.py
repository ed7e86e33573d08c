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
    actions = {name: f"tasks.task.{name}" for name in tasks.TASK_ACTIONS}
    words = {
        "title": _("Task widget"),
        "not_found_title": _("Task not found"),
        "not_found_text": _("It may have been deleted, or you do not have access to it."),
        "unreachable_title": _("Could not load the task"),
        "error_title": _("Could not load the task"),
        "error_text": _("Bitrix24 could not pass the task to the app just now. Try again in a minute."),
        "gone": _("The task is gone, or you no longer have access to it."),
        "refused_note": _("Bitrix24 did not allow this. The task is shown as it is now."),
        # The note says what was done; "One moment…" while it runs is never a status's word.
        "done_reload": _("Task updated."),
        "done_start": _("Task started."),
        "done_pause": _("Task paused."),
        "done_complete": _("Task completed."),
        "done_defer": _("Task deferred."),
        "done_renew": _("Task renewed."),
        "done_approve": _("Task approved."),
        "done_disapprove": _("Task returned to work."),
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
