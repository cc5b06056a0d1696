"""A real browser (headless Chromium, driven by Playwright) signs in through Kinto.

Three sites, as in production: the web app (``app.test``, the demo page of
:mod:`kinto_fxa.testing.devserver` served by a small static server), Kinto (``kinto.test``, a real
``kinto start``) and the local FxA server (``accounts.test``). The browser goes
app → Kinto's login → FxA's sign-in page (filled in and submitted) → Kinto's token endpoint
→ the app, with the token in the fragment; the app calls Kinto with
``Authorization: Bearer`` (CORS) and shows the user. The traffic of the browser context is
recorded and checked: where the token goes, the state cookie, the replay of the callback in
another browser.

Skipped, with a banner at the end of the run, without Chromium; failed instead when
``KINTO_FXA_REQUIRE_CHROMIUM`` is set (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from kinto_fxa.testing.devserver import demo_page
from kinto_fxa.testing.fxa_server import LocalFxAServer
from kinto_fxa.views.relier import STATE_COOKIE
from tests.browser_helpers import (
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    Exchange,
    StaticSite,
    Traffic,
    describe,
    resolving_test_hosts,
    wait_for,
)
from tests.conftest import kinto_settings, require_chromium
from tests.helpers import KintoProcess, free_port
from tests.test_devserver import running_dev_server


LOGIN_PATH = "/v1/fxa-oauth/login"
TOKEN_PATH = "/v1/fxa-oauth/token"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def new_context(browser: Any) -> Any:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


def expect(locator: Any) -> Any:
    """Playwright's ``expect``, waiting up to TIMEOUT_MS (its default is 5 s)."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=TIMEOUT_MS)
    return playwright_expect(locator)


@dataclass
class Sites:
    app: StaticSite
    kinto: str  # http://kinto.test:PORT
    accounts: str  # http://accounts.test:PORT
    process: KintoProcess


@pytest.fixture(scope="module")
def sites(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, fxa_server_session: LocalFxAServer
) -> Iterator[Sites]:
    """The app, Kinto and FxA on three sites (every one listening on 127.0.0.1)."""
    workdir = tmp_path_factory.mktemp("browser")
    kinto_port = free_port()
    kinto = f"http://kinto.test:{kinto_port}"
    accounts = f"http://accounts.test:{fxa_server_session.port}"
    with StaticSite("app.test", demo_page(kinto)) as app:
        settings = kinto_settings(
            accounts + "/v1",
            **{
                "fxa-oauth.redirect_uri": kinto + TOKEN_PATH,
                "fxa-oauth.webapp.authorized_domains": urlsplit(app.url).netloc,
            },
        )
        with resolving_test_hosts(workdir / "hosts"):
            process = KintoProcess(workdir, settings, port=kinto_port)
        try:
            yield Sites(app, kinto, accounts, process)
        finally:
            process.stop()


def new_email() -> str:
    return f"user-{secrets.token_hex(6)}@example.com"


def start_sign_in(page: Any, app_url: str, accounts: str, email: str) -> None:
    """From the app page to FxA's sign-in page, email filled in (not submitted)."""
    page.goto(app_url + "/")
    page.click("#sign-in")
    page.wait_for_url(lambda url: url.startswith(accounts + "/v1/authorization?"))
    page.fill("input[name=email]", email)


def sign_in(page: Any, app_url: str, accounts: str, email: str) -> None:
    start_sign_in(page, app_url, accounts, email)
    page.click("button[type=submit]")
    expect(page.locator("#user")).to_have_text("fxa:" + LocalFxAServer.uid_for(email))


def only(exchanges: list[Exchange], method: str, url_prefix: str) -> Exchange:
    found = [e for e in exchanges if e.method == method and e.url.startswith(url_prefix)]
    assert len(found) == 1, [e.url for e in found]
    return found[0]


def documents_after(exchanges: list[Exchange], exchange: Exchange) -> list[Exchange]:
    later = exchanges[exchanges.index(exchange) + 1 :]
    return [e for e in later if e.resource_type == "document"]


