"""GET /portal end to end: the real API under uvicorn on the real MongoDB-wire
server, driven by Debian's chromium through Playwright (no downloaded browser)."""
from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from singleview.serving import Settings, create_app

from .live import serve

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "portal-test-key-0123456789"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def jane() -> dict:
    """A docs/design.md section 4 document: CRM, two orders with items, marketing."""
    def order(order_id, inc, days_ago, status, total, items):
        at = NOW - timedelta(days=days_ago)
        return {"order_id": order_id, "increment_id": inc, "status": status, "state": status,
                "grand_total": total, "currency": "USD", "created_at": at, "updated_at": at,
                "items": [{"item_id": iid, "sku": sku, "name": name, "qty": qty, "price": price,
                           "row_total": row} for iid, sku, name, qty, price, row in items]}
    return {
        "_id": "jane.doe@example.com", "email": "jane.doe@example.com", "name": "Jane Doe",
        "crm_info": {"crm_id": "003A000001", "crm_ids": ["003A000001", "003A000777"],
                     "first_name": "Jane", "last_name": "Doe", "phone": "+1 555 0100",
                     "mailing_address": {"street": "1 Main St", "city": "Springfield", "state": "IL",
                                         "postal_code": "62701", "country": "US"},
                     "last_modified_at": NOW - timedelta(days=2)},
        "order_history": [  # newest first, as the pipeline writes it
            order("1002", "000000124", 3, "processing", "45.00",
                  [("5003", "MUG-BLU", "Blue Mug", "3", "15.00", "45.00")]),
            order("1001", "000000123", 40, "complete", "129.99",
                  [("5001", "TS-RED-M", "Red Tee", "2", "59.99", "119.98"),
                   ("5002", "SOCK-GRY", "Grey Socks <b>x</b>", "1", "10.01", "10.01")]),
        ],
        "marketing_preferences": {
            "hubspot_id": "173595202426", "email_opt_out": True,
            "properties": {"lifecyclestage": "customer", "favourite_colour": "red"},
            "browsing_history": [
                {"url": "https://shop.example/c/shoes/runner", "title": "Runner 2", "category": "shoes",
                 "viewed_at": NOW - timedelta(hours=1)},
                {"url": "https://shop.example/c/hats", "title": "Hats", "category": "hats",
                 "viewed_at": NOW - timedelta(hours=5)}],
            "viewed_categories": [
                {"category": "shoes", "views": 3, "last_viewed_at": NOW - timedelta(hours=1)},
                {"category": "hats", "views": 1, "last_viewed_at": NOW - timedelta(hours=5)}]},
        "stats": {"order_count": 2, "lifetime_value": {"USD": "174.99"},
                  "first_order_at": NOW - timedelta(days=40), "last_order_at": NOW - timedelta(days=3),
                  "last_viewed_at": NOW - timedelta(hours=1)},
        "sources": ["crm", "marketing", "orders"],
        "updated_at": NOW - timedelta(hours=1), "_rev": 7,
        "_meta": {"versions": {"crm:003A000001": [1, 2, 3]}},
    }


@pytest.fixture(scope="session")
def chromium() -> str:
    """The project installs chromium with its own script; a failure fails loudly."""
    proc = subprocess.run([str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True)
    if proc.returncode != 0 or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"scripts/chromium.sh could not provide {CHROMIUM} (exit {proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)
    return CHROMIUM


@pytest.fixture
def server(mongo_uri, database):
    database["customer_sv"].insert_one(jane())
    with serve(create_app(Settings(mongo_uri=mongo_uri, database=database.name, api_keys=(KEY,)))) as base:
        yield base


@pytest.fixture
def page(chromium):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            pg = context.new_page()
            pg.set_default_timeout(15000)
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                  and "status of 40" not in msg.text else None)
            yield pg
            assert errors == [], f"errors in the page: {errors}"
        finally:
            browser.close()


def test_portal_looks_a_customer_up_by_email(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/portal")
    expect(page).to_have_title("singleview · support portal")

    # Without a key: a readable 401 message, no result.
    page.fill("#email", "jane.doe@example.com")
    page.click("#search")
    expect(page.locator("#status")).to_have_attribute("data-state", "error")
    expect(page.locator("#status")).to_contain_text("API key missing")
    expect(page.locator("#result")).to_be_hidden()

    # A wrong key: 403, said so.
    page.fill("#api-key", "not-the-key")
    page.click("#key-save")
    expect(page.locator("#status")).to_contain_text("API key not accepted")

    # The right key, kept in sessionStorage; the search re-runs, email case-insensitive.
    page.fill("#api-key", KEY)
    page.click("#key-save")
    assert page.evaluate("sessionStorage.getItem('singleview.apiKey')") == KEY
    page.fill("#email", "  Jane.Doe@Example.COM ")
    page.click("#search")
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#status")).to_be_hidden()

    # Orders, newest first, with their items and totals.
    orders = page.locator("#orders article.order")
    expect(orders).to_have_count(2)
    assert [orders.nth(i).get_attribute("data-order-id") for i in range(2)] == ["1002", "1001"]
    expect(orders.nth(0)).to_contain_text("processing")
    expect(orders.nth(0)).to_contain_text("45.00 USD")
    expect(orders.nth(1).locator("[data-testid=sku]")).to_have_text(["TS-RED-M", "SOCK-GRY"])
    expect(orders.nth(1)).to_contain_text("129.99 USD")
    expect(orders.nth(1)).to_contain_text("Grey Socks <b>x</b>")  # text, not markup
    expect(page.locator("#orders-summary")).to_contain_text("174.99 USD")

    # Profile, marketing, categories, page views.
    profile = page.locator("#profile")
    for text in ("Jane Doe", "jane.doe@example.com", "+1 555 0100", "1 Main St, 62701 Springfield, IL, US",
                 "003A000001", "003A000777"):
        expect(profile).to_contain_text(text)
    expect(page.locator("#marketing")).to_contain_text("Opted out of email")
    expect(page.locator("#marketing")).to_contain_text("173595202426")
    expect(page.locator("#marketing-properties")).to_contain_text("favourite_colour")
    expect(page.locator("#categories tbody tr").first).to_contain_text("shoes")
    expect(page.locator("#pageviews tbody tr")).to_have_count(2)
    expect(page.locator("#pageviews tbody tr").first).to_contain_text("Runner 2")
    assert "_meta" not in page.content()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "portal.png"), full_page=True)

    # Not found: its own state, the previous customer gone.
    page.fill("#email", "nobody@example.com")
    page.click("#search")
    expect(page.locator("#status")).to_have_attribute("data-state", "not-found")
    expect(page.locator("#status")).to_contain_text("No customer found with email nobody@example.com")
    expect(page.locator("#result")).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "portal-not-found.png"))

    # The key survives a reload of the tab.
    page.reload()
    expect(page.locator("#key-state")).to_contain_text("key set")


def test_portal_is_served_without_a_key_with_a_strict_csp(mongo_uri, database):
    app = create_app(Settings(mongo_uri=mongo_uri, database=database.name, api_keys=(KEY,)))
    with TestClient(app) as client:
        r = client.get("/portal")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert '<script src="/portal/portal.js"' in r.text
        js = client.get("/portal/portal.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in js.text.replace("never innerHTML", "")
        assert client.get("/portal/portal.css").status_code == 200
        missing = client.get("/portal/secrets.txt")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        assert client.get("/customers-sv/jane.doe@example.com").status_code == 401
        assert "/portal" not in client.get("/openapi.json").json()["paths"]
