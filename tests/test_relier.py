"""The relier endpoints (login, token) and the params endpoint, against the local FxA server.

A browser is played by webtest (it keeps cookies) for Kinto, and by ``requests`` for the
local FxA sign-in page: login → FxA sign-in page → token endpoint → the web app URL.
"""

import base64
import hashlib
import logging
import secrets
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
import requests
import webtest
from fxa.oauth import Client as OAuthClient

from kinto_fxa.fxa_api import PRODUCTION_OAUTH_URI
from kinto_fxa.views.relier import REDACTED, STATE_CACHE_PREFIX, STATE_COOKIE
from tests.conftest import backend_settings, kinto_settings
from tests.helpers import free_port


KINTO_HOST = "http://localhost"
TOKEN_URL = KINTO_HOST + "/v1/fxa-oauth/token"
LOGIN_PATH = "/v1/fxa-oauth/login"
TOKEN_PATH = "/v1/fxa-oauth/token"
APP_URL = "https://app.example.com/#"
CLIENT_ID = "relier-client"
CLIENT_SECRET = "relier-secret"
PUBLIC_ID = "relier-public"
NOTES = "https://identity.mozilla.com/apps/notes"
ALICE = "alice@example.com"


# --- Helpers ---------------------------------------------------------------------------


def relier_settings(oauth_uri: str | None, **extra: Any) -> dict[str, Any]:
    """A Kinto with a confidential default client and a public ``notes`` client."""
    return kinto_settings(
        oauth_uri,
        **{
            "fxa-oauth.client_id": CLIENT_ID,
            "fxa-oauth.client_secret": CLIENT_SECRET,
            "fxa-oauth.redirect_uri": TOKEN_URL,
            "fxa-oauth.webapp.authorized_domains": "app.example.com localhost:3000",
            "fxa-oauth.clients.notes.client_id": PUBLIC_ID,
            "fxa-oauth.clients.notes.required_scope": NOTES,
            "fxa-oauth.clients.notes.redirect_uri": TOKEN_URL,
            # Tokens of the top-level client are accepted next to ``notes``'.
            "fxa-oauth.accept_top_level_tokens": "true",
            **extra,
        },
    )


class SignInForm(HTMLParser):
    """The form of the local FxA sign-in page: its action and inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = attributes.get("action")
        elif tag == "input" and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value", "")


def login(app: webtest.TestApp, redirect: str = APP_URL, **params: str) -> dict[str, str]:
    """Start a login: the parameters of the FxA authorization URL Kinto redirects to."""
    response = app.get(LOGIN_PATH, params={"redirect": redirect, **params}, status=302)
    return dict(parse_qsl(urlsplit(response.headers["Location"]).query))


def sign_in(app: webtest.TestApp, email: str = ALICE, **params: str) -> str:
    """Login, then sign in on the FxA page as a browser would: the callback URL FxA gives."""
    response = app.get(LOGIN_PATH, params={"redirect": APP_URL, **params}, status=302)
    page = requests.get(response.headers["Location"], timeout=10)
    assert page.status_code == 200, page.text
    form = SignInForm()
    form.feed(page.text)
    assert form.action
    answer = requests.post(
        urljoin(page.url, form.action),
        data={**form.fields, "email": email},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def local_path(url: str) -> str:
    """The path and query of a URL of the Kinto under test (webtest wants no host)."""
    assert url.startswith(KINTO_HOST + "/"), url
    return url[len(KINTO_HOST) :]


def callback_params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def finish(app: webtest.TestApp, callback: str, status: int = 302) -> webtest.TestResponse:
    return app.get(local_path(callback), status=status)


def token_of(response: webtest.TestResponse, redirect: str = APP_URL) -> str:
    location = response.headers["Location"]
    assert location.startswith(redirect)
    return str(location[len(redirect) :])


def whoami(app: webtest.TestApp, token: str) -> dict[str, Any]:
    response = app.get("/v1/", headers={"Authorization": f"Bearer {token}"})
    return dict(response.json["user"])


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cookie_value(app: webtest.TestApp) -> str:
    return str(app.cookies[STATE_COOKIE])


def set_cookie_header(response: webtest.TestResponse) -> dict[str, str]:
    """The attributes of the state cookie set by ``response`` (lowercase names)."""
    (header,) = [h for h in response.headers.getall("Set-Cookie") if h.startswith(STATE_COOKIE)]
    name_value, *attributes = [part.strip() for part in header.split(";")]
    parsed = {"value": name_value.partition("=")[2]}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        parsed[key.lower()] = value
    return parsed


def error_names(response: webtest.TestResponse) -> list[str]:
    return [detail["name"] for detail in response.json.get("details", [])]


class CacheSpy:
    """Kinto's cache, recording the calls made to it."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.calls: list[tuple[str, str]] = []
        self.delete_returns_none = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.cache, name)
        if name not in ("get", "set", "delete", "expire", "ttl"):
            return method

        def recorded(key: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, key))
            if name == "delete" and self.delete_returns_none:
                method(key)
                return None
            return method(key, *args, **kwargs)

        return recorded


