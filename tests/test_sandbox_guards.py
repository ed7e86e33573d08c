"""The sandbox's own guard, beside the settings that install it only in development: even where
it is installed, it answers only with DEBUG on and only a browser on this machine."""
import pytest
from django.http import Http404, HttpResponse
from django.test import RequestFactory
from django.urls import include, path

from sandbox.views import sandbox_only

# The suite runs with the sandbox off, so its URLs are mounted here for the tests that reverse them.
urlpatterns = [path("sandbox/", include("sandbox.urls"))]


@sandbox_only
def _page(request):
    return HttpResponse("sandbox")


def _get(address: str, host: str = "127.0.0.1:8000"):
    return _page(RequestFactory().get("/sandbox/", REMOTE_ADDR=address, HTTP_HOST=host))


@pytest.fixture
def sandbox_on(settings):
    settings.DEBUG, settings.SANDBOX = True, True
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1"])
def test_a_browser_on_this_machine_gets_the_sandbox(sandbox_on, address):
    assert _get(address).content == b"sandbox"


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.20", "203.0.113.7", "", "not-an-address"])
def test_a_browser_elsewhere_gets_a_404(sandbox_on, address):
    with pytest.raises(Http404):
        _get(address)


def test_with_debug_off_the_sandbox_is_a_404_even_from_this_machine(sandbox_on, settings):
    settings.DEBUG = False
    with pytest.raises(Http404):
        _get("127.0.0.1")


def test_localhost_is_sent_to_127_0_0_1_where_handler_urls_can_be_bound(sandbox_on):
    answer = _get("127.0.0.1", host="localhost:8000")
    assert answer.status_code == 302 and answer["Location"] == "http://127.0.0.1:8000/sandbox/"


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("wanted", ["//evil.example/", "https://evil.example/sandbox/", "/admin/", "/sandbox/\\\\evil"])
def test_the_install_step_goes_on_only_to_a_sandbox_page(wanted):
    from sandbox.views import _next_url

    assert _next_url(RequestFactory().get("/sandbox/", {"next": wanted})) == "/sandbox/tasks/1/?lang=en"


@pytest.mark.urls(__name__)
def test_the_install_step_goes_back_to_the_page_that_asked():
    from sandbox.views import _next_url

    assert _next_url(RequestFactory().get("/sandbox/", {"next": "/sandbox/tasks/2/?user=2"})) == "/sandbox/tasks/2/?user=2"
