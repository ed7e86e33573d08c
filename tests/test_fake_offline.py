"""The fake's offline queue answers as protocol 13 says (plain requests, no Django)."""
import pytest
import requests

from fake_bitrix24 import FakeBitrix24


@pytest.fixture
def fake():
    with FakeBitrix24() as f:
        yield f


@pytest.fixture
def admin(fake):
    portal = fake.add_portal()
    return portal, fake.issue_tokens(portal)["access_token"]


def call(portal, method, token, **params):
    return requests.post(portal.client_endpoint + method, json={**params, "auth": token}, timeout=5).json()



def test_an_offline_bind_needs_no_handler_and_only_bound_events_are_queued(fake, admin):
    portal, token = admin
    assert fake.task_changed(portal, 1) is None  # not bound offline: nothing queued
    assert call(portal, "event.bind", token, event="ONTASKUPDATE", event_type="offline")["result"] is True
    assert call(portal, "event.get", token)["result"][-1] == {
        "event": "ONTASKUPDATE", "handler": "", "auth_type": "0", "offline": 1}
    assert fake.task_changed(portal, 1)["EVENT_NAME"] == "ONTASKUPDATE"


def test_offline_methods_are_for_administrators_only(fake, admin):
    portal, _ = admin
    fake.add_user(portal, 7)
    user_token = fake.issue_tokens(portal, user_id=7)["access_token"]
    answer = call(portal, "event.offline.get", user_token, clear=0)
    assert answer["error"] == "ACCESS_DENIED"


def test_one_record_per_changed_object_stamped_with_the_latest_change(fake, admin):
    portal, token = admin
    call(portal, "event.bind", token, event="ONTASKUPDATE", event_type="offline")
    for _ in range(5):
        fake.task_changed(portal, 31)
    fake.task_changed(portal, 32)
    assert [r["EVENT_DATA"]["FIELDS_AFTER"]["ID"] for r in fake.offline_records(portal)] == ["31", "32"]


def test_clear_0_reserves_under_a_process_id_that_returns_the_unsettled_ones(fake, admin):
    portal, token = admin
    call(portal, "event.bind", token, event="ONTASKUPDATE", event_type="offline")
    for task_id in (1, 2, 3):
        fake.task_changed(portal, task_id)
    first = call(portal, "event.offline.get", token, clear=0)["result"]
    assert first["process_id"] and len(first["events"]) == 3
    assert call(portal, "event.offline.get", token, clear=0)["result"]["events"] == []  # reserved
    ids = [r["ID"] for r in first["events"]]
    call(portal, "event.offline.clear", token, process_id=first["process_id"], id=ids[:1])
    again = call(portal, "event.offline.get", token, clear=0, process_id=first["process_id"])["result"]
    assert [r["ID"] for r in again["events"]] == ids[1:]
    call(portal, "event.offline.error", token, process_id=first["process_id"],
         message_id=[again["events"][0]["MESSAGE_ID"]])
    flagged = call(portal, "event.offline.get", token, clear=0, error=1)["result"]["events"]
    assert [r["ID"] for r in flagged] == [ids[1]]
    assert [(r["ID"], r["ERROR"]) for r in call(portal, "event.offline.list", token)["result"]] == [
        (ids[1], "1"), (ids[2], "0")]


def test_clear_1_the_default_deletes_what_it_returns(fake, admin):
    portal, token = admin
    call(portal, "event.bind", token, event="ONTASKADD", event_type="offline")
    fake.task_changed(portal, 5, "ONTASKADD")
    answer = call(portal, "event.offline.get", token)["result"]
    assert answer["process_id"] is None and len(answer["events"]) == 1
    assert answer["events"][0]["EVENT_DATA"]["FIELDS_BEFORE"] == "undefined"
    assert fake.offline_records(portal) == []


def test_a_task_action_through_rest_queues_its_update(fake, admin):
    portal, token = admin
    call(portal, "event.bind", token, event="ONTASKUPDATE", event_type="offline")
    fake.add_task(portal, 9, status="2")
    assert "task" in call(portal, "tasks.task.start", token, taskId=9)["result"]
    assert [r["EVENT_NAME"] for r in fake.offline_records(portal)] == ["ONTASKUPDATE"]
