"""Chromium for the browser tests (Playwright, Debian's /usr/bin/chromium): signing in through
the real Keycloak login page, and screenshots under artifacts/screenshots/. The `browser`
fixture itself is in conftest.py, one per test module."""
import os
from pathlib import Path

from django.conf import settings

SHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


def launch():
    """Chromium in this thread, for a module's tests; yields the browser and closes it."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls of these tests
    # are made between browser steps, never concurrently, so Django's async guard is relaxed here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- only browser tests need it

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(browser, live_server, username):
    """A fresh browser session signs in through Keycloak's own login page."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/")
    page.get_by_role("link", name="Sign in with SCP Keycloak").click()
    page.wait_for_url("**/realms/scp/protocol/openid-connect/auth**")
    page.fill("#username", username)
    page.fill("#password", username)
    page.click("#kc-login")
    page.wait_for_url(f"{live_server.url}/admin/**")
    assert page.locator("#logout-form").count() == 1  # signed in to the portal
    return page
