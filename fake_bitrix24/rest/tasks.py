"""tasks.task.get and the status actions (protocol 7)."""
from __future__ import annotations

from typing import Any

from fake_bitrix24.params import ci
from fake_bitrix24.rest import offline
from fake_bitrix24.state import DEFAULT_AVATAR, ApiError, FakePortal, FakeTask, FakeUser


def task_id(p: dict) -> int:
    raw = ci(p, "taskId")
    if raw is None or raw == "":
        raise ApiError(400, "100", "CTaskItem All parameters in the constructor must have real class type "
                                   "(internal error)")
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ApiError(400, "0", "wrong task id") from None


def visible(task: FakeTask, user: FakeUser) -> bool:
    return task.visible_to is None or user.id in task.visible_to


def allowed_actions(task: FakeTask, user: FakeUser | None = None) -> dict:
    """What Bitrix24's `action` block says this user may do now. A task awaiting control (4) is
    approved or returned to work by its creator; its responsible cannot complete it again."""
    s = task.status
    controls = s == "4" and user is not None and (user.id == task.created_by or user.admin)
    return {"accept": False, "decline": False, "complete": s not in ("4", "5"), "approve": controls,
            "disapprove": controls, "start": s in ("1", "2", "6"), "pause": s == "3",
            "delegate": True, "remove": True, "edit": True, "defer": s in ("1", "2", "3"),
            "renew": s in ("5", "6"), "create": True, "changeDeadline": True,
            "checklistAddItems": True, "addFavorite": True, "deleteFavorite": False,
            "rate": True, "edit.originator": False, "checklist.reorder": True,
            "elapsedtime.add": True, "dayplan.timer.toggle": False, "edit.plan": True,
            "checklist.add": True, "favorite.add": True, "favorite.delete": False}


def user_json(portal: FakePortal, uid: int) -> dict:
    u = portal.users.get(uid) or FakeUser(uid, "", "")
    return {"id": str(uid), "name": f"{u.name} {u.last_name}".strip(),
            "link": f"/company/personal/user/{uid}/", "icon": u.photo or DEFAULT_AVATAR,
            "workPosition": u.work_position}


def task_json(portal: FakePortal, task: FakeTask, select: Any = None, user: FakeUser | None = None) -> dict:
    """camelCase task object as tasks.task.get returns it (section 7); all scalars are strings."""
    full = {
        "id": str(task.id), "parentId": None, "title": task.title, "description": task.description,
        "descriptionInBbcode": "Y", "mark": None, "priority": task.priority, "multitask": "N",
        "notViewed": "N", "replicate": "N", "stageId": "0", "createdBy": str(task.created_by),
        "createdDate": "2025-01-01T10:00:00+00:00", "responsibleId": str(task.responsible_id),
        "changedBy": str(task.created_by), "changedDate": "2025-01-01T10:00:00+00:00",
        "statusChangedBy": str(task.created_by), "closedBy": None, "closedDate": None,
        "activityDate": "2025-01-01T10:00:00+00:00", "dateStart": None, "deadline": task.deadline,
        "startDatePlan": None, "endDatePlan": None, "guid": "{00000000-0000-0000-0000-000000000000}",
        "xmlId": None, "commentsCount": "0", "serviceCommentsCount": "0", "allowChangeDeadline": "Y",
        "allowTimeTracking": "N", "taskControl": "N", "addInReport": "N", "forkedByTemplateId": None,
        "timeEstimate": "0", "timeSpentInLogs": None, "matchWorkTime": "N", "forumTopicId": None,
        "forumId": None, "siteId": "s1", "subordinate": "N", "exchangeModified": None,
        "exchangeId": None, "outlookVersion": "1", "viewedDate": None, "sorting": None,
        "durationFact": None, "isMuted": "N", "isPinned": "N", "isPinnedInGroup": "N",
        "flowId": None, "status": task.status, "subStatus": task.status,
        "groupId": task.group_id, "chatId": None, "favorite": "N", "group": [],
        "creator": user_json(portal, task.created_by),
        "responsible": user_json(portal, task.responsible_id),
        "accomplices": [], "auditors": [], "accomplicesData": [], "auditorsData": [],
        "newCommentsCount": 0, "action": allowed_actions(task, user),
    }
    if isinstance(select, dict):
        select = list(select.values())
    if isinstance(select, str):
        select = [select]
    if not select or "*" in select:
        return full

    def camel(name: str) -> str:
        head, *rest = str(name).lower().split("_")
        return head + "".join(w.capitalize() for w in rest)

    wanted = {camel(s) for s in select} | {"id", "action"}
    if "createdBy" in wanted:
        wanted.add("creator")
    if "responsibleId" in wanted:
        wanted.add("responsible")
    return {k: v for k, v in full.items() if k in wanted}


def get(fake, portal, user, p):
    task = portal.tasks.get(task_id(p))
    if task is None or not visible(task, user):
        return []  # section 0.8 / 7: missing or forbidden -> empty ARRAY
    return {"task": task_json(portal, task, ci(p, "select"), user)}


def task_event_data(event: str, task_id) -> dict:
    """The ``data`` of a task event, online or in an offline record (protocol 14.2): ids only."""
    ids = {"ID": str(task_id)}
    return {
        "FIELDS_BEFORE": "undefined" if event == "ONTASKADD" else ids,
        "FIELDS_AFTER": "undefined" if event == "ONTASKDELETE" else ids,
        "IS_ACCESSIBLE_BEFORE": "undefined", "IS_ACCESSIBLE_AFTER": "undefined",
    }


def status_action(action: str, new_status: str):
    """A tasks.task.<action> method that moves the task to `new_status` when the action is allowed."""

    def method(fake, portal, user, p):
        task = portal.tasks.get(task_id(p))
        if task is None or not visible(task, user):
            raise ApiError(400, "ERROR_CORE", "Task not found or not accessible")
        if not allowed_actions(task, user)[action]:
            raise ApiError(400, "ERROR_CORE", "Action is not allowed")
        task.status = new_status
        offline.queue_record(portal, "ONTASKUPDATE", str(task.id), task_event_data("ONTASKUPDATE", task.id))
        return {"task": task_json(portal, task, user=user)}

    return method


METHODS = {
    "tasks.task.get": get,
    "tasks.task.start": status_action("start", "3"),
    "tasks.task.complete": status_action("complete", "5"),
    "tasks.task.defer": status_action("defer", "6"),
    "tasks.task.pause": status_action("pause", "2"),  # back to pending
    "tasks.task.renew": status_action("renew", "2"),  # a completed or deferred task, pending again
    "tasks.task.approve": status_action("approve", "5"),  # control accepted: completed
    "tasks.task.disapprove": status_action("disapprove", "2"),  # returned to work: pending
}
