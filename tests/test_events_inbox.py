"""POST /portals/events/ with business events, in the embedded mode (no broker): stored,
acknowledged, processed in this process right after the response, once per delivery."""
import datetime as dt

import pytest
from django.utils import timezone

import events
from events import registry
from events.models import Event
from events.selectors import event_counts_by_status
from events.services import event_process, events_retry, retry_delay
from tests.fixtures_events import task_event_body
from tests.helpers import install_portal

pytestmark = pytest.mark.django_db


@pytest.fixture
def installed(client, fake_b24, settings):
    settings.CELERY_BROKER_URL = ""
    portal, fake_portal = install_portal(client, fake_b24, domain="acme.example.com")
    fake_b24.add_task(fake_portal, 31, title="Quarterly report", status="3")
    fake_b24.reset_calls()
    return portal, fake_portal


def post(client, body):
    return client.post("/portals/events/", body)


def test_task_event_is_acknowledged_then_the_task_is_reread_with_the_installers_token(client, fake_b24, installed):
    portal, fake_portal = installed
    viewer = fake_b24.issue_tokens(fake_portal, user_id=5)
    response = post(client, task_event_body(fake_b24, fake_portal, tokens=viewer))
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "success", "event": "ONTASKUPDATE", "queued": True, "duplicate": False}
    event = Event.objects.get()
    assert (event.portal, event.name, event.object_id, event.source) == (portal, "ONTASKUPDATE", "31", "online")
    assert event.status == "done" and event.attempts == 1 and event.processed_at is not None
    assert "task 31 read: status 3, 'Quarterly report'" in event.outcome
    [call] = [c for c in fake_b24.calls if c.method == "tasks.task.get"]
    assert call.params["auth"] == portal.admin_credential().access_token  # not the acting user's
    assert call.params["auth"] != viewer["access_token"]


def test_the_acting_users_tokens_are_never_stored(client, fake_b24, installed):
    _, fake_portal = installed
    viewer = fake_b24.issue_tokens(fake_portal, user_id=5)
    post(client, task_event_body(fake_b24, fake_portal, tokens=viewer))
    event = Event.objects.get()
    stored = repr(event.data) + event.outcome + event.error
    assert viewer["access_token"] not in stored and viewer["refresh_token"] not in stored
    assert fake_portal.application_token not in stored
    assert set(event.data) == {"FIELDS_BEFORE", "FIELDS_AFTER", "IS_ACCESSIBLE_BEFORE", "IS_ACCESSIBLE_AFTER"}


def test_the_same_delivery_twice_is_processed_once(client, fake_b24, installed):
    _, fake_portal = installed
    first = post(client, task_event_body(fake_b24, fake_portal))
    second = post(client, task_event_body(fake_b24, fake_portal))
    assert first.status_code == second.status_code == 200
    assert second.json()["duplicate"] is True and second.json()["queued"] is False
    assert Event.objects.count() == 1
    assert fake_b24.count("tasks.task.get") == 1


def test_a_later_change_of_the_same_task_is_a_new_event(client, fake_b24, installed):
    _, fake_portal = installed
    post(client, task_event_body(fake_b24, fake_portal, ts="1766047124"))
    post(client, task_event_body(fake_b24, fake_portal, ts="1766047130"))
    assert Event.objects.filter(status="done").count() == 2


def test_a_task_no_longer_readable_is_an_outcome_not_an_error(client, fake_b24, installed):
    _, fake_portal = installed
    post(client, task_event_body(fake_b24, fake_portal, task_id="999"))
    event = Event.objects.get()
    assert event.status == "done" and event.error == ""
    assert "no longer readable" in event.outcome


def test_a_task_delete_is_recorded_without_a_call(client, fake_b24, installed):
    _, fake_portal = installed
    post(client, task_event_body(fake_b24, fake_portal, "ONTASKDELETE"))
    event = Event.objects.get()
    assert (event.status, event.object_id, event.outcome) == ("done", "31", "task 31 deleted")
    assert fake_b24.count("tasks.task.get") == 0


def test_a_forged_business_event_is_403_and_writes_nothing(client, fake_b24, installed):
    _, fake_portal = installed
    response = post(client, task_event_body(fake_b24, fake_portal, application_token="f" * 32))
    assert response.status_code == 403
    assert "application token" in response.json()["message"]
    assert Event.objects.count() == 0 and fake_b24.calls == []


def test_an_event_for_an_unknown_portal_is_403_like_a_wrong_token(client, fake_b24, installed):
    stranger = fake_b24.add_portal(domain="stranger.example.com")
    response = post(client, task_event_body(fake_b24, stranger))
    assert response.status_code == 403
    assert "application token" in response.json()["message"]
    assert Event.objects.count() == 0


