"""The per-portal budget shared by every process (portals/ratelimit.py), in the database and in
Redis: a burst goes at once, then calls are spaced at the rate; a caller that may not wait that
long is refused before anything is sent."""
import time

import pytest

from portals import ratelimit
from portals.bitrix import client, errors
from tests.fixtures_queue import redis_client_or_skip

pytestmark = pytest.mark.django_db
REDIS_URL = "redis://127.0.0.1:6379/2"


@pytest.fixture(params=["database", "redis"])
def budget(request, settings):
    settings.B24_RATE_PER_SECOND = 10.0
    settings.B24_RATE_BURST = 3
    if request.param == "redis":
        redis_client_or_skip(REDIS_URL)
        settings.CELERY_BROKER_URL = REDIS_URL
    else:
        settings.CELERY_BROKER_URL = ""
    ratelimit.reset()
    yield request.param
    ratelimit.reset()


def test_a_burst_goes_at_once_then_calls_are_spaced_at_the_rate(budget):
    key = f"https://{budget}.example.com/rest/"
    waits = [ratelimit.acquire(key) for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0]
    started = time.monotonic()
    for _ in range(3):
        ratelimit.acquire(key)
    assert 0.25 <= time.monotonic() - started <= 1.5  # three more at 10 a second (a loaded machine oversleeps)


def test_portals_have_budgets_of_their_own(budget):
    for _ in range(3):
        ratelimit.acquire("https://a.example.com/rest/")
    assert ratelimit.acquire("https://b.example.com/rest/") == 0.0


def test_a_caller_that_cannot_wait_long_enough_is_refused_and_not_counted(budget):
    key = f"https://{budget}-refused.example.com/rest/"
    for _ in range(3):
        ratelimit.acquire(key)
    with ratelimit.patience(0.01):
        with pytest.raises(errors.BudgetExhausted):
            ratelimit.acquire(key)
    time.sleep(0.1)
    with ratelimit.patience(0.01):
        assert ratelimit.acquire(key) <= 0.01  # the refusal took no turn


def test_a_refused_call_never_reaches_the_portal(budget, fake_b24, settings):
    fake_portal = fake_b24.add_portal(domain="budget.example.com")
    token = fake_b24.issue_tokens(fake_portal)["access_token"]
    settings.B24_RATE_PER_SECOND, settings.B24_RATE_BURST = 0.01, 1
    client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)
    with ratelimit.patience(0.5):
        with pytest.raises(errors.BudgetExhausted):
            client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)
    assert fake_b24.count("profile") == 1
