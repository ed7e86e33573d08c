import pytest

# Fixture modules, loaded once here instead of imported (with a noqa) by every test module.
pytest_plugins = [
    "fake_bitrix24.pytest_plugin",
    "tests.fixtures_placements",
    "tests.fixtures_hardening",
    "tests.fixtures_operators",
    "tests.fixtures_queue",
]


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


@pytest.fixture(autouse=True)
def _fresh_portal_capacity():
    """Each test starts with closed breakers, empty bulkheads and full allowances of refusals
    (they live in the process, and the fake's ports repeat across tests)."""
    from portals.bitrix import capacity

    capacity.reset()
    yield