def is_expired(set_cookie: dict[str, str]) -> bool:
    if set_cookie.get("max-age") == "0":
        return True
    expires = set_cookie.get("expires")
    return expires is not None and parsedate_to_datetime(expires).timestamp() < time.time()


def test_round_trip_across_three_sites(sites: Sites, browser: Any) -> None:
    email = new_email()
    app, kinto, accounts = sites.app.url, sites.kinto, sites.accounts
    context = new_context(browser)
    traffic = Traffic(context)
    page = context.new_page()

    sign_in(page, app, accounts, email)
    # The app removed the token from the address bar as soon as it read it.
    assert page.url == app + "/"
    page.fill("#text", "written from app.test")
    page.click("#add button")
    expect(page.locator("#records li")).to_have_text(["written from app.test"])

    exchanges = traffic.exchanges()
    login = only(exchanges, "GET", kinto + LOGIN_PATH + "?")
    authorization = only(exchanges, "GET", accounts + "/v1/authorization?")
    signed_in = only(exchanges, "POST", accounts + "/v1/authorization")
    callback = only(exchanges, "GET", kinto + TOKEN_PATH + "?")
    token = callback.response_headers["location"].partition("#")[2]
    state, code = callback.query["state"], callback.query["code"]
    print(describe(exchanges, {"token": token, "code": code, "state": state}))

    # The navigations, across the three sites, in order (the fragment never goes on the
    # wire: the app's server gets "/" twice).
    documents = [
        (e.method, e.host, e.path, e.status) for e in exchanges if e.resource_type == "document"
    ]
    host = {
        site: urlsplit(url).netloc
        for site, url in (("app", app), ("kinto", kinto), ("fxa", accounts))
    }
    assert documents == [
        ("GET", host["app"], "/", 200),
        ("GET", host["kinto"], LOGIN_PATH, 302),
        ("GET", host["fxa"], "/v1/authorization", 200),
        ("POST", host["fxa"], "/v1/authorization", 302),
        ("GET", host["kinto"], TOKEN_PATH, 302),
        ("GET", host["app"], "/", 200),
    ]
    assert login.query["redirect"] == app + "/#"
    assert authorization.query["state"] == state
    assert signed_in.response_headers["location"] == callback.url
    assert callback.response_headers["location"] == app + "/#" + token
    # The response carrying the token is neither cached nor a Referer source.
    assert "no-store" in callback.response_headers["cache-control"]
    assert callback.response_headers["referrer-policy"] == "no-referrer"
    assert "referer" not in documents_after(exchanges, callback)[0].headers

    # The state cookie: set by the login on the Kinto site for the token endpoint only,
    # sent back by the browser on the callback (a cross-site navigation: SameSite=Lax),
    # deleted by it.
    issued = login.set_cookie(STATE_COOKIE)
    assert issued is not None, login.set_cookies
    assert issued["path"] == TOKEN_PATH
    assert issued["samesite"].lower() == "lax"
    assert "httponly" in issued
    assert int(issued["max-age"]) > 0
    assert callback.cookie(STATE_COOKIE) == issued["value"]
    deleted = callback.set_cookie(STATE_COOKIE)
    assert deleted is not None, callback.set_cookies
    assert deleted["value"] in ("", '""')
    assert deleted["path"] == TOKEN_PATH
    assert is_expired(deleted)
    assert [e.url for e in exchanges if e.cookie(STATE_COOKIE) is not None] == [callback.url]
    assert STATE_COOKIE not in {c["name"] for c in context.cookies()}

    # The token: never in a path, a query or a Referer; the app's server never saw it.
    assert len(token) > 100  # A JWT.
    for e in exchanges:
        parts = urlsplit(e.url)
        assert token not in parts.path + "?" + parts.query, e.url
        assert token not in e.headers.get("referer", ""), e.url
    assert sites.app.request_lines, "the app's server served the page"
    assert not [line for line in sites.app.request_lines if token in line]
    # The code only went to Kinto's token endpoint.
    assert [e.url for e in exchanges if code in e.url] == [callback.url]

    # The app's calls to Kinto: cross-origin, with the bearer token, allowed by CORS.
    api_calls = [e for e in exchanges if e.host == host["kinto"] and e.resource_type == "fetch"]
    assert {(e.method, e.path) for e in api_calls} >= {
        ("GET", "/v1/"),
        ("POST", "/v1/buckets/default/collections/demo/records"),
        ("GET", "/v1/buckets/default/collections/demo/records"),
    }
    for e in api_calls:
        assert e.headers["authorization"] == f"Bearer {token}"
        assert e.headers["origin"] == app
        assert e.response_headers["access-control-allow-origin"] in (app, "*")
        assert 200 <= (e.status or 0) < 300, e.url
    context.close()


