"""The inbox in the admin: the list filters by portal, name and status, and Retry queues again."""
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from events.models import Event

pytestmark = pytest.mark.django_db
URL = "/admin/events/event/"


@pytest.fixture
def inbox(install_portals, settings):
    settings.CELERY_BROKER_URL = ""
    (first, _), (second, _) = install_portals(2)
    rows = [
        Event(portal=first, name="ONTASKUPDATE", object_id="31", delivery="1", status="done", outcome="task 31 read"),
        Event(portal=first, name="ONTASKADD", object_id="32", delivery="2", status="failed",
              error="after 5 attempts: TransportError: CONNECTION_FAILED", attempts=5),
        Event(portal=second, name="ONTASKUPDATE", object_id="40", delivery="3", status="queued"),
    ]
    Event.objects.bulk_create(rows)
    return first, second


def test_the_event_list_renders_with_errors_and_filters(staff_client, inbox):
    page = staff_client.get(URL).content.decode()
    assert "CONNECTION_FAILED" in page and "ONTASKADD" in page
    failed = staff_client.get(URL, {"status__exact": "failed"}).content.decode()
    assert "ONTASKADD" in failed and "task 31" not in failed and ">40<" not in failed
    first, second = inbox
    by_portal = staff_client.get(URL, {"portal__id__exact": second.pk}).content.decode()
    assert ">40<" in by_portal and ">32<" not in by_portal
    by_name = staff_client.get(URL, {"name": "ONTASKADD"}).content.decode()
    assert ">32<" in by_name and ">31<" not in by_name


def test_retry_action_queues_failed_events_again_and_leaves_done_ones(staff_client, inbox, fake_b24):
    failed = Event.objects.get(status="failed")
    done = Event.objects.get(status="done")
    response = staff_client.post(
        URL, {"action": "retry", ACTION_CHECKBOX_NAME: [failed.pk, done.pk]}, follow=True
    )
    assert "1 event(s) queued again. 1 already done" in response.content.decode()
    failed.refresh_from_db()
    done.refresh_from_db()
    # No broker: the retried event ran right after the admin's response (task 32 is not on the fake).
    assert (failed.status, failed.attempts, failed.error) == ("done", 1, "")
    assert "no longer readable" in failed.outcome
    assert done.status == "done" and done.outcome == "task 31 read"