def test_an_unknown_event_name_is_400(client, fake_b24, installed):
    _, fake_portal = installed
    body = task_event_body(fake_b24, fake_portal)
    body["event"] = "ONCRMDEALADD"
    response = post(client, body)
    assert response.status_code == 400
    assert "Unknown event" in response.json()["message"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("ts", ["yesterday", "1" * 30, "-5"])
def test_a_malformed_ts_is_400(client, fake_b24, installed, ts):
    _, fake_portal = installed
    response = post(client, task_event_body(fake_b24, fake_portal, ts=ts))
    assert response.status_code == 400
    assert Event.objects.count() == 0


def test_an_event_of_an_uninstalled_portal_is_403(client, fake_b24, installed):
    portal, fake_portal = installed
    type(portal).objects.filter(pk=portal.pk).update(status="uninstalled")
    assert post(client, task_event_body(fake_b24, fake_portal)).status_code == 403


def test_a_registered_handler_runs_for_its_event(client, fake_b24, installed):
    _, fake_portal = installed
    seen = []

    @events.handler("ONTASKUPDATE")
    def remember(event):
        seen.append((event.name, event.object_id, event.portal.member_id))
        return "remembered"

    try:
        post(client, task_event_body(fake_b24, fake_portal))
    finally:
        registry.unregister("ONTASKUPDATE", remember)
    assert seen == [("ONTASKUPDATE", "31", fake_portal.member_id)]
    assert Event.objects.get().outcome.endswith("; remembered")


def test_a_handler_for_a_new_event_name_makes_the_inbox_accept_it(client, fake_b24, installed):
    _, fake_portal = installed

    @events.handler("ONCRMDEALADD")
    def deal_added(event):
        return f"deal {event.object_id}"

    try:
        body = task_event_body(fake_b24, fake_portal)
        body.pop("data[FIELDS_BEFORE][ID]")
        body.pop("data[FIELDS_AFTER][ID]")
        body.update({"event": "ONCRMDEALADD", "data[FIELDS][ID]": "7405"})
        response = post(client, body)
    finally:
        registry.unregister("ONCRMDEALADD", deal_added)
    assert response.status_code == 200, response.content
    assert Event.objects.get().outcome == "deal 7405"


# --- retries and failures -------------------------------------------------------------------------


@pytest.fixture
def failing_handler():
    calls = []

    @events.handler("ONTASKUPDATE")
    def broken(event):
        calls.append(event.attempts)
        raise RuntimeError("the CRM is down, access_token=abc123secret")

    yield calls
    registry.unregister("ONTASKUPDATE", broken)


def test_a_failing_handler_is_retried_with_backoff_then_ends_failed_with_its_error(
    client, fake_b24, installed, failing_handler, settings
):
    settings.EVENTS_MAX_ATTEMPTS = 3
    settings.EVENTS_RETRY_BASE_SECONDS = 3600  # the in-process timer never fires during the test
    _, fake_portal = installed
    post(client, task_event_body(fake_b24, fake_portal))
    event = Event.objects.get()
    assert event.status == "queued" and event.attempts == 1
    assert "the CRM is down" in event.error and "abc123secret" not in event.error
    assert event.next_attempt_at > timezone.now() + dt.timedelta(seconds=1000)
    assert event_process(event_id=event.pk) is None  # not due yet: a duplicate message does nothing
    for attempt in (2, 3):
        Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == "failed" and event.attempts == 3
    assert event.error.startswith("after 3 attempts: RuntimeError: the CRM is down")
    assert failing_handler == [1, 2, 3]
    assert event_counts_by_status() == {"queued": 0, "done": 0, "failed": 1}


def test_retry_puts_a_failed_event_back_with_a_fresh_budget(client, fake_b24, installed, settings):
    _, fake_portal = installed
    post(client, task_event_body(fake_b24, fake_portal))
    event = Event.objects.get()
    Event.objects.filter(pk=event.pk).update(status="failed", error="boom", attempts=5)
    assert events_retry(event_ids=[event.pk]) == 1  # no broker, no request: processed at once
    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == ("done", 1, "")
    assert "task 31 read" in event.outcome


def test_retry_delays_double_are_capped_and_jittered(settings):
    settings.EVENTS_RETRY_BASE_SECONDS = 10
    first = [retry_delay(1) for _ in range(50)]
    assert all(5 <= d <= 10 for d in first) and len(set(first)) > 1
    assert all(20 <= retry_delay(3) <= 40 for _ in range(20))
    assert retry_delay(40) <= 3600


def test_event_counts_by_status_counts_every_status(client, fake_b24, installed):
    _, fake_portal = installed
    post(client, task_event_body(fake_b24, fake_portal))
    assert event_counts_by_status() == {"queued": 0, "done": 1, "failed": 0}
