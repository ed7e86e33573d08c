"""GET /metrics: Prometheus text behind METRICS_TOKEN (404 unset, 401 wrong), counters that move
with the traffic, no portal named in a label, and every gunicorn worker's values added up."""
from __future__ import annotations

import os
import re
import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures_gunicorn import gunicorn_serving
from tests.fixtures_placements import widget  # noqa: F401 - the widget fixture

TOKEN = "scrape-token-for-tests-0123456789"


def scrape(client, token: str = TOKEN) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_metrics_is_404_when_no_token_is_set(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN])
def test_metrics_with_a_missing_or_wrong_token_is_401(client, settings, header):
    settings.METRICS_TOKEN = TOKEN
    headers = {"Authorization": header} if header else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"b24_" not in response.content


def test_metrics_with_the_token_is_prometheus_text(client, settings):
    settings.METRICS_TOKEN = TOKEN
    text = scrape(client)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"b24_widget_opens", "b24_widget_refusals", "b24_bitrix_calls", "b24_token_refreshes",
            "b24_rate_limit_hits", "b24_events"} <= names


def test_counters_move_after_a_widget_open_and_name_no_portal(client, settings, widget):
    settings.METRICS_TOKEN = TOKEN
    before = scrape(client)
    assert widget.post(client).status_code == 200
    assert widget.post(client, member_id="0" * 32).status_code == 403  # an unknown portal: refused
    after = scrape(client)
    opens = ("b24_widget_opens_total", {"placement": "TASK_VIEW_TOP_PANEL", "outcome": "ok"})
    assert sample(after, opens[0], **opens[1]) == sample(before, opens[0], **opens[1]) + 1
    assert sample(after, "b24_widget_open_seconds_count", placement="TASK_VIEW_TOP_PANEL") == (
        sample(before, "b24_widget_open_seconds_count", placement="TASK_VIEW_TOP_PANEL") + 1
    )
    assert sample(after, "b24_bitrix_calls_total", method="batch", outcome="ok") == (
        sample(before, "b24_bitrix_calls_total", method="batch", outcome="ok") + 1
    )
    assert sum(sample(after, "b24_widget_refusals_total", reason=r) - sample(before, "b24_widget_refusals_total", reason=r)
               for r in ("refused", "not_installed", "unknown_portal")) == 1
    # Cardinality and privacy: no portal, domain, user or token shows anywhere in the text.
    for secret in (widget.fake_portal.member_id, widget.fake_portal.domain, widget.tokens["access_token"]):
        assert secret not in after
    labels = {key for family in text_string_to_metric_families(after) for s in family.samples for key in s.labels}
    assert not labels & {"member_id", "domain", "portal", "user_id", "user"}


def test_a_rejected_widget_post_counts_as_a_refusal_by_reason(client, settings):
    settings.METRICS_TOKEN = TOKEN
    before = sample(scrape(client), "b24_widget_refusals_total", reason="bad_request")
    assert client.post("/placements/handler/", {"PLACEMENT": "TASK_VIEW_TOP_PANEL"}).status_code == 400
    assert sample(scrape(client), "b24_widget_refusals_total", reason="bad_request") == before + 1


@pytest.fixture
def gunicorn_with_metrics(tmp_path):
    """gunicorn with two sync workers and its own multiprocess directory (gunicorn.conf.py)."""
    metrics_dir = tmp_path / "prometheus"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from an earlier run")  # on_starting empties it
    with gunicorn_serving(env, tmp_path, workers=2) as base:
        yield base, metrics_dir


def test_metrics_add_up_every_gunicorn_worker(gunicorn_with_metrics):
    base, metrics_dir = gunicorn_with_metrics
    statuses: list[int] = []

    def refused_open():
        # Malformed: no member_id. Each is a 400 and one refusal, on whichever worker takes it.
        response = requests.post(base + "/placements/handler/", data={"PLACEMENT": "TASK_VIEW_TOP_PANEL"},
                                 headers={"Connection": "close"}, timeout=10)
        statuses.append(response.status_code)

    def worker_pids() -> set[str]:
        names = (re.match(r"counter_(\d+)\.db$", path.name) for path in metrics_dir.iterdir())
        return {match.group(1) for match in names if match}

    # Rounds of parallel requests until both workers have served some (the kernel picks who accepts).
    for _ in range(40):
        threads = [threading.Thread(target=refused_open) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        if len(worker_pids()) >= 2:
            break
    assert statuses == [400] * len(statuses)
    assert "999999" not in worker_pids() and len(worker_pids()) >= 2, f"one worker served all: {worker_pids()}"
    assert requests.get(base + "/metrics", timeout=10).status_code == 401
    text = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert sample(text, "b24_widget_refusals_total", reason="bad_request") == len(statuses)


def test_events_count_by_state_they_reach(client, settings, widget):
    from events.services import event_store

    settings.METRICS_TOKEN = TOKEN
    before = scrape(client)
    event_store(portal=widget.portal, name="ONTASKUPDATE", data={"FIELDS_AFTER": {"ID": "31"}}, delivery="1")
    event_store(portal=widget.portal, name="ONTASKUPDATE", data={"FIELDS_AFTER": {"ID": "31"}}, delivery="1")
    after = scrape(client)
    assert sample(after, "b24_events_total", state="received") == sample(before, "b24_events_total", state="received") + 1
