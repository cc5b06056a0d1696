"""kinto-fxa's metrics, read the way an operator reads them: from the ``/v1/__metrics__``
endpoint of Kinto's own Prometheus plugin (``kinto.plugins.prometheus``).

prometheus_client keeps its metrics in a process-global registry: as in Kinto's own tests,
``kinto.plugins.prometheus.reset_registry()`` empties it around each test.
"""

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import webtest
from fxa.oauth import Client as OAuthClient
from kinto.plugins import prometheus
from prometheus_client.parser import text_string_to_metric_families

from kinto_fxa import metrics
from kinto_fxa.views.relier import STATE_COOKIE
from tests.test_relier import (
    APP_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    LOGIN_PATH,
    PUBLIC_ID,
    TOKEN_PATH,
    TOKEN_URL,
    finish,
    relier_settings,
    sign_in,
)


METRICS_PATH = "/v1/__metrics__"
#: Kinto's Prometheus plugin prefixes every metric with ``prometheus_prefix``, by default
#: the ``project_name`` (``kinto``).
PREFIX = "kinto_"
INCLUDES = "kinto.plugins.prometheus kinto_fxa kinto.plugins.default_bucket"

Samples = dict[tuple[str, ...], float]


def scrape(app: webtest.TestApp) -> dict[str, dict[str, Any]]:
    """``{sample name: {labels tuple: value}}`` of the ``kinto_fxa_*`` samples exposed
    (histograms by their ``_count`` and ``_sum``)."""
    response = app.get(METRICS_PATH, status=200)
    assert response.content_type == "text/plain"
    samples: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            # ``*_created``: when a series appeared (prometheus_client's default).
            if sample.name.startswith(PREFIX + "fxa_") and not sample.name.endswith("_created"):
                labels = dict(sample.labels)
                if "le" in labels:
                    continue
                key = tuple(sorted(labels.items()))
                samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def counter(app: webtest.TestApp, name: str) -> Samples:
    """The values of counter ``name`` (a :mod:`kinto_fxa.metrics` name) by label values,
    in the label order it is declared with."""
    values = scrape(app).get(PREFIX + name + "_total", {})
    label_names = metrics.LABELS[name]
    return {
        tuple(dict(labels)[label] for label in label_names): value
        for labels, value in values.items()
    }


def moved(before: Samples, after: Samples) -> Samples:
    """What changed between two readings of a counter."""
    return {
        key: value - before.get(key, 0)
        for key, value in after.items()
        if value != before.get(key, 0)
    }


@pytest.fixture(autouse=True)
def empty_prometheus_registry() -> Iterator[None]:
    prometheus.reset_registry()
    yield
    prometheus.reset_registry()


@pytest.fixture
def app(make_app: Callable[..., webtest.TestApp], fxa_server: Any) -> webtest.TestApp:
    fxa_server.register_client(CLIENT_ID, CLIENT_SECRET, TOKEN_URL)
    fxa_server.register_client(PUBLIC_ID, None, TOKEN_URL)
    return make_app(relier_settings(fxa_server.oauth_uri, includes=INCLUDES))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_metrics_endpoint_is_kintos(app: webtest.TestApp):
    capabilities = app.get("/v1/").json["capabilities"]
    assert capabilities["prometheus"]["prefix"] == PREFIX
    assert "fxa" in capabilities


class TestVerifications:
    def test_accepted_tokens_by_source(self, app: webtest.TestApp, fxa_token: Callable):
        token = fxa_token(client_id=CLIENT_ID)
        for _ in range(3):
            app.get("/v1/", headers=bearer(token), status=200)
        assert counter(app, metrics.VERIFICATIONS) == {
            ("accepted", "none", "jwt"): 1,
            ("accepted", "none", "local"): 2,
        }

    def test_refused_tokens_by_reason(self, app: webtest.TestApp, fxa_token: Callable):
        under_scoped = fxa_token(client_id=CLIENT_ID, scope="email")
        for _ in range(2):
            app.get("/v1/buckets", headers=bearer(under_scoped), status=401)
        app.get("/v1/buckets", headers=bearer("x" * 9000), status=401)
        assert counter(app, metrics.VERIFICATIONS) == {
            ("refused", "scope", "jwt"): 1,
            ("refused", "cached", "local"): 1,
            ("refused", "malformed", "local"): 1,
        }

    def test_an_fxa_outage_is_counted_unavailable(self, app: webtest.TestApp, fxa_server: Any):
        opaque = fxa_server.mint_opaque(client_id=CLIENT_ID)
        fxa_server.fail("down")
        app.get("/v1/", headers=bearer(opaque), status=503)
        fxa_server.fail(None)
        app.get("/v1/", headers=bearer(opaque), status=200)
        assert counter(app, metrics.VERIFICATIONS) == {
            ("unavailable", "none", "verify"): 1,
            ("accepted", "none", "verify"): 1,
        }

    def test_a_cached_token_request_only_counts_its_verification(
        self, app: webtest.TestApp, fxa_token: Callable, fxa_server: Any
    ):
        token = fxa_token(client_id=CLIENT_ID)
        app.get("/v1/", headers=bearer(token), status=200)
        before = scrape(app)
        fxa_server.reset_calls()
        app.get("/v1/", headers=bearer(token), status=200)
        after = scrape(app)
        assert not fxa_server.calls
        changed = {
            name: moved(before.get(name, {}), values)
            for name, values in after.items()
            if moved(before.get(name, {}), values)
        }
        labels = (("outcome", "accepted"), ("reason", "none"), ("source", "local"))
        assert changed == {PREFIX + metrics.VERIFICATIONS + "_total": {labels: 1}}


