"""Property-based tests of the three Bitrix24-facing endpoints: whatever arrives, never a 5xx,
never a row written for a rejected request, and every rejection says why.

Each example starts from a well-formed request (so the mutations reach deep into the views) and
changes it: fields dropped or replaced with hostile text, bracket keys nested deep, hostile JSON
in PLACEMENT_OPTIONS, invalid UTF-8, bodies at and over DATA_UPLOAD_MAX_MEMORY_SIZE, too many
fields, other methods and content types. The fake Bitrix24 stays healthy throughout, so any
5xx would be our own bug. ``pytest -s`` prints the figures.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from portals.bitrix import client as bitrix_client
from tests.fixtures_hardening import assert_says_why, record_figures, rows_snapshot
from tests.helpers import install_payload, install_portal
from tests.test_portals_events import event_body

pytestmark = pytest.mark.django_db

EXAMPLES = 250
FUZZ = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMIT = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE

# --- strategies -----------------------------------------------------------------------------------

HOSTILE_STRINGS = [
    "", " ", "undefined", "null", "0", "-1", "1e309", "NaN", "\x00", "\x00abc", "%00", "\r\nX-Injected: 1",
    "../../etc/passwd", "<script>alert(1)</script>", "' OR 1=1 --", "a" * 600, "\U0001f642" * 80,
    "http://169.254.169.254/latest/meta-data/", "javascript:alert(1)", "127.0.0.1", "[::1]",
    "evil.example.com", "portal.bitrix24.com.evil.example.com", "xn--80ak6aa92e.com", "ПРИМЕР.рф",
    "https://oauth.bitrix.info.evil.example.com/rest/", "https://user:pass@oauth.bitrix.info/rest/",
    "DEFAULT", "TASK_VIEW_TOP_PANEL", "task_view_top_panel", "ONAPPUNINSTALL", "onappinstall",
]
hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
task_ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.booleans(), st.none(),
    hostile_text, st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
hostile_options = st.one_of(
    st.builds(lambda n: "[" * n + "]" * n, st.integers(min_value=1, max_value=50_000)),
    st.builds(lambda n: '{"a":' * n + "1" + "}" * n, st.integers(min_value=1, max_value=3_000)),
    st.builds(lambda v: json.dumps({"taskId": v}), task_ids),
    st.builds(lambda v: json.dumps({"TASK_ID": v, "taskId": v}), task_ids),
    st.builds(lambda n: json.dumps({"taskId": "31", "URI": "x" * n}), st.integers(min_value=0, max_value=70_000)),
    st.builds(json.dumps, json_values),
    st.sampled_from(['{"taskId": 31, "taskId": "x"}', "{'taskId': 31}", '{"taskId": NaN}', "[]", "{}", "undefined",
                     '{"taskId": 1e400}', '"31"', "31", "null", "{" * 10, '{"taskId":"31"}' + "\x00"]),
    hostile_text,
)
field_names = st.one_of(st.sampled_from(["AUTH_ID", "REFRESH_ID", "member_id", "DOMAIN", "SERVER_ENDPOINT",
                                         "PLACEMENT", "PLACEMENT_OPTIONS", "AUTH_EXPIRES", "APPLICATION_TOKEN",
                                         "status", "LANG", "event", "auth", "data", "ts"]),
                        st.text(min_size=1, max_size=20))
bracket_keys = st.builds(
    lambda head, parts, tail: head + "".join(f"[{p}]" for p in parts) + tail,
    st.sampled_from(["auth", "data", "event", "member_id", "x", ""]),
    st.lists(st.text(alphabet="abc_[]", max_size=8), max_size=60),
    st.sampled_from(["", "[", "]", "[]", "][", "[x"]),
)


@dataclass
class Mutation:
    kind: str  # drop, set, add
    key: str = ""
    value: str = ""
    pick: int = 0  # which existing field, for drop/set


mutations = st.one_of(
    st.builds(Mutation, kind=st.just("drop"), pick=st.integers(0, 50)),
    st.builds(Mutation, kind=st.just("set"), pick=st.integers(0, 50), value=hostile_text),
    st.builds(Mutation, kind=st.just("add"), key=field_names | bracket_keys, value=hostile_text),
    st.builds(Mutation, kind=st.just("options"), value=hostile_options),
)


@dataclass
class Plan:
    method: str = "POST"
    encoding: str = "form"
    mutations: list = field(default_factory=list)
    raw: bytes = b""
    content_type: str = ""
    size: int = 0


plans = st.one_of(
    st.builds(Plan, encoding=st.sampled_from(["form", "multipart", "form_latin1"]),
              mutations=st.lists(mutations, max_size=6)),
    st.builds(Plan, method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])),
    st.builds(Plan, encoding=st.just("json"), mutations=st.lists(mutations, max_size=3)),
    st.builds(Plan, encoding=st.just("invalid_utf8"), raw=st.binary(min_size=1, max_size=200)
              .filter(lambda b: _not_utf8(b)), mutations=st.lists(mutations, max_size=2)),
    st.builds(Plan, encoding=st.just("raw"), raw=st.binary(max_size=3000), content_type=st.sampled_from([
        "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=xyz",
        "text/plain", "application/xml", "application/octet-stream",
        "application/x-www-form-urlencoded; charset=utf-16", "application/x-www-form-urlencoded; charset=nope",
    ])),
    st.builds(Plan, encoding=st.sampled_from(["sized", "sized_multipart"]),
              size=st.integers(min_value=LIMIT - 64, max_value=LIMIT + 4096)),
    st.builds(Plan, encoding=st.just("many_fields"), size=st.integers(min_value=150, max_value=1000)),
)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# --- sending a plan -------------------------------------------------------------------------------


def _apply(body: dict, plan: Plan) -> dict:
    body = dict(body)
    for mutation in plan.mutations:
        keys = list(body)
        if mutation.kind == "drop" and keys:
            body.pop(keys[mutation.pick % len(keys)])
        elif mutation.kind == "set" and keys:
            body[keys[mutation.pick % len(keys)]] = mutation.value
        elif mutation.kind == "add":
            body[mutation.key] = mutation.value
        elif mutation.kind == "options":
            body["PLACEMENT_OPTIONS"] = mutation.value
    return body


FORM = "application/x-www-form-urlencoded"


def send(client, path: str, query: dict, body: dict, plan: Plan):
    """One request built from ``plan`` on top of the well-formed (query, body)."""
    if plan.method != "POST":
        return client.generic(plan.method, f"{path}?{urlencode(query)}")
    # Query fields (DOMAIN, LANG...) are mutated too, and stay in the query string.
    mutated = _apply({**query, **body}, plan)
    query = {key: value for key, value in mutated.items() if key in query}
    body = {key: value for key, value in mutated.items() if key not in query}
    url = f"{path}?{urlencode(query)}"
    if plan.encoding == "form":
        return client.generic("POST", url, urlencode(body), content_type=FORM)
    if plan.encoding == "form_latin1":
        data = urlencode(body, encoding="latin-1", errors="replace")
        return client.generic("POST", url, data, content_type=FORM + "; charset=latin-1")
    if plan.encoding == "multipart":
        return client.post(url, body)
    if plan.encoding == "json":
        return client.generic("POST", url, json.dumps(body), content_type="application/json")
    if plan.encoding == "invalid_utf8":
        data = urlencode(body).encode() + b"&member_id=" + plan.raw + b"&" + quote(plan.raw).encode() + b"=" + plan.raw
        return client.generic("POST", url + "&LANG=%FF%FE", data, content_type=FORM)
    if plan.encoding == "raw":
        return client.generic("POST", url, plan.raw, content_type=plan.content_type)
    if plan.encoding == "sized":
        data = urlencode(body) + "&PAD="
        data += "x" * max(0, plan.size - len(data))
        return client.generic("POST", url, data, content_type=FORM)
    if plan.encoding == "sized_multipart":
        return client.post(url, {**body, "PAD": "x" * plan.size})
    if plan.encoding == "many_fields":
        data = urlencode(body) + "".join(f"&f{i}=1" for i in range(plan.size))
        return client.generic("POST", url, data, content_type=FORM)
    raise AssertionError(plan.encoding)


def fuzz(client, path: str, base: callable, name: str, stats: Counter) -> None:
    """Run the property over ``EXAMPLES`` plans; ``base()`` gives a well-formed (query, body)."""

    @FUZZ
    @given(plan=plans)
    def check(plan):
        before = rows_snapshot()
        query, body = base()
        response = send(client, path, query, body, plan)
        stats["inputs"] += 1
        stats[f"status_{response.status_code}"] += 1
        if response.status_code >= 500:
            stats["5xx"] += 1
        assert response.status_code < 500, (plan, response.content[:500])
        if response.status_code >= 400:
            stats["rejected"] += 1
            if rows_snapshot() != before:
                stats["rows_written_on_rejection"] += 1
            assert rows_snapshot() == before, plan
            assert_says_why(response)
        if plan.method != "POST":
            assert response.status_code == 405
        if plan.encoding in ("sized", "sized_multipart") and plan.size > LIMIT:
            assert response.status_code == 400 and b"too large" in response.content, plan
        if plan.encoding == "many_fields" and plan.size > django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:
            assert response.status_code == 400, plan

    check()
    record_figures(
        name,
        inputs=stats["inputs"],
        five_xx=stats["5xx"],
        rejected=stats["rejected"],
        rows_written_on_rejection=stats["rows_written_on_rejection"],
        statuses={key[7:]: value for key, value in sorted(stats.items()) if key.startswith("status_")},
    )
    assert stats["5xx"] == 0 and stats["rows_written_on_rejection"] == 0


@pytest.fixture
def quiet_fake(fake_b24, monkeypatch):
    """The fake without its rate limit, and retries without sleeping: only our code is on trial."""
    fake_b24.set_rate_limit(None)
    monkeypatch.setattr(bitrix_client, "RATE_LIMIT_BACKOFF", (0.001, 0.001, 0.001))
    return fake_b24


def test_install_fuzz_never_5xx_writes_nothing_on_rejection_and_says_why(client, quiet_fake):
    fake = quiet_fake
    install_portal(client, fake, domain="installed.example.com")  # a row that must stay as it is
    fake_portal = fake.add_portal(domain="fuzz.example.com")
    tokens = fake.issue_tokens(fake_portal, user_id=1, expires_in=86400)
    fuzz(client, "/portals/install/", lambda: install_payload(fake, fake_portal, tokens), "install", Counter())


def test_events_fuzz_never_5xx_writes_nothing_on_rejection_and_says_why(client, quiet_fake):
    fake = quiet_fake
    installed, fake_installed = install_portal(client, fake, domain="installed.example.com")
    fake_portal = fake.add_portal(domain="fuzz.example.com")
    tokens = fake.issue_tokens(fake_portal, user_id=1, expires_in=86400)
    kinds = iter(range(10**9))

    def base():
        # Rotate through the three events, on the installed portal and on a new one.
        kind = next(kinds) % 3
        if kind == 0:
            return {}, event_body("ONAPPINSTALL", fake, fake_portal, tokens)
        if kind == 1:
            return {}, event_body("ONAPPUPDATE", fake, fake_portal, tokens)
        return {}, event_body("ONAPPUNINSTALL", fake, fake_installed, data={"CLEAN": "1"})

    fuzz(client, "/portals/events/", base, "events", Counter())


def test_widget_handler_fuzz_never_5xx_writes_nothing_on_rejection_and_says_why(client, widget, monkeypatch):
    widget.fake.set_rate_limit(None)
    monkeypatch.setattr(bitrix_client, "RATE_LIMIT_BACKOFF", (0.001, 0.001, 0.001))
    fuzz(client, "/placements/handler/", widget.payload, "placements_handler", Counter())
