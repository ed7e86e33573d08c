"""pytest fixtures for the fake (listed in tests/conftest.py's `pytest_plugins`)."""
from __future__ import annotations

import pytest

from fake_bitrix24.server import FakeBitrix24


@pytest.fixture
def fake_b24(settings):
    """A running fake Bitrix24 with Django settings pointed at it."""
    fake = FakeBitrix24()
    fake.start()
    settings.B24_OAUTH_SERVERS = [fake.oauth_url]
    settings.B24_CLIENT_ID = fake.client_id
    settings.B24_CLIENT_SECRET = fake.client_secret
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = True
    settings.B24_APP_BASE_URL = "https://app.example.com"
    yield fake
    fake.stop()
