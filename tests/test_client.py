"""The Bitrix24 client: errors by code, no redirects, bounded retries, batch and pagination."""
import pytest
from cryptography.fernet import Fernet

from portals import fields
from portals.bitrix import client, errors


@pytest.fixture
def portal(fake_b24, db):  # db: calls take their turn in the shared budget (portals/ratelimit.py)
    fake_portal = fake_b24.add_portal(domain="client.example.com")
    return fake_portal, fake_b24.issue_tokens(fake_portal)["access_token"]


@pytest.fixture
def quick_backoff(monkeypatch):
    monkeypatch.setattr(client, "RATE_LIMIT_BACKOFF", (0.01, 0.01, 0.01))


def test_call_returns_the_whole_answer(portal):
    fake_portal, token = portal
    answer = client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)
    assert answer["result"]["ADMIN"] is True and "time" in answer


@pytest.mark.parametrize(
    "status, code, exception",
    [
        (401, "expired_token", errors.ExpiredToken),
        (401, "invalid_token", errors.InvalidToken),
        (400, "invalid_grant", errors.InvalidGrant),
        (401, "NOT_INSTALLED", errors.NotInstalled),
        (500, "PORTAL_DELETED", errors.NotInstalled),
        (410, "PORTAL_DELETED", errors.NotInstalled),
        (403, "insufficient_scope", errors.AccessDenied),
        (401, "insufficient_scope", errors.AccessDenied),
        (400, "ERROR_CORE", errors.BitrixError),
        (500, "INTERNAL_SERVER_ERROR", errors.TransportError),
    ],
)
def test_errors_are_chosen_by_code_not_by_status(portal, fake_b24, status, code, exception):
    fake_portal, token = portal
    fake_b24.fail_next("profile", status=status, error=code, description="x")
    with pytest.raises(exception) as raised:
        client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)
    assert raised.value.code == code and raised.value.status == status


def test_already_binded_is_its_own_error(portal):
    fake_portal, token = portal
    params = {"PLACEMENT": "TASK_VIEW_TOP_PANEL", "HANDLER": "https://app.example.com/h/"}
    client.call(client_endpoint=fake_portal.client_endpoint, method="placement.bind", access_token=token, params=params)
    with pytest.raises(errors.AlreadyBound):
        client.call(client_endpoint=fake_portal.client_endpoint, method="placement.bind", access_token=token, params=params)


def test_rate_limit_is_retried_with_bounded_backoff(portal, fake_b24, quick_backoff):
    fake_portal, token = portal
    fake_b24.fail_next("profile", times=2)
    answer = client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)
    assert answer["result"]["ID"] == "1"
    assert fake_b24.count(method="profile") == 3


def test_rate_limit_that_does_not_end_gives_up(portal, fake_b24, quick_backoff):
    fake_portal, token = portal
    fake_b24.fail_next("profile", times=10)
    with pytest.raises(errors.RateLimited):
        client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)
    assert fake_b24.count(method="profile") == 1 + len(client.RATE_LIMIT_BACKOFF)


def test_redirect_is_not_followed(portal, fake_b24):
    """A moved portal answers 302; following it would re-send the token somewhere else."""
    fake_portal, token = portal
    old_endpoint = fake_portal.client_endpoint
    fake_b24.move_portal(fake_portal, "moved.example.com")
    with pytest.raises(errors.PortalMoved) as raised:
        client.call(client_endpoint=old_endpoint, method="profile", access_token=token)
    assert "moved.example.com" in raised.value.location
    assert fake_b24.count(domain="moved.example.com") == 0


def test_html_error_page_is_a_transport_error(portal, fake_b24):
    fake_portal, token = portal
    fake_b24.fail_next("profile", status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(errors.TransportError):
        client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)


def test_timeout_is_its_own_error(portal, fake_b24):
    fake_portal, token = portal
    fake_b24.hang("profile", 3)
    with pytest.raises(errors.Timeout):
        client.call(client_endpoint=fake_portal.client_endpoint, method="profile", access_token=token)


def test_refresh_answer_without_access_token_is_an_error(fake_b24):
    fake_b24.fail_next("oauth/token", status=200, error="wrong_client", description="Wrong client")
    with pytest.raises(errors.InvalidClient):
        client.oauth_refresh(server=fake_b24.oauth_url, refresh_token="r" * 64)
    fake_b24.fail_next("oauth/token", status=200, body='{"expires_in": 3600}')
    with pytest.raises(errors.TransportError):
        client.oauth_refresh(server=fake_b24.oauth_url, refresh_token="r" * 64)


def test_refresh_refuses_an_untrusted_server(fake_b24):
    with pytest.raises(errors.UntrustedServer):
        client.oauth_refresh(server="https://evil.example.net/rest/", refresh_token="r" * 64)
    assert fake_b24.calls == []


def test_batch_returns_results_and_errors_per_command(portal, fake_b24):
    fake_portal, token = portal
    fake_b24.add_task(fake_portal, 7, title="Seven")
    result = client.batch(
        client_endpoint=fake_portal.client_endpoint,
        access_token=token,
        commands={
            "me": ("profile", {}),
            "task": ("tasks.task.get", {"taskId": 7, "select": ["ID", "TITLE"]}),
            "missing": ("tasks.task.get", {"taskId": 999}),
            "bad": ("tasks.task.get", {"taskId": "x"}),
        },
    )
    assert result.results["me"]["ID"] == "1"
    assert result.results["task"]["task"]["title"] == "Seven"
    assert result.results["missing"] == []
    assert result.errors["bad"].code == "0"
    assert fake_b24.count(server="portal") == 1


