"""A fake Bitrix24 (OAuth server + portal REST) served over real HTTP on 127.0.0.1.

Used by the tests (`fake_bitrix24.pytest_plugin`), the benchmark (`python -m fake_bitrix24`) and
the development sandbox. Standard library only, so it runs wherever the app runs.
"""
from fake_bitrix24.params import parse_php_query
from fake_bitrix24.server import FakeBitrix24
from fake_bitrix24.state import DEFAULT_CLIENT_ID, ApiError, FakePortal, FakeTask, FakeUser

__all__ = ["DEFAULT_CLIENT_ID", "ApiError", "FakeBitrix24", "FakePortal", "FakeTask", "FakeUser", "parse_php_query"]
