"""GET / without the sandbox: what the app is, its health, and what to register in Bitrix24."""
import re

import pytest

pytestmark = pytest.mark.django_db


def _url(page: str, name: str) -> str:
    return re.search(rf'data-url="{name}">([^<]*)<', page).group(1)


def test_home_names_the_app_its_health_and_the_urls_to_register(client, settings):
    settings.B24_APP_BASE_URL = "https://widget.example.com"
    page = client.get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Bitrix24 widget backend" in text and "database answers" in text
    assert _url(text, "install_path") == "https://widget.example.com/portals/install/"
    assert _url(text, "placement_handler") == "https://widget.example.com/placements/handler/"
    assert _url(text, "event_url") == "https://widget.example.com/portals/events/"
    assert _url(text, "handler_path").startswith("https://widget.example.com/portals/")
    assert _url(text, "scopes") == "placement,task"
    assert "open-sandbox" not in text  # the suite runs with B24_SANDBOX=false


def test_home_without_a_base_url_builds_the_urls_from_the_request_and_says_so(client, settings):
    settings.B24_APP_BASE_URL = ""
    text = client.get("/").content.decode()
    assert _url(text, "install_path") == "http://testserver/portals/install/"
    assert "set <code>B24_APP_BASE_URL</code>" in text


def test_there_is_no_sandbox_url_when_the_sandbox_is_off(client):
    assert client.get("/sandbox/").status_code == 404
