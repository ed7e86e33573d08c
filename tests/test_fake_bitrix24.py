"""Proves the fake Bitrix24 answers like the protocol notes say (plain requests, no Django)."""
import json
import subprocess
import sys
import threading
import time

import pytest
import requests

from fake_bitrix24 import FakeBitrix24

HANDLER = "https://app.example.com/b24/widget/task/"


@pytest.fixture
def fake():
    with FakeBitrix24() as f:
        yield f


@pytest.fixture
def portal(fake):
    return fake.add_portal()


def refresh(fake, refresh_token, **over):
    params = {"grant_type": "refresh_token", "client_id": fake.client_id,
              "client_secret": fake.client_secret, "refresh_token": refresh_token, **over}
    return requests.get(fake.oauth_url + "/oauth/token/", params=params, timeout=5)


def call(portal, method, token, **params):
    return requests.post(portal.client_endpoint + method, json={**params, "auth": token}, timeout=5)


def test_issue_tokens_shape(fake, portal):
    t = fake.issue_tokens(portal)
    assert len(t["access_token"]) >= 64 and len(t["refresh_token"]) >= 64
    assert t["server_endpoint"] == fake.oauth_url + "/rest/"
    assert t["client_endpoint"] == portal.client_endpoint and t["member_id"] == portal.member_id
    assert t["expires_in"] == 3600 and t["user_id"] == 1 and t["status"] == "L"