def test_callback_replayed_in_another_browser_gets_401(sites: Sites, browser: Any) -> None:
    email = new_email()
    app, kinto, accounts = sites.app.url, sites.kinto, sites.accounts
    context_a, context_b = new_context(browser), new_context(browser)
    page_a, page_b = context_a.new_page(), context_b.new_page()

    # A signs in. Playwright does not route the requests that follow a redirect, so FxA's
    # answer to the sign-in form (a 302 to Kinto's callback) is held instead: the browser
    # has not gone to the callback yet when B replays it.
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)  # Neither continued nor fulfilled yet: the browser waits.

    page_a.route(
        lambda url: url.startswith(accounts + "/v1/authorization"),
        lambda route: route.continue_() if route.request.method == "GET" else hold(route),
    )
    start_sign_in(page_a, app, accounts, email)
    page_a.click("button[type=submit]", no_wait_after=True)
    route = wait_for(page_a, lambda: held and held[0], "context A's sign-in form")
    # What FxA answers A's browser. (Playwright, not Chromium, sends this one: it does not
    # know the browser's *.test rule.)
    direct = urlsplit(route.request.url)._replace(netloc=f"127.0.0.1:{urlsplit(accounts).port}")
    fxa_answer = route.fetch(url=direct.geturl(), max_redirects=0)
    assert fxa_answer.status == 302
    callback_url = fxa_answer.headers["location"]
    assert callback_url.startswith(kinto + TOKEN_PATH + "?code=")

    # The same URL in another browser (no state cookie): 401; the state is not consumed.
    replay = page_b.goto(callback_url)
    assert replay is not None and replay.status == 401
    assert "not started in this browser" in json.loads(replay.text())["message"]
    assert page_b.evaluate("location.hash") == ""
    # Nor with B's own state cookie (B started a login of its own): 401 again.
    page_b.goto(f"{kinto}{LOGIN_PATH}?redirect={quote(app + '/#', safe='')}")
    assert STATE_COOKIE in {c["name"] for c in context_b.cookies()}
    replay = page_b.goto(callback_url)
    assert replay is not None and replay.status == 401

    # A carries on and signs in.
    route.fulfill(response=fxa_answer)  # A's browser follows the 302 to the callback.
    expect(page_a.locator("#user")).to_have_text("fxa:" + LocalFxAServer.uid_for(email))
    assert page_b.locator("#user").count() == 0

    # The state is used now: 408, cookie or not, in either browser.
    for page in (page_b, page_a):
        again = page.goto(callback_url)
        assert again is not None and again.status == 408, page
        assert "sign in again" in json.loads(again.text())["message"]

    # A second sign-in, in a fresh browser, works (same person: same default bucket).
    page_a.goto(app + "/")
    page_a.fill("#text", "from A")
    page_a.click("#add button")
    expect(page_a.locator("#records li")).to_have_text(["from A"])
    context_c = new_context(browser)
    page_c = context_c.new_page()
    sign_in(page_c, app, accounts, email)
    expect(page_c.locator("#records li")).to_have_text(["from A"])
    for context in (context_a, context_b, context_c):
        context.close()