def test_batch_refuses_more_than_50_commands(portal):
    fake_portal, token = portal
    with pytest.raises(ValueError):
        client.batch(client_endpoint=fake_portal.client_endpoint, access_token=token,
                     commands={str(i): ("profile", {}) for i in range(51)})


def test_list_all_follows_next(monkeypatch):
    pages = [{"result": [1, 2], "next": 2}, {"result": [3], "total": 3}]
    seen = []

    def fake_call(**kwargs):
        seen.append(kwargs["params"]["start"])
        return pages[len(seen) - 1]

    monkeypatch.setattr(client, "call", fake_call)
    assert client.list_all(client_endpoint="x", access_token="t", method="m") == [1, 2, 3]
    assert seen == [0, 2]


def test_build_query_is_php_style():
    assert client.build_query({"taskId": 7, "select": ["ID", "TITLE"], "f": {"a": "b c"}}) == (
        "taskId=7&select[0]=ID&select[1]=TITLE&f[a]=b%20c"
    )


def test_oauth_server_for_defaults_to_the_first_and_refuses_others(settings):
    settings.B24_OAUTH_SERVERS = ["https://oauth.bitrix.info", "https://oauth.bitrix24.tech/"]
    assert client.oauth_server_for(None) == "https://oauth.bitrix.info"
    assert client.oauth_server_for("https://OAUTH.bitrix24.tech/rest/") == "https://oauth.bitrix24.tech"
    for forged in ("https://oauth.bitrix.info.evil.net/rest/", "http://oauth.bitrix.info/rest/",
                   "https://user@oauth.bitrix.info/rest/", "https://oauth.bitrix.info:8443/rest/"):
        with pytest.raises(errors.UntrustedServer):
            client.oauth_server_for(forged)


def test_wrong_encryption_key_raises_instead_of_returning_ciphertext(settings):
    ciphertext = fields.encrypt("secret-token")
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(fields.TokenDecryptionError):
        fields.decrypt(ciphertext)


def test_old_key_still_decrypts_after_a_new_key_is_put_first(settings):
    old = settings.TOKEN_ENCRYPTION_KEYS[0]
    ciphertext = fields.encrypt("secret-token")
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    assert fields.decrypt(ciphertext) == "secret-token"
    rotated = fields.rotate(ciphertext)
    settings.TOKEN_ENCRYPTION_KEYS = settings.TOKEN_ENCRYPTION_KEYS[:1]
    assert fields.decrypt(rotated) == "secret-token"


def test_the_suite_cannot_reach_beyond_loopback(settings, db):
    """The conftest guard: a real Bitrix24 host (here an address for documentation) is refused."""
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = True
    with pytest.raises(errors.TransportError):
        client.call(client_endpoint="http://203.0.113.7/rest/", method="profile", access_token="t")


# --- the portal's address is checked where we connect (issue 10) -----------------------------------


@pytest.fixture
def resolving(monkeypatch):
    """Names resolve as the test says (no DNS query leaves the machine); connects are recorded."""
    import socket

    import urllib3.util.connection

    answers: dict[str, list[str]] = {}
    connects: list[tuple] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                    for ip in answers[host]]
        return real_getaddrinfo(host, port, *args, **kwargs)

    real_create = urllib3.util.connection.create_connection

    def create_connection(address, *args, **kwargs):
        connects.append(address)
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return answers, connects


@pytest.mark.django_db
@pytest.mark.parametrize("host, addresses", [
    ("127.0.0.1.nip.io", ["127.0.0.1"]),
    ("localhost.localdomain", ["127.0.0.1", "::1"]),
    ("intranet.example.com", ["10.1.2.3"]),
    ("metadata.example.com", ["169.254.169.254"]),
    ("mixed.example.com", ["93.184.216.34", "192.168.0.10"]),  # one private answer is enough
    ("mapped.example.com", ["::ffff:127.0.0.1"]),
])
def test_a_portal_name_resolving_to_a_private_address_is_refused_at_connect_time(settings, resolving, host, addresses):
    from portals.bitrix import client, errors

    answers, connects = resolving
    answers[host] = addresses
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = False
    endpoint = f"https://{host}/rest/"
    assert client.validate_client_endpoint(endpoint) == endpoint  # the syntax check lets it through
    with pytest.raises(errors.PrivateAddress):
        client.call(client_endpoint=endpoint, method="profile", access_token="a" * 64)
    assert connects == []  # refused before any connection


@pytest.mark.django_db
def test_a_public_name_is_connected_to_at_the_address_that_was_checked(settings, resolving):
    from portals.bitrix import client, errors

    answers, connects = resolving
    answers["portal.example.com"] = ["93.184.216.34"]
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = False
    with pytest.raises(errors.TransportError) as refused:
        client.call(client_endpoint="https://portal.example.com/rest/", method="profile", access_token="a" * 64)
    assert not isinstance(refused.value, errors.PrivateAddress)  # the tests' own guard stopped the connect
    assert connects == [("93.184.216.34", 443)]