# --- Fixtures --------------------------------------------------------------------------


@pytest.fixture
def relier_clients(fxa_server: Any) -> Any:
    """FxA clients whose registered redirect_uri is the token endpoint under test."""
    fxa_server.register_client(CLIENT_ID, CLIENT_SECRET, TOKEN_URL)
    fxa_server.register_client(PUBLIC_ID, None, TOKEN_URL)
    return fxa_server


@pytest.fixture
def make_relier(
    make_app: Callable[..., webtest.TestApp], relier_clients: Any
) -> Callable[..., webtest.TestApp]:
    def factory(**extra: Any) -> webtest.TestApp:
        return make_app(relier_settings(relier_clients.oauth_uri, **extra))

    return factory


@pytest.fixture
def app(make_relier: Callable[..., webtest.TestApp], backend: dict[str, str]) -> webtest.TestApp:
    """A relier Kinto on the memory and on the PostgreSQL backends."""
    return make_relier(**backend)


@pytest.fixture
def memory_app(make_relier: Callable[..., webtest.TestApp]) -> webtest.TestApp:
    return make_relier()


# --- Login -----------------------------------------------------------------------------


class TestLogin:
    def test_redirects_to_the_fxa_authorization_page(self, app: webtest.TestApp, fxa_server):
        response = app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        location = response.headers["Location"]
        assert location.startswith(fxa_server.oauth_uri + "/authorization?")
        params = dict(parse_qsl(urlsplit(location).query))
        assert params == {
            "client_id": CLIENT_ID,
            "state": params["state"],
            "scope": "profile",
            "action": "signin",
            "redirect_uri": TOKEN_URL,
            "code_challenge": params["code_challenge"],
            "code_challenge_method": "S256",
        }
        assert response.headers["Cache-Control"] == "no-store"
        assert response.body == b""

    def test_state_is_unguessable_and_stored_with_redirect_and_pkce_verifier(
        self, app: webtest.TestApp
    ):
        params = login(app)
        state = params["state"]
        assert len(base64.urlsafe_b64decode(state + "==")) >= 16  # At least 128 bits.
        key = STATE_CACHE_PREFIX + state
        stored = app.app.registry.cache.get(key)
        assert stored == {
            "redirect": APP_URL,
            "client": "default",
            "code_verifier": stored["code_verifier"],
            "binding": hashlib.sha256(cookie_value(app).encode()).hexdigest(),
        }
        assert s256(stored["code_verifier"]) == params["code_challenge"]
        assert 0 < app.app.registry.cache.ttl(key) <= 3600

    def test_states_and_cookies_are_never_reused(self, memory_app: webtest.TestApp):
        states, cookies = set(), set()
        for _ in range(5):
            states.add(login(memory_app)["state"])
            cookies.add(cookie_value(memory_app))
        assert len(states) == len(cookies) == 5

    def test_state_is_bound_to_the_browser_by_a_cookie(self, memory_app: webtest.TestApp):
        response = memory_app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        cookie = set_cookie_header(response)
        assert cookie["value"] == cookie_value(memory_app)
        assert "httponly" in cookie
        assert cookie["samesite"].lower() == "lax"
        assert cookie["path"] == TOKEN_PATH
        assert cookie["max-age"] == "3600"
        assert "secure" not in cookie  # Plain http.

    def test_cookie_is_secure_on_https(self, make_relier):
        app = make_relier(http_scheme="https")
        response = app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        assert "secure" in set_cookie_header(response)

    def test_state_ttl_setting(self, make_relier):
        app = make_relier(**{"fxa-oauth.state.ttl_seconds": "120"})
        response = app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        assert set_cookie_header(response)["max-age"] == "120"
        state = dict(parse_qsl(urlsplit(response.headers["Location"]).query))["state"]
        assert 0 < app.app.registry.cache.ttl(STATE_CACHE_PREFIX + state) <= 120

    def test_requested_scopes_are_plus_separated(self, make_relier):
        app = make_relier(**{"fxa-oauth.requested_scope": f"profile {NOTES}"})
        response = app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        query = urlsplit(response.headers["Location"]).query
        assert "scope=profile+https%3A%2F%2Fidentity.mozilla.com%2Fapps%2Fnotes&" in query

    def test_client_selects_a_configured_client(self, memory_app: webtest.TestApp):
        params = login(memory_app, client="notes")
        assert params["client_id"] == PUBLIC_ID
        assert params["scope"] == NOTES
        stored = memory_app.app.registry.cache.get(STATE_CACHE_PREFIX + params["state"])
        assert stored["client"] == "notes"

    def test_default_client_can_be_named(self, memory_app: webtest.TestApp):
        assert login(memory_app, client="default")["client_id"] == CLIENT_ID

    @pytest.mark.parametrize("client", ["unknown", "no/pe", "a" * 65, "notes\n"])
    def test_unknown_clients_are_refused(self, memory_app: webtest.TestApp, client: str):
        response = memory_app.get(
            LOGIN_PATH, params={"redirect": APP_URL, "client": client}, status=400
        )
        assert error_names(response) == ["client"]
        assert response.json["errno"] == 107

    @pytest.mark.parametrize("action", ["signin", "signup", "email"])
    def test_action_is_passed_through(self, memory_app: webtest.TestApp, action: str):
        params = login(memory_app, action=action)
        assert params["action"] == action
        assert "email" not in params

    def test_force_auth_passes_the_email(self, memory_app: webtest.TestApp):
        params = login(memory_app, action="force_auth", email="bob@example.com")
        assert params["action"] == "force_auth"
        assert params["email"] == "bob@example.com"

    def test_email_hint_is_passed_through(self, memory_app: webtest.TestApp):
        params = login(memory_app, email="bob@example.com")
        assert (params["action"], params["email"]) == ("signin", "bob@example.com")

    def test_force_auth_requires_an_email(self, memory_app: webtest.TestApp):
        response = memory_app.get(
            LOGIN_PATH, params={"redirect": APP_URL, "action": "force_auth"}, status=400
        )
        assert error_names(response) == ["email"]

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("action", "delete"),
            ("action", "signin\x00"),
            ("email", "not-an-email"),
            ("email", "bob@example.com\n"),
            ("email", "a" * 250 + "@example.com"),
        ],
    )
    def test_invalid_optional_parameters_are_refused(
        self, memory_app: webtest.TestApp, name: str, value: str
    ):
        response = memory_app.get(
            LOGIN_PATH, params={"redirect": APP_URL, name: value}, status=400
        )
        assert error_names(response) == [name]

    def test_redirect_is_required(self, memory_app: webtest.TestApp):
        response = memory_app.get(LOGIN_PATH, status=400)
        assert error_names(response) == ["redirect"]
        assert "redirect" in response.json["message"]

    def test_a_repeated_redirect_is_refused(self, memory_app: webtest.TestApp):
        response = memory_app.get(
            f"{LOGIN_PATH}?redirect=https://app.example.com/%23&redirect=https://evil.com/%23",
            status=400,
        )
        assert error_names(response) == ["redirect"]

    def test_an_unauthorized_redirect_is_refused_and_nothing_stored(
        self, memory_app: webtest.TestApp
    ):
        spy = CacheSpy(memory_app.app.registry.cache)
        memory_app.app.registry.cache = spy
        response = memory_app.get(
            LOGIN_PATH, params={"redirect": "https://evil.com/#"}, status=400
        )
        assert error_names(response) == ["redirect"]
        assert "not an authorized domain" in response.json["message"]
        assert spy.calls == []
        assert "Set-Cookie" not in response.headers

    def test_an_empty_list_of_domains_authorizes_nothing(self, make_relier):
        app = make_relier(**{"fxa-oauth.webapp.authorized_domains": ""})
        response = app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=400)
        assert error_names(response) == ["redirect"]

    def test_redirect_uri_is_omitted_when_not_configured(self, make_relier):
        app = make_relier(**{"fxa-oauth.redirect_uri": ""})
        assert "redirect_uri" not in login(app)

    def test_production_fxa_when_no_oauth_uri(self, make_app):
        app = make_app(relier_settings(None))
        response = app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        assert response.headers["Location"].startswith(PRODUCTION_OAUTH_URI + "/authorization?")

    def test_login_without_client_id_is_unavailable(self, make_relier, caplog):
        app = make_relier(**{"fxa-oauth.client_id": ""})
        with caplog.at_level(logging.ERROR, logger="kinto_fxa.views.relier"):
            response = app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=503)
        assert response.json["errno"] == 201
        assert "not configured" in response.json["message"]
        assert "no client_id configured" in caplog.text