def test_the_demo_page_of_the_dev_server(browser: Any, tmp_path: Path) -> None:
    """``make serve``'s page at /demo/: sign in, the user, records, sign out."""
    email = new_email()
    with (
        resolving_test_hosts(tmp_path / "hosts"),
        running_dev_server(tmp_path, "kinto.test", "accounts.test") as (kinto, accounts, _),
    ):
        context = new_context(browser)
        traffic = Traffic(context)
        page = context.new_page()
        demo = kinto + "/demo/"
        page.goto(demo)
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#signed-in")).to_be_hidden()

        sign_in(page, kinto + "/demo", accounts, email)
        assert page.url == demo  # No token in the address bar.
        token = page.evaluate("sessionStorage.getItem('token')")
        assert token and token.count(".") == 2

        for text in ("first", "<b>second</b>"):
            page.fill("#text", text)
            page.click("#add button")
            expect(page.locator("#records li").last).to_have_text(text)
        expect(page.locator("#records li")).to_have_text(["first", "<b>second</b>"])
        assert page.locator("#records b").count() == 0  # Shown as text, not HTML.

        # A reload keeps the session (sessionStorage); the records are in Kinto.
        page.reload()
        expect(page.locator("#user")).to_have_text("fxa:" + LocalFxAServer.uid_for(email))
        expect(page.locator("#records li")).to_have_text(["first", "<b>second</b>"])

        # Sign out forgets the token.
        page.click("#sign-out")
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#signed-in")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('token')") is None
        page.reload()
        expect(page.locator("#sign-in")).to_be_visible()

        # A token Kinto refuses (expired, revoked...) is forgotten: sign in again.
        page.evaluate("sessionStorage.setItem('token', 'refused')")
        page.reload()
        expect(page.locator("#sign-in")).to_be_visible()
        wait_for(
            page,
            lambda: page.evaluate("sessionStorage.getItem('token')") is None,
            "the refused token to be forgotten",
        )

        # Signing in again finds the records.
        sign_in(page, kinto + "/demo", accounts, email)
        expect(page.locator("#records li")).to_have_text(["first", "<b>second</b>"])

        exchanges = traffic.exchanges()
        for e in exchanges:
            parts = urlsplit(e.url)
            assert token not in parts.path + "?" + parts.query, e.url
            assert token not in e.headers.get("referer", ""), e.url
        records_posts = [
            e for e in exchanges if e.method == "POST" and e.path.endswith("/records")
        ]
        assert [e.status for e in records_posts] == [201, 201]
        context.close()


def test_without_chromium_the_browser_tests_skip_with_a_banner() -> None:
    env = {**os.environ, "KINTO_FXA_CHROMIUM": "/nonexistent/chromium"}
    env.pop("KINTO_FXA_REQUIRE_CHROMIUM", None)
    test = f"{__file__}::test_round_trip_across_three_sites"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", test],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    banner = result.stdout.split("BROWSER TESTS SKIPPED", 1)
    assert len(banner) == 2, result.stdout
    assert "Chromium not found at /nonexistent/chromium" in banner[1]


def test_without_chromium_the_browser_tests_fail_when_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import conftest

    monkeypatch.setattr(conftest, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(conftest, "REQUIRE_CHROMIUM", True)
    monkeypatch.setattr(conftest, "_chromium_skip_reason", [])
    with pytest.raises(pytest.fail.Exception, match="KINTO_FXA_REQUIRE_CHROMIUM is set"):
        conftest.require_chromium()
    assert conftest._chromium_skip_reason == []  # No "skipped" banner either.

    monkeypatch.setattr(conftest, "REQUIRE_CHROMIUM", False)
    with pytest.raises(pytest.skip.Exception, match="Chromium not found"):
        conftest.require_chromium()
    assert len(conftest._chromium_skip_reason) == 1
