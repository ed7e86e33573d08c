"""The offline queue as the safety net (protocol 13), against the fake's event.offline.* methods:
records queued while the app was down are drained after the doorbell, read with clear=0 only,
cleared when done, flagged with event.offline.error when their re-read fails and processed by
the next sweep; malformed records end failed with a reason."""
import pytest
from django.utils import timezone

from events.models import Event, OfflineBatch, OfflineState
from events.offline import offline_drain
from events.tasks import offline_sweep
from tests.fixtures_operators import run_command
from tests.helpers import install_portal

pytestmark = pytest.mark.django_db
OFFLINE_TASK_EVENTS = {"ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE"}


@pytest.fixture
def installed(client, fake_b24, settings):
    settings.CELERY_BROKER_URL = ""
    settings.EVENTS_RETRY_BASE_SECONDS = 0  # the next sweep may retry at once
    portal, fake_portal = install_portal(client, fake_b24, domain="offline.example.com")
    for task_id in (31, 32, 33):
        fake_b24.add_task(fake_portal, task_id, title=f"Task {task_id}", status="2")
    return portal, fake_portal


def doorbell_body(fake, fake_portal, ts="1766047200"):
    return {
        "event": "ONOFFLINEEVENT", "ts": ts,
        "auth[domain]": fake_portal.domain, "auth[member_id]": fake_portal.member_id,
        "auth[application_token]": fake_portal.application_token,
        "auth[server_endpoint]": fake.oauth_url + "/rest/", "auth[client_endpoint]": fake_portal.client_endpoint,
    }


def offline_gets(fake):
    return [c for c in fake.calls if c.method == "event.offline.get"]


def test_install_binds_the_task_events_offline_without_a_handler(installed):
    _, fake_portal = installed
    offline = [e for e in fake_portal.events if e["offline"]]
    assert {e["event"] for e in offline} == OFFLINE_TASK_EVENTS
    assert all(e["handler"] == "" for e in offline)


def test_records_queued_while_the_app_was_down_are_processed_after_the_doorbell(client, fake_b24, installed):
    portal, fake_portal = installed
    for task_id in (31, 32, 33):
        fake_b24.task_changed(fake_portal, task_id)
    fake_b24.task_changed(fake_portal, 31)  # changed again: still one record (latest state)
    assert len(fake_b24.offline_records(fake_portal)) == 3
    fake_b24.reset_calls()
    response = client.post("/portals/events/", doorbell_body(fake_b24, fake_portal))
    assert response.status_code == 200, response.content
    events = Event.objects.filter(source="offline").order_by("object_id")
    assert [(e.object_id, e.status) for e in events] == [("31", "done"), ("32", "done"), ("33", "done")]
    assert "task 31 read: status 2, 'Task 31'" in events[0].outcome
    assert fake_b24.offline_records(fake_portal) == []  # cleared
    gets = offline_gets(fake_b24)
    assert gets and all(str(c.params.get("clear")) == "0" for c in gets)  # never clear=1
    assert OfflineBatch.objects.count() == 0
    doorbell = Event.objects.get(name="ONOFFLINEEVENT")
    assert doorbell.status == "done" and doorbell.outcome == "offline drain queued"


def test_a_record_whose_reread_fails_is_flagged_and_processed_by_the_next_sweep(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.task_changed(fake_portal, 31)
    fake_b24.task_changed(fake_portal, 32)
    fake_b24.fail_next("tasks.task.get", status=500, error="INTERNAL_SERVER_ERROR")
    first = offline_drain(portal=portal)
    assert (first.read, first.done, first.flagged) == (2, 1, 1)
    queue = fake_b24.offline_records(fake_portal)
    assert [(r["ERROR"], r["PROCESS_ID"]) for r in queue] == [("1", "")]  # flagged, not lost
    assert [c.method for c in fake_b24.calls if c.method.startswith("event.offline.")].count("event.offline.error") == 1
    failed = Event.objects.get(source="offline", status="queued")
    assert "INTERNAL_SERVER_ERROR" in failed.error and failed.attempts == 1
    fake_b24.reset_calls()
    offline_sweep()  # no broker: the drain runs at once
    failed.refresh_from_db()
    assert failed.status == "done" and failed.attempts == 2
    assert fake_b24.offline_records(fake_portal) == []
    assert any(str(c.params.get("error")) == "1" for c in offline_gets(fake_b24))
    assert all(str(c.params.get("clear")) == "0" for c in offline_gets(fake_b24))
    assert OfflineState.objects.get(portal=portal).error_passes == 0


def test_a_malformed_record_ends_failed_with_a_reason_and_the_others_still_run(fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.task_changed(fake_portal, 31, event_data=False)  # EVENT_DATA false, as the docs show
    fake_b24.task_changed(fake_portal, 32)
    outcome = offline_drain(portal=portal)
    assert (outcome.read, outcome.done, outcome.given_up) == (2, 1, 1)
    bad = Event.objects.get(status="failed")
    assert "EVENT_DATA is 'False'" in bad.error and bad.source == "offline"
    assert fake_b24.offline_records(fake_portal) == []  # cleared: it can never succeed


def test_an_interrupted_batch_is_resumed_by_its_stored_process_id(fake_b24, installed):
    portal, fake_portal = installed
    for task_id in (31, 32, 33):
        fake_b24.task_changed(fake_portal, task_id)
    # A drain reserved the records, stored the process_id, processed one, and died.
    from portals.operations import portal_admin_credential
    from portals.tokens import portal_call

    answer = portal_call(credential=portal_admin_credential(portal), method="event.offline.get",
                         params={"clear": 0, "limit": 50})
    process_id = answer["result"]["process_id"]
    OfflineBatch.objects.create(portal=portal, process_id=process_id)
    assert all(r["PROCESS_ID"] == process_id for r in fake_b24.offline_records(fake_portal))
    fake_b24.reset_calls()
    outcome = offline_drain(portal=portal)
    assert outcome.resumed == 1 and outcome.done == 3
    assert any(c.params.get("process_id") == process_id for c in offline_gets(fake_b24))
    assert fake_b24.offline_records(fake_portal) == []
    assert Event.objects.filter(source="offline", status="done").count() == 3


def test_a_drain_already_running_on_the_portal_is_not_doubled(fake_b24, installed):
    portal, _ = installed
    OfflineState.objects.create(portal=portal, locked_until=timezone.now() + timezone.timedelta(seconds=60),
                                lock_id="another")
    assert offline_drain(portal=portal).busy is True


def test_drain_offline_events_command_drains_the_named_portal(fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.task_changed(fake_portal, 33, "ONTASKDELETE")
    run = run_command("drain_offline_events", "--portal", portal.domain)
    assert run.code == 0, run.out + run.err
    assert f"ok      {portal.domain} [{portal.member_id}] drained: 1 record(s): 1 done" in run.out
    assert Event.objects.get(source="offline").outcome == "task 33 deleted"


def test_drain_offline_events_needs_a_selection(installed):
    assert run_command("drain_offline_events").code == 2