# --- Token -----------------------------------------------------------------------------


class TestRoundTrip:
    def test_login_sign_in_token_and_the_token_authenticates(
        self, app: webtest.TestApp, fxa_server
    ):
        callback = sign_in(app)
        state = callback_params(callback)["state"]
        response = finish(app, callback)

        token = token_of(response)
        assert token
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.body == b""
        assert set_cookie_header(response)["max-age"] == "0"  # The cookie is dropped.
        assert app.app.registry.cache.get(STATE_CACHE_PREFIX + state) is None
        assert fxa_server.calls["/v1/token"] == 1

        assert whoami(app, token)["id"] == f"fxa:{fxa_server.uid_for(ALICE)}"

    def test_kinto_admin_style_fragment(self, memory_app: webtest.TestApp, fxa_server):
        redirect = "http://localhost:3000/#/auth/eyJzZXJ2ZXIiOiJ4In0=/"
        response = memory_app.get(LOGIN_PATH, params={"redirect": redirect}, status=302)
        form = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
        callback = fxa_server.authorize(
            form["client_id"],
            form["state"],
            form["scope"],
            "carol@example.com",
            redirect_uri=form["redirect_uri"],
            code_challenge=form["code_challenge"],
        )
        token = token_of(finish(memory_app, callback), redirect)
        assert whoami(memory_app, token)["id"] == f"fxa:{fxa_server.uid_for('carol@example.com')}"

    def test_public_client_with_pkce_only(self, app: webtest.TestApp, fxa_server):
        token = token_of(finish(app, sign_in(app, client="notes")))
        assert whoami(app, token)["id"] == f"fxa:{fxa_server.uid_for(ALICE)}-notes"


