"""The control API, `POST {oauth_url}/_fake/{command}` with a JSON body: lets a benchmark or the
sandbox drive a fake that runs in another process. Each command is a small function."""
from __future__ import annotations

import json
from typing import Any, Callable

from fake_bitrix24.http import Resp, json_resp
from fake_bitrix24.state import FakePortal


def _portal(fake, args: dict) -> FakePortal:
    d = args.pop("domain", None)
    m = args.pop("member_id", None)
    p = fake.portals.get(d) if d else fake.portal_by_member(m) if m else None
    if p is None:
        raise KeyError("portal not found")
    return p


def _summary(p: FakePortal) -> dict:
    return {"domain": p.domain, "member_id": p.member_id, "client_endpoint": p.client_endpoint,
            "application_token": p.application_token, "installed": p.installed}


def info(fake, args):
    return {"oauth_url": fake.oauth_url, "portal_base": fake.portal_base,
            "client_id": fake.client_id, "client_secret": fake.client_secret}


def add_portal(fake, args):
    return _summary(fake.add_portal(**args))


def issue_tokens(fake, args):
    return fake.issue_tokens(_portal(fake, args), **args)


def _visible_to_as_set(args: dict) -> dict:
    if args.get("visible_to") is not None:
        args["visible_to"] = set(args["visible_to"])
    return args


def add_task(fake, args):
    p = _portal(fake, args)
    fake.add_task(p, **_visible_to_as_set(args))
    return {"ok": True}


def add_deal(fake, args):
    p = _portal(fake, args)
    fake.add_deal(p, **_visible_to_as_set(args))
    return {"ok": True}


def add_user(fake, args):
    fake.add_user(_portal(fake, args), **args)
    return {"ok": True}


def set_rate_limit(fake, args):
    fake.set_rate_limit(**args)
    return {"ok": True}


def set_latency(fake, args):
    """``{"latency": s}`` everything, ``{"oauth": s}``/``{"portal": s}`` one server, and with
    ``domain`` (or ``member_id``): that portal's REST only, ``{"domain": d, "latency": s}``."""
    if "domain" in args or "member_id" in args:
        _portal(fake, args).latency = float(args.get("latency", 0.0))
        return {"ok": True}
    if "latency" in args:
        fake.latency = float(args["latency"])
    for k in ("oauth", "portal"):
        if k in args:
            fake.latency_for[k] = float(args[k])
    return {"ok": True}


def expire_all(fake, args):
    fake.expire_all(_portal(fake, args))
    return {"ok": True}


def fail_next(fake, args):
    fake.fail_next(args.pop("method_or_path"), **args)
    return {"ok": True}


def counts(fake, args):
    with fake._lock:
        by: dict = {}
        for c in fake.calls:
            if not c.in_batch and args.get("domain") in (None, c.domain) and args.get("server") in (None, c.server):
                by[c.method] = by.get(c.method, 0) + 1
        statuses: dict = {}
        for c in fake.calls:
            if not c.in_batch:
                statuses[str(c.status)] = statuses.get(str(c.status), 0) + 1
    out = {"total": sum(by.values()), "by_method": by, "by_status": statuses}
    if args.get("method"):
        out["count"] = fake.count(args["method"], args.get("server"), args.get("domain"))
    return out


def max_rate(fake, args):
    return {"max_rate": fake.max_rate(args["domain"], float(args.get("window", 1.0)))}


def add_portals(fake, args):
    """Many portals, each with its installer's tokens, in one control call (benchmark seeding)."""
    count = int(args["count"])
    domain_format = args.get("domain_format", "portal-{i}.example.com")
    out = []
    for i in range(count):
        p = fake.add_portal(domain=domain_format.format(i=i))
        out.append({"domain": p.domain, "member_id": p.member_id, "client_endpoint": p.client_endpoint,
                    "application_token": p.application_token,
                    "tokens": fake.issue_tokens(p, user_id=int(args.get("user_id", 1)),
                                                expires_in=int(args.get("expires_in", 3600)))})
    return out


def max_rates(fake, args):
    """Across every portal that was called: the highest `max_rate`, and each portal's average rate
    (requests over the span between its first and last request, at least `window`)."""
    window = float(args.get("window", 1.0))
    with fake._lock:
        by_domain: dict = {}
        for c in fake.calls:
            if c.server == "portal" and not c.in_batch and c.domain:
                by_domain.setdefault(c.domain, []).append(c.ts)
    best, best_domain, best_avg = 0, None, 0.0
    for domain, ts in by_domain.items():
        rate = fake.max_rate(domain, window)
        if rate > best:
            best, best_domain = rate, domain
        best_avg = max(best_avg, len(ts) / max(window, max(ts) - min(ts)))
    return {"max_rate": best, "domain": best_domain, "portals": len(by_domain),
            "max_average_rate": round(best_avg, 3)}


def expire_access_token(fake, args):
    fake.expire_access_token(args["access_token"])
    return {"ok": True}


def set_subscription(fake, args):
    fake.set_subscription(_portal(fake, args), **args)
    return {"ok": True}


def require_payment(fake, args):
    fake.require_payment(_portal(fake, args), **args)
    return {"ok": True}


def pay(fake, args):
    fake.pay(_portal(fake, args), **args)
    return {"ok": True}


def update_app(fake, args):
    return {"application_token": fake.update_app(_portal(fake, args), **args)}


def uninstall(fake, args):
    fake.uninstall(_portal(fake, args))
    return {"ok": True}


def reset_calls(fake, args):
    fake.reset_calls()
    return {"ok": True}


COMMANDS: dict[str, Callable[[Any, dict], Any]] = {
    fn.__name__: fn for fn in (info, add_portal, issue_tokens, add_task, add_deal, add_user, set_rate_limit, set_latency,
                               expire_all, fail_next, counts, max_rate, add_portals, max_rates,
                               expire_access_token, reset_calls, set_subscription, require_payment, pay,
                               update_app, uninstall)
}


def handle(fake, command: str, raw: bytes) -> Resp:
    try:
        args = json.loads(raw or b"{}")
    except ValueError:
        return json_resp(400, {"error": "bad json"})
    fn = COMMANDS.get(command)
    if fn is None:
        return json_resp(404, {"error": f"unknown command {command}"})
    try:
        return json_resp(200, fn(fake, args))
    except (KeyError, TypeError, ValueError) as e:
        return json_resp(400, {"error": str(e)})