def test_refresh_success_shape_and_post_form(fake, portal):
    t = fake.issue_tokens(portal)
    r = requests.post(fake.oauth_url + "/oauth/token/", data={
        "grant_type": "refresh_token", "client_id": fake.client_id,
        "client_secret": fake.client_secret, "refresh_token": t["refresh_token"]}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["access_token"] != t["access_token"] and body["member_id"] == portal.member_id
    assert call(portal, "profile", body["access_token"]).status_code == 200


def test_refresh_is_single_use(fake, portal):
    t = fake.issue_tokens(portal)
    assert refresh(fake, t["refresh_token"]).status_code == 200
    again = refresh(fake, t["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    old = call(portal, "profile", t["access_token"])
    assert old.status_code == 401 and old.json()["error"] == "expired_token"


def test_wrong_client_answers_200(fake, portal):
    t = fake.issue_tokens(portal)
    r = refresh(fake, t["refresh_token"], client_id="app.nope")
    assert r.status_code == 200
    assert r.json() == {"error": "wrong_client", "error_description": "Wrong client"}


def test_wrong_secret_and_missing_refresh_token(fake, portal):
    t = fake.issue_tokens(portal)
    r = refresh(fake, t["refresh_token"], client_secret="bad")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_client")
    r = refresh(fake, "")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    assert r.json()["error_description"] == 'No "refresh_token" parameter found'
    r = refresh(fake, "f" * 68)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


def test_expired_token_401(fake, portal):
    t = fake.issue_tokens(portal)
    fake.expire_access_token(t["access_token"])
    r = call(portal, "profile", t["access_token"])
    assert r.status_code == 401
    assert r.json() == {"error": "expired_token", "error_description": "The access token provided has expired."}
    short = fake.issue_tokens(portal, expires_in=0)
    assert call(portal, "profile", short["access_token"]).json()["error"] == "expired_token"


def test_invalid_token_and_other_portal(fake, portal):
    other = fake.add_portal("portal-2.example.com")
    t2 = fake.issue_tokens(other)
    assert call(portal, "profile", "x" * 68).json()["error"] == "invalid_token"
    r = call(portal, "profile", t2["access_token"])
    assert (r.status_code, r.json()["error"]) == (401, "invalid_token")


def test_auth_in_query_form_and_json(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    url = portal.client_endpoint + "profile.json"
    assert requests.get(url, params={"auth": tok}, timeout=5).json()["result"]["ID"] == "1"
    assert requests.post(url, data={"auth": tok}, timeout=5).json()["result"]["ADMIN"] is True
    r = requests.post(url, json={"auth": tok}, timeout=5).json()
    assert r["result"]["NAME"] == "Admin" and "time" in r


def test_user_current_and_profile_for_non_admin(fake, portal):
    fake.add_user(portal, 7, name="Ann", last_name="Lee", photo="https://x.example.com/a.png")
    tok = fake.issue_tokens(portal, user_id=7)["access_token"]
    prof = call(portal, "profile", tok).json()["result"]
    assert prof == {**prof, "ID": "7", "ADMIN": False, "NAME": "Ann", "PERSONAL_PHOTO": "https://x.example.com/a.png"}
    assert call(portal, "user.current", tok).json()["result"]["ID"] == "7"


def test_oauth_app_info(fake, portal):
    t = fake.issue_tokens(portal)
    r = requests.get(fake.oauth_url + "/rest/app.info", params={"auth": t["access_token"]}, timeout=5)
    res = r.json()["result"]
    assert res["client_id"] == fake.client_id and res["user_id"] == 1
    assert res["install"]["member_id"] == portal.member_id and res["install"]["domain"] == portal.domain
    assert res["install"]["client_endpoint"] == portal.client_endpoint and res["install"]["installed"] is True
    bad = requests.get(fake.oauth_url + "/rest/app.info", params={"auth": "z" * 68}, timeout=5)
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_token")


def test_missing_task_returns_empty_array(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    r = call(portal, "tasks.task.get", tok, taskId=999)
    assert r.status_code == 200 and r.json()["result"] == []


def test_invisible_task_returns_empty_array_and_bad_id(fake, portal):
    fake.add_user(portal, 5)
    fake.add_task(portal, 31, title="Secret", visible_to={1})
    tok5 = fake.issue_tokens(portal, user_id=5)["access_token"]
    assert call(portal, "tasks.task.get", tok5, taskId=31).json()["result"] == []
    r = call(portal, "tasks.task.get", tok5, taskId="abc")
    assert r.status_code == 400 and r.json() == {"error": "0", "error_description": "wrong task id"}


def test_task_get_shape_and_actions(fake, portal):
    fake.add_user(portal, 547, name="Maria", last_name="J", work_position="Tester")
    fake.add_task(portal, 8017, title="Task Example", responsible_id=547, deadline="2025-10-24T19:00:00+02:00")
    tok = fake.issue_tokens(portal)["access_token"]
    task = call(portal, "tasks.task.get", tok, taskId="8017", select=["*"]).json()["result"]["task"]
    assert task["id"] == "8017" and task["status"] == "2" and task["priority"] == "1"
    assert task["responsibleId"] == "547" and task["responsible"]["workPosition"] == "Tester"
    assert task["responsible"]["link"] == "/company/personal/user/547/" and task["action"]["start"] is True
    slim = call(portal, "tasks.task.get", tok, taskId=8017, select=["ID", "TITLE"]).json()["result"]["task"]
    assert set(slim) == {"id", "title", "action"}
    assert call(portal, "tasks.task.start", tok, taskId=8017).json()["result"]["task"]["status"] == "3"
    assert call(portal, "tasks.task.defer", tok, taskId=8017).json()["result"]["task"]["status"] == "6"
    assert call(portal, "tasks.task.complete", tok, taskId=8017).json()["result"]["task"]["status"] == "5"


def test_task_pause_renew_and_control_follow_the_action_rights(fake, portal):
    fake.add_user(portal, 5)
    fake.add_task(portal, 40, status="3", created_by=1, responsible_id=5)
    creator, responsible = fake.issue_tokens(portal)["access_token"], fake.issue_tokens(portal, user_id=5)["access_token"]
    assert call(portal, "tasks.task.pause", responsible, taskId=40).json()["result"]["task"]["status"] == "2"
    assert call(portal, "tasks.task.pause", responsible, taskId=40).json()["error"] == "ERROR_CORE"  # not in progress
    fake.add_task(portal, 41, status="4", created_by=1, responsible_id=5)
    seen_by_responsible = call(portal, "tasks.task.get", responsible, taskId=41).json()["result"]["task"]["action"]
    assert (seen_by_responsible["approve"], seen_by_responsible["complete"]) == (False, False)
    assert call(portal, "tasks.task.approve", responsible, taskId=41).json()["error"] == "ERROR_CORE"
    assert call(portal, "tasks.task.get", creator, taskId=41).json()["result"]["task"]["action"]["disapprove"] is True
    assert call(portal, "tasks.task.disapprove", creator, taskId=41).json()["result"]["task"]["status"] == "2"
    fake.add_task(portal, 42, status="4", created_by=1, responsible_id=5)
    assert call(portal, "tasks.task.approve", creator, taskId=42).json()["result"]["task"]["status"] == "5"
    assert call(portal, "tasks.task.renew", creator, taskId=42).json()["result"]["task"]["status"] == "2"


def test_placement_bind_duplicate_is_error_core(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    r = call(portal, "placement.bind", tok, PLACEMENT="TASK_VIEW_TOP_PANEL", HANDLER=HANDLER, TITLE="W")
    assert r.status_code == 200 and r.json()["result"] is True
    dup = call(portal, "placement.bind", tok, PLACEMENT="TASK_VIEW_TOP_PANEL", HANDLER=HANDLER)
    assert dup.status_code == 400
    assert dup.json() == {"error": "ERROR_CORE",
                          "error_description": "Unable to set placement handler: Handler already binded"}
    got = call(portal, "placement.get", tok).json()["result"]
    assert got == [{"placement": "TASK_VIEW_TOP_PANEL", "userId": 0, "handler": HANDLER, "options": [],
                    "title": "W", "description": "", "langAll": []}]


def test_placement_bind_validation(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    cases = [
        ({"HANDLER": HANDLER}, "ERROR_ARGUMENT"),
        ({"PLACEMENT": "TASK_VIEW_TAB", "HANDLER": "https://localhost/x"}, "ERROR_WRONG_HANDLER_URL"),
        ({"PLACEMENT": "TASK_VIEW_TAB", "HANDLER": "ftp://a.example.com/x"}, "ERROR_UNSUPPORTED_PROTOCOL"),
        ({"PLACEMENT": "NOPE_X", "HANDLER": HANDLER}, "ERROR_PLACEMENT_NOT_FOUND"),
        ({"PLACEMENT": "DEFAULT", "HANDLER": HANDLER}, "ERROR_ARGUMENT"),
    ]
    for params, err in cases:
        r = call(portal, "placement.bind", tok, **params)
        assert (r.status_code, r.json()["error"]) == (400, err), params
    assert call(portal, "placement.bind", tok, HANDLER=HANDLER).json()["argument"] == "PLACEMENT"


def test_placement_admin_only(fake, portal):
    fake.add_user(portal, 9)
    tok = fake.issue_tokens(portal, user_id=9)["access_token"]
    r = call(portal, "placement.bind", tok, PLACEMENT="TASK_VIEW_TAB", HANDLER=HANDLER)
    assert r.status_code == 403 and r.json() == {"error": "ACCESS_DENIED", "error_description": "Access denied!"}
    assert call(portal, "placement.list", tok).status_code == 200


def test_non_admin_may_bind_online_events_for_themselves_only(fake, portal):
    """Protocol 2.5: ordinary users bind online events, and only as themselves."""
    fake.add_user(portal, 9)
    tok = fake.issue_tokens(portal, user_id=9)["access_token"]
    handler = "https://app.example.com/portals/events/"
    r = call(portal, "event.bind", tok, event="ONTASKADD", handler=handler)
    assert r.status_code == 200 and r.json()["result"] is True
    assert portal.events[-1]["auth_type"] == "9"
    r = call(portal, "event.bind", tok, event="ONTASKUPDATE", handler=handler, auth_type="1")
    assert r.status_code == 403 and r.json()["error"] == "ACCESS_DENIED"


def test_offline_events_are_an_administrators(fake, portal):
    """Protocol 13.2: a non-admin's offline binding is refused with the documented message."""
    fake.add_user(portal, 9)
    tok = fake.issue_tokens(portal, user_id=9)["access_token"]
    r = call(portal, "event.bind", tok, event="ONTASKADD", handler="https://app.example.com/x/",
             event_type="offline")
    assert r.status_code == 403
    assert r.json() == {"error": "ACCESS_DENIED",
                        "error_description": "Access denied! Offline events binding requires administrator access rights"}
    admin = fake.issue_tokens(portal, user_id=1)["access_token"]
    r = call(portal, "event.bind", admin, event="ONTASKADD", handler="https://app.example.com/x/", event_type="offline")
    assert r.status_code == 200 and portal.events[-1]["offline"] == 1


@pytest.mark.parametrize("method", ["event.offline.get", "event.offline.clear", "event.offline.error",
                                    "event.offline.list", "placement.bind", "placement.unbind", "placement.get"])
def test_the_rights_table_keeps_offline_events_and_placements_for_administrators(fake, portal, method):
    from fake_bitrix24.rest import check_rights
    from fake_bitrix24.state import ApiError

    user = fake.add_user(portal, 9)
    with pytest.raises(ApiError) as refused:
        check_rights(portal, user, method)
    assert refused.value.error == "ACCESS_DENIED"
    check_rights(portal, portal.users[1], method)  # the administrator may


def test_a_non_admins_batch_binds_the_online_events_but_no_placement(fake, portal):
    """Why the app asks `profile` before its bind batch: a mixed batch would half-succeed."""
    fake.add_user(portal, 9)
    tok = fake.issue_tokens(portal, user_id=9)["access_token"]
    cmd = {"p": f"placement.bind?PLACEMENT=TASK_VIEW_TOP_PANEL&HANDLER={HANDLER}",
           "e": "event.bind?event=ONAPPUNINSTALL&handler=https%3A%2F%2Fapp.example.com%2Fportals%2Fevents%2F"}
    body = call(portal, "batch", tok, halt=0, cmd=cmd).json()["result"]
    assert body["result_error"]["p"]["error"] == "ACCESS_DENIED"
    assert body["result"]["e"] is True


def test_placement_unbind_count_semantic(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    call(portal, "placement.bind", tok, PLACEMENT="TASK_VIEW_TAB", HANDLER=HANDLER)
    call(portal, "placement.bind", tok, PLACEMENT="TASK_VIEW_TAB", HANDLER=HANDLER + "?b=1")
    call(portal, "placement.bind", tok, PLACEMENT="TASK_VIEW_TAB", HANDLER=HANDLER + "?c=1")
    one = call(portal, "placement.unbind", tok, PLACEMENT="TASK_VIEW_TAB", HANDLER=HANDLER)
    assert one.json()["result"] == {"count": 2}
    rest = call(portal, "placement.unbind", tok, PLACEMENT="TASK_VIEW_TAB")
    assert rest.json()["result"] == {"count": 4}
    assert call(portal, "placement.unbind", tok, PLACEMENT="TASK_VIEW_TAB").json()["result"] == {"count": 0}


def test_event_bind_get_unbind(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    h = "https://app.example.com/b24/events/"
    assert call(portal, "event.bind", tok, event="ONAPPUNINSTALL", handler=h).json()["result"] is True
    dup = call(portal, "event.bind", tok, event="onAppUninstall", handler=h)
    assert (dup.status_code, dup.json()["error"]) == (400, "ERROR_CORE")
    assert call(portal, "event.get", tok).json()["result"] == [
        {"event": "ONAPPUNINSTALL", "handler": h, "auth_type": "0", "offline": 0}]
    assert call(portal, "event.unbind", tok, event="ONAPPUNINSTALL", handler=h).json()["result"] == {"count": 1}


def test_batch_shape(fake, portal):
    fake.add_task(portal, 5)
    tok = fake.issue_tokens(portal)["access_token"]
    r = requests.post(portal.client_endpoint + "batch", data={
        "auth": tok, "halt": "0", "cmd[me]": "profile", "cmd[t]": "tasks.task.get?taskId=5&select[]=ID",
        "cmd[bad]": "no.such.method", "cmd[nested]": "batch?cmd[x]=profile"}, timeout=5)
    assert r.status_code == 200
    res = r.json()["result"]
    assert set(res) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert res["result"]["me"]["ID"] == "1" and res["result"]["t"]["task"]["id"] == "5"
    assert res["result_error"]["bad"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert res["result_error"]["nested"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert fake.count("batch") == 1 and fake.count("profile", include_batch=True) == 1


def test_batch_too_long(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    r = call(portal, "batch", tok, cmd={f"c{i}": "profile" for i in range(51)})
    assert (r.status_code, r.json()["error"]) == (400, "ERROR_BATCH_LENGTH_EXCEEDED")


def test_batch_auth_error(fake, portal):
    t = fake.issue_tokens(portal)
    fake.expire_all(portal)
    r = call(portal, "batch", t["access_token"], cmd={"a": "profile", "b": "user.current"})
    assert r.status_code == 401 and r.json()["error"] == "expired_token"


def test_unknown_method_404(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    r = call(portal, "crm.deal.list", tok)
    assert (r.status_code, r.json()["error"]) == (404, "ERROR_METHOD_NOT_FOUND")


def test_rate_limit_gives_503_query_limit_exceeded(fake, portal):
    fake.set_rate_limit(capacity=5, drain_per_second=0.5)
    tok = fake.issue_tokens(portal)["access_token"]
    codes = [call(portal, "profile", tok).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[5:] == [503] * 3
    r = call(portal, "profile", tok)
    assert r.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    fake.set_rate_limit(None)
    assert call(portal, "profile", tok).status_code == 200


def test_fail_next(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    fake.fail_next("profile", status=500, error="INTERNAL_SERVER_ERROR", description="boom", times=2)
    assert [call(portal, "profile", tok).status_code for _ in range(3)] == [500, 500, 200]
    fake.fail_next("oauth/token", status=502, body="<html>bad gateway</html>")
    r = refresh(fake, fake.issue_tokens(portal)["refresh_token"])
    assert r.status_code == 502 and r.text == "<html>bad gateway</html>"


def test_latency_and_hang(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    fake.hang("profile", 2.0, times=1)
    with pytest.raises(requests.Timeout):
        requests.get(portal.client_endpoint + "profile", params={"auth": tok}, timeout=0.3)
    fake.latency_for["portal"] = 0.2
    t0 = time.monotonic()
    assert call(portal, "profile", tok).status_code == 200
    assert time.monotonic() - t0 >= 0.2


def test_latency_per_portal_slows_that_portal_only(fake, portal):
    """One slow portal beside a fast one, both on the fake's one port (set directly or through
    the control API's set_latency with a domain)."""
    other = fake.add_portal(domain="fast.example.com")
    slow_token, fast_token = fake.issue_tokens(portal)["access_token"], fake.issue_tokens(other)["access_token"]
    from fake_bitrix24 import control

    control.handle(fake, "set_latency", json.dumps({"domain": portal.domain, "latency": 0.4}).encode())
    assert portal.latency == 0.4 and other.latency == 0.0
    results = {}

    def timed(name, p, token):
        t0 = time.monotonic()
        assert call(p, "profile", token).status_code == 200
        results[name] = time.monotonic() - t0

    slow = threading.Thread(target=timed, args=("slow", portal, slow_token))
    slow.start()
    timed("fast", other, fast_token)
    slow.join(5)
    assert results["slow"] >= 0.4 and results["fast"] < 0.3


def test_oauth_down(fake, portal):
    fake.oauth_down = True
    r = refresh(fake, fake.issue_tokens(portal)["refresh_token"])
    assert r.status_code == 503 and "Service Unavailable" in r.text


def test_uninstall_behaviour(fake, portal):
    t = fake.issue_tokens(portal)
    call(portal, "placement.bind", t["access_token"], PLACEMENT="TASK_VIEW_TAB", HANDLER=HANDLER)
    call(portal, "event.bind", t["access_token"], event="ONAPPUNINSTALL", handler=HANDLER)
    fake.uninstall(portal)
    info = requests.get(fake.oauth_url + "/rest/app.info", params={"auth": t["access_token"]}, timeout=5)
    assert info.status_code == 401
    assert info.json() == {"error": "NOT_INSTALLED", "error_description": "Application not installed"}
    assert refresh(fake, t["refresh_token"]).json()["error"] == "invalid_grant"
    r = call(portal, "profile", t["access_token"])
    assert (r.status_code, r.json()["error"]) == (401, "invalid_token")
    assert portal.placements == [] and portal.events == []
    old_app_token = portal.application_token
    fake.reinstall(portal)
    assert portal.application_token != old_app_token
    assert call(portal, "profile", t["access_token"]).status_code == 401
    assert call(portal, "placement.get", fake.issue_tokens(portal)["access_token"]).json()["result"] == []


def test_move_portal_302(fake, portal):
    tok = fake.issue_tokens(portal)["access_token"]
    old_endpoint, member = portal.client_endpoint, portal.member_id
    fake.move_portal(portal, "new-name.example.com")
    r = requests.post(old_endpoint + "profile.json?x=1", data={"auth": tok}, allow_redirects=False, timeout=5)
    assert r.status_code == 302
    assert r.headers["Location"] == portal.client_endpoint + "profile.json?x=1"
    assert portal.domain == "new-name.example.com" and portal.member_id == member
    assert fake.portal_by_member(member) is portal and fake.portals["new-name.example.com"] is portal
    assert requests.post(r.headers["Location"], data={"auth": tok}, timeout=5).status_code == 200


def test_calls_are_counted(fake, portal):
    t = fake.issue_tokens(portal)
    call(portal, "profile", t["access_token"])
    call(portal, "profile.json", t["access_token"])
    refresh(fake, t["refresh_token"])
    assert fake.count("profile") == 2 and fake.count(server="oauth") == 1
    assert fake.count(method="oauth/token") == 1 and fake.count(domain=portal.domain) == 2
    c = fake.calls[0]
    assert c.server == "portal" and c.method == "profile" and c.http_method == "POST"
    assert c.params["auth"] == t["access_token"] and c.status == 200 and c.domain == portal.domain
    assert fake.max_rate(portal.domain, window=10) == 2
    fake.reset_calls()
    assert fake.count() == 0


def test_concurrent_refresh_exactly_one_succeeds(fake, portal):
    t = fake.issue_tokens(portal)
    barrier = threading.Barrier(20)
    results = []

    def worker():
        barrier.wait()
        results.append(refresh(fake, t["refresh_token"]))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 1 and "access_token" in ok[0].json()
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code != 200)


def test_stop_is_fast():
    fake = FakeBitrix24().start()
    p = fake.add_portal()
    fake.hang("profile", 30)
    th = threading.Thread(target=lambda: requests.get(p.client_endpoint + "profile", timeout=5), daemon=True)
    th.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    fake.stop()
    assert time.monotonic() - t0 < 2


def test_cli_and_control_endpoint():
    proc = subprocess.Popen([sys.executable, "-m", "fake_bitrix24"], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        ctl = info["oauth_url"] + "/_fake/"
        p = requests.post(ctl + "add_portal", json={"domain": "cli.example.com"}, timeout=5).json()
        tok = requests.post(ctl + "issue_tokens", json={"domain": "cli.example.com"}, timeout=5).json()
        requests.post(ctl + "add_task", json={"domain": "cli.example.com", "task_id": 3}, timeout=5)
        r = requests.get(p["client_endpoint"] + "tasks.task.get", params={"auth": tok["access_token"], "taskId": 3},
                         timeout=5)
        assert r.json()["result"]["task"]["id"] == "3"
        counts = requests.post(ctl + "counts", json={"method": "tasks.task.get"}, timeout=5).json()
        assert counts["count"] == 1
        assert requests.post(ctl + "max_rate", json={"domain": "cli.example.com"}, timeout=5).json()["max_rate"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# --- CRM (protocol 16) and batch references (4.6) --------------------------------------------------


@pytest.fixture
def crm_portal(fake):
    portal = fake.add_portal(domain="crm.example.com", scope="task,placement,crm,user_brief")
    fake.add_user(portal, 5, name="Ivan", last_name="Sidorov")
    fake.add_deal(portal, 410, title="New Deal #1", stage_id="PREPARATION", opportunity="1000000.00",
                  close_date="2024-09-09T02:00:00+02:00", assigned_by_id=5, visible_to={1})
    return portal


def test_deal_get_shape_strings_and_nulls(fake, crm_portal):
    tok = fake.issue_tokens(crm_portal)["access_token"]
    deal = call(crm_portal, "crm.deal.get", tok, id="410").json()["result"]
    assert deal["ID"] == "410" and deal["OPPORTUNITY"] == "1000000.00" and deal["CURRENCY_ID"] == "EUR"
    assert deal["STAGE_SEMANTIC_ID"] == "P" and deal["ASSIGNED_BY_ID"] == "5" and deal["CONTACT_ID"] is None


def test_missing_or_hidden_deal_is_an_empty_error_code_with_400(fake, crm_portal):
    tok = fake.issue_tokens(crm_portal)["access_token"]
    missing = call(crm_portal, "crm.deal.get", tok, id="999")
    assert missing.status_code == 400 and missing.json() == {"error": "", "error_description": "Not found"}
    other = fake.issue_tokens(crm_portal, user_id=5)["access_token"]
    hidden = call(crm_portal, "crm.deal.get", other, id="410")
    assert hidden.status_code == 400 and hidden.json()["error_description"] == "Access denied."


def test_crm_needs_the_crm_scope(fake, portal):
    fake.add_deal(portal, 1)
    tok = fake.issue_tokens(portal)["access_token"]
    assert call(portal, "crm.deal.get", tok, id="1").json()["error"] == "insufficient_scope"


def test_batch_substitutes_an_earlier_commands_result(fake, crm_portal):
    tok = fake.issue_tokens(crm_portal)["access_token"]
    r = requests.post(crm_portal.client_endpoint + "batch", data={
        "auth": tok, "halt": "0", "cmd[deal]": "crm.deal.get?id=410",
        "cmd[stage]": "crm.status.list?filter%5BSTATUS_ID%5D=%24result%5Bdeal%5D%5BSTAGE_ID%5D",
        "cmd[who]": "user.get?ID=$result[deal][ASSIGNED_BY_ID]"}, timeout=5)
    res = r.json()["result"]["result"]
    assert [row["NAME"] for row in res["stage"]] == ["Document preparation"]
    assert [(u["ID"], u["NAME"]) for u in res["who"]] == [("5", "Ivan")]


# --- subscription, payment and updates (protocol 2.2, 15) -----------------------------------------


def test_subscription_shows_in_both_app_info_variants(fake, portal):
    fake.set_subscription(portal, status="T", days=12, license="de_pro100")
    t = fake.issue_tokens(portal)
    info = call(portal, "app.info", t["access_token"]).json()["result"]
    assert (info["STATUS"], info["DAYS"], info["PAYMENT_EXPIRED"], info["LICENSE"]) == ("T", 12, "N", "de_pro100")
    oauth = requests.get(fake.oauth_url + "/rest/app.info", params={"auth": t["access_token"]}, timeout=5).json()
    install = oauth["result"]["install"]
    assert (install["status"], install["days"], install["payment_expired"]) == ("T", 12, "N")


def test_payment_required_refuses_refresh_and_rest_until_paid(fake, portal):
    t = fake.issue_tokens(portal)
    fake.require_payment(portal)
    r = refresh(fake, t["refresh_token"])
    assert r.status_code == 401 and r.json()["error"] == "PAYMENT_REQUIRED"
    rest = call(portal, "app.info", t["access_token"])
    assert rest.status_code == 401 and rest.json()["error"] == "PAYMENT_REQUIRED"
    fake.pay(portal, status="P", days=30)
    renewed = refresh(fake, t["refresh_token"])  # the refresh token was not spent meanwhile
    assert renewed.status_code == 200
    assert call(portal, "profile", renewed.json()["access_token"]).status_code == 200


def test_update_drops_event_handlers_and_rotates_the_application_token(fake, portal):
    admin = fake.issue_tokens(portal)["access_token"]
    assert call(portal, "event.bind", admin, event="ONAPPUPDATE", handler=HANDLER).status_code == 200
    assert call(portal, "placement.bind", admin, PLACEMENT="TASK_VIEW_TOP_PANEL", HANDLER=HANDLER).status_code == 200
    old_token = portal.application_token
    assert fake.update_app(portal) != old_token
    assert call(portal, "event.get", admin).json()["result"] == []
    assert len(call(portal, "placement.get", admin).json()["result"]) == 1
    fake.update_app(portal, drop_placements=True)
    assert call(portal, "placement.get", admin).json()["result"] == []
    assert call(portal, "app.info", admin).json()["result"]["VERSION"] == 3


def test_odd_app_info_fields_are_sent_as_set(fake, portal):
    portal.app_info_extra.update({"DAYS": "soon", "STATUS": "Q", "LICENSE": None})
    info = call(portal, "app.info", fake.issue_tokens(portal)["access_token"]).json()["result"]
    assert info["DAYS"] == "soon" and info["STATUS"] == "Q" and "LICENSE" not in info