class TestState:
    def test_a_state_is_used_once(self, app: webtest.TestApp):
        callback = sign_in(app)
        cookie = cookie_value(app)
        finish(app, callback)
        app.set_cookie(STATE_COOKIE, cookie)  # Even with the right cookie.
        response = finish(app, callback, status=408)
        assert response.json["errno"] == 105
        assert "sign in again" in response.json["message"]

    def test_an_expired_state_is_refused(self, app: webtest.TestApp, fxa_server):
        callback = sign_in(app)
        app.app.registry.cache.expire(STATE_CACHE_PREFIX + callback_params(callback)["state"], -1)
        response = finish(app, callback, status=408)
        assert "sign in again" in response.json["message"]
        assert fxa_server.calls["/v1/token"] == 0

    def test_an_unknown_state_is_refused(self, app: webtest.TestApp, fxa_server):
        login(app)  # A cookie, for another state.
        response = app.get(TOKEN_PATH, params={"code": "a" * 64, "state": "b" * 43}, status=408)
        assert response.json["code"] == 408
        assert fxa_server.calls["/v1/token"] == 0

    def test_a_state_consumed_meanwhile_is_refused(self, memory_app: webtest.TestApp, fxa_server):
        callback = sign_in(memory_app)
        spy = CacheSpy(memory_app.app.registry.cache)
        spy.delete_returns_none = True  # Another request deleted it between get and delete.
        memory_app.app.registry.cache = spy
        finish(memory_app, callback, status=408)
        assert fxa_server.calls["/v1/token"] == 0

    @pytest.mark.parametrize(
        "stored",
        [
            "garbage",
            ["a"],
            {"redirect": APP_URL},
            {"redirect": 1, "code_verifier": "x", "client": "default", "binding": "x"},
        ],
    )
    def test_an_unreadable_stored_state_is_refused(self, memory_app: webtest.TestApp, stored):
        callback = sign_in(memory_app)
        key = STATE_CACHE_PREFIX + callback_params(callback)["state"]
        memory_app.app.registry.cache.set(key, stored, 60)
        finish(memory_app, callback, status=408)

    def test_reloading_the_callback_after_success_says_completed(self, app: webtest.TestApp):
        callback = sign_in(app)
        finish(app, callback)  # Deletes the cookie.
        assert STATE_COOKIE not in app.cookies
        response = finish(app, callback, status=408)
        assert "already completed" in response.json["message"]

    def test_an_unknown_state_without_cookie_says_expired(self, app: webtest.TestApp, fxa_server):
        response = app.get(TOKEN_PATH, params={"code": "a" * 64, "state": "b" * 43}, status=408)
        assert "sign in again" in response.json["message"]
        assert fxa_server.calls["/v1/token"] == 0

    def test_state_and_cookie_expired_together(self, app: webtest.TestApp, fxa_server):
        callback = sign_in(app)
        app.app.registry.cache.expire(STATE_CACHE_PREFIX + callback_params(callback)["state"], -1)
        app.reset()  # The browser dropped the expired cookie.
        response = finish(app, callback, status=408)
        assert "expired" in response.json["message"]
        assert fxa_server.calls["/v1/token"] == 0

    def test_a_client_removed_since_login_is_refused(self, memory_app: webtest.TestApp):
        callback = sign_in(memory_app)
        cache = memory_app.app.registry.cache
        key = STATE_CACHE_PREFIX + callback_params(callback)["state"]
        cache.set(key, {**cache.get(key), "client": "removed"}, 60)
        finish(memory_app, callback, status=408)


