"""The deal tab in real headless Chromium, framed cross-origin the way a Bitrix24 deal card frames
it: the page shows the deal, and Reload brings what changed in Bitrix24 since it opened."""
from __future__ import annotations

import html
from urllib.parse import urlencode

import pytest

from portals.models import Portal
from tests.test_placements_deal import DEAL_ID, deal_tab_setup
from tests.browser_host import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HostPage

pytestmark = [pytest.mark.browser]

DEAL_CARD = """<!doctype html>
<html><head><meta charset="utf-8"><title>Deal card</title>
<style>
  body {{ margin: 0; background: #eef2f4; font: 13px "Helvetica Neue", Arial, sans-serif; color: #333; }}
  header {{ padding: 14px 20px; background: #fff; border-bottom: 1px solid #e6e9ec; font-size: 18px; }}
  .tabs {{ margin: 16px 20px 0; display: flex; gap: 18px; color: #80868e; }}
  .tabs b {{ color: #333; border-bottom: 2px solid #2fc6f6; padding-bottom: 6px; }}
  .card {{ margin: 8px 20px; width: 420px; background: #fff; border-radius: 4px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
  iframe {{ display: block; width: 100%; height: 220px; border: 0; }}
</style></head>
<body>
<header>Deal #{deal_id} &mdash; host page on {origin}</header>
<div class="tabs"><span>General</span><span>Products</span><b>Our app</b></div>
<div class="card"><iframe name="b24frame" title="deal tab"></iframe></div>
<form method="post" action="{action}" target="b24frame">{fields}</form>
<script>document.forms[0].submit();</script>
</body></html>
"""


def deal_card_html(*, origin: str, action: str, fields: dict) -> bytes:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    return DEAL_CARD.format(deal_id=DEAL_ID, origin=origin, action=html.escape(action), fields=inputs).encode()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian's 'chromium' package)")
@pytest.mark.parametrize("lang", ["en", "de"])
def test_deal_tab_in_a_cross_origin_iframe_shows_the_deal_and_reloads(
    live_server, fake_b24, client, settings, transactional_db, lang
):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    settings.ALLOWED_HOSTS = ["*"]
    tab = deal_tab_setup(fake_b24, client, settings)

    with HostPage(fake_portal_base=fake_b24.portal_base) as host:
        Portal.objects.filter(pk=tab.portal.pk).update(
            client_endpoint=f"{host.origin}/{tab.fake_portal.domain}/rest/"
        )
        query, body = tab.payload(lang=lang)
        host.page = deal_card_html(
            origin=host.origin, action=f"{live_server.url}/placements/handler/?{urlencode(query)}", fields=body
        )
        fake_b24.reset_calls()
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 480, "height": 320}, device_scale_factor=2)
                page.route("**/api.bitrix24.com/**", lambda route: route.abort())
                page.goto(host.origin + "/")
                frame = page.frame_locator("iframe[name=b24frame]")
                frame.get_by_text("New Deal #1").wait_for(state="visible", timeout=15000)
                assert fake_b24.count("batch") == 1
                root = frame.locator("#b24-widget")
                assert root.get_attribute("data-state") == "ok"
                stage = frame.locator("[data-field=stage]")
                amount = frame.locator("[data-field=amount]").inner_text()
                assert amount == ("1,000,000.00 EUR" if lang == "en" else "1.000.000,00 EUR")
                assert "Ivan Sidorov" in root.inner_text()
                page.screenshot(path=str(ARTIFACTS / f"deal-tab-{lang}.png"))

                tab.fake_portal.deals[DEAL_ID].stage_id = "WON"
                tab.fake_portal.deals[DEAL_ID].opportunity = "1250000.50"
                frame.locator("[data-action=reload]").click()
                frame.locator('[data-field=stage][data-semantic="won"]').wait_for(timeout=15000)
                assert stage.text_content() == "Deal won"  # (the badge's CSS upper-cases it)
                assert frame.locator("[data-field=amount]").inner_text().startswith(
                    "1,250,000.50" if lang == "en" else "1.250.000,50"
                )
                page.screenshot(path=str(ARTIFACTS / f"deal-tab-{lang}-reloaded.png"))
            finally:
                browser.close()
