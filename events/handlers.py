"""The built-in handlers: task events re-read the task, the doorbell queues an offline drain.

Loaded by ``EventsConfig.ready()``, like any app developer's handlers module.
"""
from __future__ import annotations

from events.registry import PermanentFailure, handler
from portals.operations import portal_admin_credential
from portals.payload import is_ascii_number
from portals.tokens import portal_call

TASK_EVENTS = ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE")
TASK_SELECT = ["ID", "TITLE", "STATUS", "RESPONSIBLE_ID", "CHANGED_DATE"]


@handler(*TASK_EVENTS)
def task_reread(event) -> str:
    """Re-read the task with the installer's token: an event carries only ids (protocol 14.2),
    and anyone who saw the application token could have posted it. A task that can no longer be
    read (deleted, or hidden from the installer) is an outcome, not an error."""
    task_id = event.object_id
    if not is_ascii_number(task_id):
        raise PermanentFailure(f"the event names no task id ({task_id[:20]!r})")
    if event.name == "ONTASKDELETE":
        return f"task {task_id} deleted"
    answer = portal_call(
        credential=portal_admin_credential(event.portal),
        method="tasks.task.get",
        params={"taskId": int(task_id), "select": TASK_SELECT},
    )
    result = answer.get("result")
    task = result.get("task") if isinstance(result, dict) else None  # [] when gone (protocol 7)
    if not isinstance(task, dict):
        return f"task {task_id} is no longer readable (deleted, or hidden from the installer)"
    return f"task {task_id} read: status {str(task.get('status', '?'))[:4]}, {str(task.get('title', ''))[:120]!r}"


@handler("ONOFFLINEEVENT")
def doorbell(event) -> str:
    """The portal's offline queue has records (protocol 13.5): drain it on a worker of its own
    (the drain outlives this event; a crash resumes its stored process_id)."""
    from events.queue import enqueue
    from events.tasks import drain_offline

    enqueue(drain_offline, event.portal_id)
    return "offline drain queued"