class TestBrowserBinding:
    def test_a_missing_cookie_is_refused_and_the_state_kept(self, app: webtest.TestApp):
        callback = sign_in(app)
        cookie = cookie_value(app)
        app.reset()  # Cookies blocked, or another browser.
        response = finish(app, callback, status=401)
        assert response.json["errno"] == 105
        assert "sign in again" in response.json["message"]

        app.set_cookie(STATE_COOKIE, cookie)
        token_of(finish(app, callback))  # The genuine browser can still finish.

    def test_a_stolen_callback_cannot_be_replayed_in_another_browser(
        self, app: webtest.TestApp, fxa_server
    ):
        callback = sign_in(app)  # The victim's.
        attacker = webtest.TestApp(app.app, extra_environ={"HTTP_HOST": "localhost:80"})
        login(attacker)  # The attacker has a state cookie of their own.
        response = finish(attacker, callback, status=401)
        assert "not started in this browser" in response.json["message"]
        assert fxa_server.calls["/v1/token"] == 0

        token = token_of(finish(app, callback))  # Not spoiled for the victim.
        assert whoami(app, token)["id"] == f"fxa:{fxa_server.uid_for(ALICE)}"

    def test_a_forged_cookie_is_refused(self, memory_app: webtest.TestApp):
        callback = sign_in(memory_app)
        memory_app.set_cookie(STATE_COOKIE, secrets.token_urlsafe(32))
        finish(memory_app, callback, status=401)


class TestMalformedParameters:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("code", "\x00"),
            ("code", "ab\x00cd"),
            ("code", "ab\x1bcd"),
            ("code", "ab cd"),
            ("code", "c\u00f6de"),
            ("code", "a" * 513),
            ("code", ""),
            ("state", "\x00"),
            ("state", "st\x00ate"),
            ("state", "state\n"),
            ("state", "sta$te"),
            ("state", "a" * 129),
            ("state", ""),
        ],
    )
    def test_are_refused_before_touching_the_cache(self, app: webtest.TestApp, name, value):
        login(app)  # With a cookie: nothing else would stop the request.
        spy = CacheSpy(app.app.registry.cache)
        app.app.registry.cache = spy
        params = {"code": "a" * 64, "state": "b" * 43, name: value}
        response = app.get(TOKEN_PATH, params=params, status=400)
        assert error_names(response) == [name]
        assert response.json["errno"] == 107
        assert spy.calls == []

    @pytest.mark.parametrize("path", [LOGIN_PATH, TOKEN_PATH])
    def test_a_cookie_that_is_not_utf8_is_a_400(self, memory_app: webtest.TestApp, path: str):
        params = {"redirect": APP_URL} if path == LOGIN_PATH else {"code": "a", "state": "b"}
        headers = {"Cookie": f'{STATE_COOKIE}="\\377"'}  # An escaped byte 0xff.
        response = memory_app.get(path, params=params, headers=headers, status=400)
        assert response.json["details"][0] == {
            "location": "header",
            "name": "Cookie",
            "description": "Must be UTF-8",
        }

    def test_missing_parameters_are_named(self, memory_app: webtest.TestApp):
        response = memory_app.get(TOKEN_PATH, status=400)
        assert sorted(error_names(response)) == ["code", "state"]