class TestRelierResponses:
    def test_every_status_of_the_login_and_token_endpoints(
        self, app: webtest.TestApp, fxa_server: Any
    ):
        # 302 then 302: a login completed.
        app.get(finish_path(sign_in(app)), status=302)
        # Login 400: a redirect to a host not authorized.
        app.get(LOGIN_PATH, params={"redirect": "https://evil.example.com/#"}, status=400)
        # Token 400: no code.
        app.get(TOKEN_PATH, params={"state": "abc"}, status=400)
        # Token 408: a state this server never issued (with the browser's cookie).
        app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        assert app.cookies.get(STATE_COOKIE)
        app.get(TOKEN_PATH, params={"code": "0" * 64, "state": "unknown"}, status=408)
        # Token 401: a live state, from another browser.
        callback = sign_in(app)
        app.reset()
        finish(app, callback, status=401)
        # Token 503: FxA cannot trade the code.
        callback = sign_in(app)
        fxa_server.fail("down", endpoints=("/v1/token",))
        finish(app, callback, status=503)

        assert counter(app, metrics.FXA_CALL_FAILURES) == {("token", "refused"): 1}
        assert counter(app, metrics.RELIER_RESPONSES) == {
            ("login", "302"): 4,
            ("login", "400"): 1,
            ("token", "302"): 1,
            ("token", "400"): 1,
            ("token", "401"): 1,
            ("token", "408"): 1,
            ("token", "503"): 1,
        }

    def test_code_trades_are_timed(self, app: webtest.TestApp):
        app.get(finish_path(sign_in(app)), status=302)
        samples = scrape(app)
        labels = (("endpoint", "token"),)
        assert samples[PREFIX + metrics.FXA_CALL_DURATION + "_count"] == {labels: 1}
        assert PREFIX + metrics.FXA_CALL_FAILURES + "_total" not in samples

    @pytest.mark.parametrize(
        ("mode", "kind"),
        [("down", "refused"), ("slow", "timeout"), ("5xx", "5xx"), ("malformed", "malformed")],
    )
    def test_failed_code_trades_by_kind(
        self, make_app: Callable[..., webtest.TestApp], fxa_server: Any, mode: str, kind: str
    ):
        fxa_server.register_client(CLIENT_ID, CLIENT_SECRET, TOKEN_URL)
        settings = relier_settings(
            fxa_server.oauth_uri, includes=INCLUDES, **{"fxa-oauth.request_timeout_seconds": 0.2}
        )
        app = make_app(settings)
        callback = sign_in(app)
        fxa_server.fail(mode, endpoints=("/v1/token",))
        finish(app, callback, status=503)
        assert counter(app, metrics.FXA_CALL_FAILURES) == {("token", kind): 1}
        labels = (("endpoint", "token"),)
        assert scrape(app)[PREFIX + metrics.FXA_CALL_DURATION + "_count"] == {labels: 1}

    def test_an_unexpected_access_token_is_a_malformed_answer(
        self, app: webtest.TestApp, monkeypatch: pytest.MonkeyPatch
    ):
        callback = sign_in(app)
        monkeypatch.setattr(
            OAuthClient, "trade_code", lambda self, *a, **kw: {"access_token": "not a token"}
        )
        finish(app, callback, status=503)
        assert counter(app, metrics.FXA_CALL_FAILURES) == {("token", "malformed"): 1}
        assert counter(app, metrics.RELIER_RESPONSES)[("token", "503")] == 1

    def test_a_login_that_is_not_configured_is_counted_503(
        self, make_app: Callable[..., webtest.TestApp], fxa_server: Any
    ):
        settings = relier_settings(fxa_server.oauth_uri, includes=INCLUDES)
        settings["fxa-oauth.client_id"] = ""
        app = make_app(settings)
        app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=503)
        assert counter(app, metrics.RELIER_RESPONSES) == {("login", "503"): 1}

    def test_nothing_is_counted_without_a_metrics_plugin(
        self, make_app: Callable[..., webtest.TestApp], fxa_server: Any
    ):
        fxa_server.register_client(CLIENT_ID, CLIENT_SECRET, TOKEN_URL)
        app = make_app(relier_settings(fxa_server.oauth_uri))
        app.get(LOGIN_PATH, params={"redirect": APP_URL}, status=302)
        app.get(METRICS_PATH, status=404)


def finish_path(callback: str) -> str:
    parts = urlsplit(callback)
    assert dict(parse_qsl(parts.query)).keys() == {"code", "state"}
    return f"{parts.path}?{parts.query}"
