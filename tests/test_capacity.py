"""One portal cannot stall the others (portals/bitrix/capacity.py): the per-portal bulkhead, the
circuit breaker, the widget's "Bitrix24 is slow to answer" state, and junk tokens throttled."""
from __future__ import annotations

import re
import time
from contextlib import ExitStack

import pytest

from placements.models import Invocation
from portals.bitrix import capacity, client as bitrix_client
from tests.fixtures_placements import widget  # noqa: F401 - the widget fixture

pytestmark = pytest.mark.django_db


def state_of(response) -> str:
    match = re.search(r'data-state="([^"]*)"', response.content.decode())
    return match.group(1) if match else ""


def hold_slots(stack: ExitStack, key: str, count: int) -> None:
    """``count`` calls to the portal ``key`` in flight (as other threads of this process would be)."""
    for _ in range(count):
        stack.enter_context(capacity.portal_slot(key))


def endpoint_of(widget) -> str:
    return bitrix_client.validate_client_endpoint(widget.portal.client_endpoint)


# --- the bulkhead ---------------------------------------------------------------------------------


def test_a_portal_holds_at_most_its_share_of_calls_and_other_portals_are_untouched(settings):
    settings.B24_PORTAL_MAX_CALLS = 2
    with ExitStack() as stack:
        hold_slots(stack, "https://slow.example.com/rest/", 2)
        with pytest.raises(capacity.PortalBusy):
            with capacity.portal_slot("https://slow.example.com/rest/"):
                pass
        with capacity.portal_slot("https://healthy.example.com/rest/"):  # another portal: served
            pass
    with capacity.portal_slot("https://slow.example.com/rest/"):  # the calls ended: a slot again
        pass


def test_a_busy_portals_open_gets_the_slow_state_at_once_without_calling_bitrix24(settings, client, widget):
    settings.B24_PORTAL_MAX_CALLS = 2
    widget.fake.reset_calls()
    with ExitStack() as stack:
        hold_slots(stack, endpoint_of(widget), 2)
        started = time.monotonic()
        response = widget.post(client, LANG="de")
        elapsed = time.monotonic() - started
    assert response.status_code == 503 and state_of(response) == "busy"
    assert response["Retry-After"] == "5" and elapsed < 1.0
    assert "Bitrix24 antwortet langsam" in response.content.decode()  # translated
    assert widget.fake.count(method="batch") == 0
    assert Invocation.objects.count() == 0  # nothing written: an overloaded portal's crowd costs little
    assert state_of(widget.post(client)) == "ok"  # the slots are free again


def test_a_busy_portals_action_answers_503_saying_try_again(settings, client, widget):
    settings.B24_PORTAL_MAX_CALLS = 1
    token = widget.action_token(client)
    with ExitStack() as stack:
        hold_slots(stack, endpoint_of(widget), 1)
        response = client.post("/placements/action/", {"action": "reload", "token": token})
    assert response.status_code == 503
    message = response.json()["message"]
    assert "slow to answer" in message and "try again" in message.lower() and response.json()["state"] == "busy"


# --- the circuit breaker --------------------------------------------------------------------------


def test_a_portal_that_keeps_failing_is_failed_fast_then_probed_and_closed_again(settings, client, widget):
    settings.B24_BREAKER_FAILURES, settings.B24_BREAKER_SECONDS = 3, 0.4
    fake = widget.fake
    fake.fail_next("batch", status=500, body="<html>gateway timeout</html>", times=4)
    assert [state_of(widget.post(client)) for _ in range(3)] == ["unreachable"] * 3
    assert fake.count(method="batch") == 3
    # Open: failed fast, nothing sent.
    response = widget.post(client)
    assert response.status_code == 503 and state_of(response) == "busy"
    assert fake.count(method="batch") == 3
    # After the pause one call probes the portal; it fails (the 4th fault), so the breaker opens again.
    time.sleep(0.45)
    assert state_of(widget.post(client)) == "unreachable" and fake.count(method="batch") == 4
    assert state_of(widget.post(client)) == "busy" and fake.count(method="batch") == 4
    # The next probe is answered: the breaker closes and every open is served.
    time.sleep(0.45)
    assert [state_of(widget.post(client)) for _ in range(3)] == ["ok"] * 3
    assert fake.count(method="batch") == 7


def test_bitrix24_errors_are_answers_and_do_not_open_the_breaker(settings, client, widget):
    settings.B24_BREAKER_FAILURES = 2
    widget.fake.fail_next("batch", status=503, error="QUERY_LIMIT_EXCEEDED", times=3)
    assert [state_of(widget.post(client)) for _ in range(3)] == ["busy"] * 3
    assert widget.fake.count(method="batch") == 3  # each one asked Bitrix24: the breaker stayed closed
    assert state_of(widget.post(client)) == "ok"


# --- junk tokens ------------------------------------------------------------------------------------


def test_junk_tokens_are_throttled_per_portal_and_a_known_viewer_still_gets_in(settings, client, widget):
    settings.B24_REFUSED_TOKENS_BURST, settings.B24_REFUSED_TOKENS_PER_MINUTE = 3, 0.0
    assert state_of(widget.post(client)) == "ok"  # the viewer opened the task before the flood
    fake = widget.fake
    fake.reset_calls()
    junk = [widget.post(client, AUTH_ID=f"junk{i:028d}") for i in range(8)]
    assert [r.status_code for r in junk] == [403] * 3 + [429] * 5
    assert {state_of(r) for r in junk[3:]} == {"busy"}
    assert fake.count(method="batch") == 3  # the flood cost the portal three calls, not eight
    assert Invocation.objects.count() == 1  # unproven opens write nothing
    response = widget.post(client)  # the viewer's token was accepted lately: never held back
    assert response.status_code == 200 and state_of(response) == "ok"
    assert fake.count(method="batch") == 4


def refuse(key: str, token: str) -> bool:
    """An open with ``token`` that Bitrix24 refuses; whether it was let through to be refused."""
    admitted = capacity.token_admit(key=key, token=token)
    if admitted:
        capacity.token_verdict(key=key, token=token, accepted=False)
    return admitted


def test_the_refusal_allowance_is_per_portal_and_refills(settings):
    settings.B24_REFUSED_TOKENS_BURST, settings.B24_REFUSED_TOKENS_PER_MINUTE = 2, 600.0  # 10 a second
    assert refuse("m", "a") and refuse("m", "b")
    assert not capacity.token_admit(key="m", token="c")
    assert capacity.token_admit(key="other", token="c")  # per portal
    time.sleep(0.15)
    assert capacity.token_admit(key="m", token="c")


def test_only_refusals_spend_the_allowance_and_accepted_tokens_pass_from_then_on(settings):
    settings.B24_REFUSED_TOKENS_BURST, settings.B24_REFUSED_TOKENS_PER_MINUTE = 1, 0.0
    # Opens in flight, or without a verdict (busy, unreachable), spend nothing.
    assert all(capacity.token_admit(key="m", token=f"t{i}") for i in range(5))
    capacity.token_verdict(key="m", token="t0", accepted=None)
    capacity.token_verdict(key="m", token="t1", accepted=True)
    assert refuse("m", "t2")  # the one refusal the burst allows
    assert not capacity.token_admit(key="m", token="t3")
    assert capacity.token_admit(key="m", token="t1")  # accepted lately: passes, allowance or not
