"""`python -m fake_bitrix24`: serve until killed, printing the URLs as one JSON line so a parent
process can read them."""
from __future__ import annotations

import argparse
import json
import signal
import threading

from fake_bitrix24.server import FakeBitrix24
from fake_bitrix24.state import DEFAULT_CLIENT_ID


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fake Bitrix24 OAuth server + portal REST on 127.0.0.1")
    ap.add_argument("--oauth-port", type=int, default=0)
    ap.add_argument("--portal-port", type=int, default=0)
    ap.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    ap.add_argument("--client-secret", default=None)
    ap.add_argument("--no-rate-limit", action="store_true")
    a = ap.parse_args(argv)
    fake = FakeBitrix24(a.client_id, a.client_secret, a.oauth_port, a.portal_port).start()
    if a.no_rate_limit:
        fake.set_rate_limit(None)
    print(json.dumps({"oauth_url": fake.oauth_url, "portal_base": fake.portal_base,
                      "client_id": fake.client_id, "client_secret": fake.client_secret}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    fake.stop()


if __name__ == "__main__":
    main()