class TestCodeTrade:
    def test_a_code_refused_by_fxa_is_a_400_naming_code(self, app: webtest.TestApp, fxa_server):
        callback = sign_in(app)
        forged = callback.replace(callback_params(callback)["code"], secrets.token_hex(32))
        response = finish(app, forged, status=400)
        assert error_names(response) == ["code"]
        assert "sign in again" in response.json["message"]
        assert fxa_server.calls["/v1/token"] == 1

    def test_the_pkce_verifier_is_checked_by_fxa(self, app: webtest.TestApp, fxa_server):
        callback = sign_in(app)
        cache = app.app.registry.cache
        key = STATE_CACHE_PREFIX + callback_params(callback)["state"]
        _, other = OAuthClient(cache=None).generate_pkce_challenge()
        cache.set(key, {**cache.get(key), "code_verifier": other["code_verifier"]}, 60)

        response = finish(app, callback, status=400)
        assert error_names(response) == ["code"]
        assert fxa_server.calls["/v1/token"] == 1

    def test_the_code_is_sent_with_the_client_secret(
        self, memory_app: webtest.TestApp, fxa_server
    ):
        callback = sign_in(memory_app)
        fxa_server.register_client(CLIENT_ID, "another-secret", TOKEN_URL)
        finish(memory_app, callback, status=400)

    @pytest.mark.parametrize("mode", ["down", "5xx", "500", "malformed", "slow"])
    def test_fxa_failures_are_503(self, make_relier, fxa_server, mode: str, caplog):
        app = make_relier(**{"fxa-oauth.request_timeout_seconds": "0.2"})
        callback = sign_in(app)
        fxa_server.fail(mode, endpoints=["/v1/token"], delay=5)
        with caplog.at_level(logging.ERROR, logger="kinto_fxa.views.relier"):
            response = finish(app, callback, status=503)
        assert response.json["errno"] == 201
        assert response.json["message"] == "Firefox Accounts is unavailable: please retry later."
        assert fxa_server.calls["/v1/token"] == 1  # No retries.
        assert "Could not trade an authorization code" in caplog.text

    def test_fxa_refusing_connections_is_503(self, memory_app: webtest.TestApp, fxa_server):
        callback = sign_in(memory_app)
        fxa_server.fail("down")
        finish(memory_app, callback, status=503)

    @pytest.mark.parametrize(
        "answer",
        [
            {"access_token": "a b"},
            {"access_token": "tok\r\nSet-Cookie: x=1"},
            {"access_token": "tok#en"},
            {"access_token": ""},
            {"access_token": 42},
            {"access_token": "a" * 8193},
            ["access_token"],
        ],
    )
    def test_an_unexpected_access_token_is_503(
        self, memory_app: webtest.TestApp, monkeypatch, answer
    ):
        callback = sign_in(memory_app)
        monkeypatch.setattr(OAuthClient, "trade_code", lambda self, code, **kw: answer)
        response = finish(memory_app, callback, status=503)
        assert "Location" not in response.headers
        assert "unexpectedly" in response.json["message"]


class TestSecretsStayOutOfLogs:
    def test_codes_and_tokens_are_never_logged(
        self, memory_app: webtest.TestApp, fxa_server, caplog
    ):
        caplog.set_level(logging.DEBUG)
        callback = sign_in(memory_app)
        codes = [callback_params(callback)["code"]]
        token = token_of(finish(memory_app, callback))

        callback = sign_in(memory_app)
        codes.append(callback_params(callback)["code"])
        finish(memory_app, callback.replace(codes[-1], "f" * 64), status=400)  # FxA refuses.

        callback = sign_in(memory_app)
        codes.append(callback_params(callback)["code"])
        fxa_server.fail("5xx", endpoints=["/v1/token"])
        finish(memory_app, callback, status=503)

        logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        for secret in [*codes, "f" * 64, token, CLIENT_SECRET]:
            assert secret not in logged
        summaries = [r for r in caplog.records if r.name == "request.summary"]
        token_requests = [r for r in summaries if getattr(r, "path", "") == TOKEN_PATH]
        assert len(token_requests) == 3
        assert all(r.querystring["code"] == REDACTED for r in token_requests)


