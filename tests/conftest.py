import pytest

from tests.fake_bitrix24 import FakeBitrix24


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


@pytest.fixture(autouse=True, scope="session")
def _no_internet():
    """Every test stays on this machine: a connection to any non-loopback address fails loudly,
    so a test that would reach a real Bitrix24 host (or anything else) cannot pass by accident."""
    import ipaddress
    import socket

    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {host!r}")
        return real_connect(sock, address)

    socket.socket.connect = guarded_connect
    yield
    socket.socket.connect = real_connect