# --- Disabled relier, params, OpenAPI --------------------------------------------------


class TestRelierDisabled:
    def test_login_and_token_do_not_exist(self, make_relier):
        app = make_relier(**{"fxa-oauth.relier.enabled": "false"})
        app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=404)
        app.get(TOKEN_PATH, params={"code": "a", "state": "b"}, status=404)
        assert app.get("/v1/fxa-oauth/params").json["client_id"] == CLIENT_ID
        assert app.get("/v1/").json["capabilities"]["fxa"]
        paths = app.get("/v1/__api__").json["paths"]
        assert "/fxa-oauth/params" in paths
        assert "/fxa-oauth/login" not in paths


class TestParams:
    def test_public_parameters_of_every_client(self, memory_app: webtest.TestApp, fxa_server):
        response = memory_app.get("/v1/fxa-oauth/params")
        assert response.json == {
            "client_id": CLIENT_ID,
            "oauth_uri": fxa_server.oauth_uri,
            "scope": "profile",
            "clients": {"notes": {"client_id": PUBLIC_ID, "scope": NOTES}},
        }

    def test_secrets_are_never_exposed(self, make_relier):
        app = make_relier(**{"fxa-oauth.clients.notes.client_secret": "notes-secret"})
        body = app.get("/v1/fxa-oauth/params").text
        assert CLIENT_SECRET not in body
        assert "notes-secret" not in body
        assert "secret" not in body

    def test_defaults(self, make_app):
        settings = kinto_settings(None, **{"fxa-oauth.client_id": ""})
        response = make_app(settings).get("/v1/fxa-oauth/params")
        assert response.json == {
            "client_id": None,
            "oauth_uri": PRODUCTION_OAUTH_URI,
            "scope": "profile",
            "clients": {},
        }

    def test_required_scopes_are_space_separated(self, make_relier):
        app = make_relier(**{"fxa-oauth.required_scope": f"profile {NOTES}/extra"})
        assert app.get("/v1/fxa-oauth/params").json["scope"] == f"profile {NOTES}/extra"


class TestOpenAPI:
    def test_services_are_documented(self, memory_app: webtest.TestApp):
        paths = memory_app.get("/v1/__api__").json["paths"]
        login_parameters = {p["name"] for p in paths["/fxa-oauth/login"]["get"]["parameters"]}
        assert {"redirect", "client", "action", "email"} <= login_parameters
        token_parameters = {p["name"] for p in paths["/fxa-oauth/token"]["get"]["parameters"]}
        assert {"code", "state"} <= token_parameters
        assert {"302", "400", "401", "408", "503"} <= set(
            paths["/fxa-oauth/token"]["get"]["responses"]
        )
        assert "200" in paths["/fxa-oauth/params"]["get"]["responses"]


# --- Two Kinto processes sharing a PostgreSQL cache ------------------------------------


def test_login_and_token_served_by_two_processes_sharing_postgresql(
    make_app, fxa_server, postgresql_url, kinto_processes
):
    """Login served by this process, token by a real ``kinto start`` subprocess.

    A subprocess rather than a second in-process app: nothing is shared but the PostgreSQL
    cache (no registry, no in-memory state, no module globals), as between two servers
    behind a load balancer; and it checks the plugin under ``kinto start``/waitress too.
    """
    port = free_port()
    other = f"http://127.0.0.1:{port}"
    client_id = "relier-two-processes"
    fxa_server.register_client(client_id, CLIENT_SECRET, other + TOKEN_PATH)
    settings = relier_settings(
        fxa_server.oauth_uri,
        **backend_settings("postgresql", postgresql_url),
        **{"fxa-oauth.client_id": client_id, "fxa-oauth.redirect_uri": other + TOKEN_PATH},
    )
    here = make_app(settings)  # Creates the PostgreSQL schemas.
    kinto_processes(settings, port)

    callback = sign_in(here)
    assert callback.startswith(other + TOKEN_PATH + "?")
    cookie = {STATE_COOKIE: cookie_value(here)}

    response = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(APP_URL)
    token = location[len(APP_URL) :]
    assert response.headers["Cache-Control"] == "no-store"

    uid = fxa_server.uid_for(ALICE)
    assert whoami(here, token)["id"] == f"fxa:{uid}"
    there = requests.get(other + "/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert there.json()["user"]["id"] == f"fxa:{uid}"

    replay = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert replay.status_code == 408  # Consumed once, whichever process asks.
