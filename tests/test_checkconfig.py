"""``kinto-fxa check-config``: on the ini examples of kinto-fxa 2.5.3's documentation (their
exact lines, from its package page), on broken ones, and ``--online`` against the local FxA
server healthy and failing."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pyramid.paster import get_app

from kinto_fxa import checkconfig, cli
from kinto_fxa.checkconfig import ERRORS, OK, WARNINGS
from tests.original_docs import (
    ORIGINAL_CLIENT,
    ORIGINAL_CLIENTS,
    ORIGINAL_INCLUDE,
    ORIGINAL_NO_RELIER,
    ORIGINAL_POLICY,
    ORIGINAL_REALM,
)


KINTO_FXA = str(Path(sys.executable).parent / "kinto-fxa")

ORIGINAL = ORIGINAL_INCLUDE + ORIGINAL_POLICY + ORIGINAL_CLIENT + ORIGINAL_REALM

SERVER = """
[server:main]
use = egg:waitress#main
host = 127.0.0.1
port = 8888
"""


def ini(tmp_path: Path, body: str, name: str = "kinto.ini") -> str:
    path = tmp_path / name
    path.write_text("[app:main]\nuse = egg:kinto\n" + body + SERVER)
    return str(path)


def unwrap(text: str) -> str:
    """The report with its wrapped lines joined (continuations: 8 spaces in sections, 4 in
    warnings and errors)."""
    return re.sub(r"\n(?: {8}| {4})(?=\S)", " ", text)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``kinto-fxa check-config *argv``: exit status and output (lines unwrapped)."""
    status = cli.main(["check-config", *argv])
    return status, unwrap(capsys.readouterr().out)


# A configuration with nothing to warn about, against the local FxA server.
def clean(oauth_uri: str = "https://oauth.accounts.firefox.com/v1", **extra: str) -> str:
    settings = {
        "fxa-oauth.oauth_uri": oauth_uri,
        "fxa-oauth.client_id": "kinto-client",
        "fxa-oauth.client_secret": "kinto-secret",
        "fxa-oauth.required_scope": "https://identity.mozilla.com/apps/kinto",
        "fxa-oauth.webapp.authorized_domains": "app.example.com",
        **extra,
    }
    return (
        ORIGINAL_INCLUDE + ORIGINAL_POLICY + "".join(f"{k} = {v}\n" for k, v in settings.items())
    )


# --- The original's examples ------------------------------------------------------------


class TestOriginalExamples:
    def test_single_client_with_the_relier(self, tmp_path, capsys):
        status, out = run(capsys, ini(tmp_path, ORIGINAL))
        assert status == WARNINGS
        assert "client_id: 89513028159972bc" in out
        assert "client_secret: set" in out
        assert "9aced230585cc0aaea0a3467dd800" not in out  # A secret is never printed.
        assert "token granting 'kinto' -> fxa:<uid>\n" in out
        assert "oauth_uri: not set: FxA production (https://oauth.accounts.firefox.com/v1)" in out
        assert "verifications: in-process only, 300 s (cache_ttl_seconds)" in out
        assert "login states: Kinto cache, 3600 s" in out
        assert "revocation bound: immediate, in this one process" in out
        assert "no account event reaches this server" in out
        warnings = out.split("Warnings (1)\n")[1]
        assert "contains '*': the login endpoint sends access tokens to ANY web site" in warnings
        assert out.endswith("Result: 1 warning(s) (exit status 1)\n")

    def test_without_the_relier_nothing_to_warn(self, tmp_path, capsys):
        status, out = run(capsys, ini(tmp_path, ORIGINAL + ORIGINAL_NO_RELIER))
        assert status == OK, out
        assert "login and token endpoints: disabled (fxa-oauth.relier.enabled = false)" in out
        assert "login states" not in out
        assert "Warnings" not in out
        assert out.endswith("Result: OK (exit status 0)\n")

    def test_multiple_clients_route_among_named_clients_only(self, tmp_path, capsys):
        path = ini(tmp_path, ORIGINAL + ORIGINAL_NO_RELIER + ORIGINAL_CLIENTS)
        status, out = run(capsys, path)
        assert status == OK, out
        routing = out.split("Token routing\n")[1].split("\n\n")[0]
        assert routing.splitlines()[1:] == [
            "  token granting 'profile app-notes' -> fxa:<uid>-notes (also principal fxa:<uid>)",
            "  token granting 'profile app-todo' -> fxa:<uid>-todo (also principal fxa:<uid>)",
            "  any other token -> refused (401)",
        ]
        assert "tokens are routed among them only" in routing
        assert "'kinto'" not in routing  # The top-level required scope admits no token.

    def test_multiple_clients_with_the_relier_warn_of_missing_secrets(self, tmp_path, capsys):
        status, out = run(capsys, ini(tmp_path, ORIGINAL + ORIGINAL_CLIENTS))
        assert status == WARNINGS
        assert "Warnings (3)" in out
        for name in ("notes", "todo"):
            assert f"Client '{name}' has no fxa-oauth.clients.{name}.client_secret" in out
            assert f"/v1/fxa-oauth/login?client={name}" in out

    def test_it_reads_what_the_server_reads(self, tmp_path):
        """The settings check-config reports are those of a Kinto started on the ini."""
        path = ini(tmp_path, ORIGINAL + ORIGINAL_NO_RELIER + ORIGINAL_CLIENTS)
        report = checkconfig.check(path)
        app = get_app(path)
        assert report.settings == app.registry.fxa_settings
        assert report.settings.extra_clients

    def test_the_console_script(self, tmp_path):
        path = ini(tmp_path, ORIGINAL)
        result = subprocess.run(
            [KINTO_FXA, "--ini", path, "check-config"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == WARNINGS, result.stderr
        assert result.stdout.startswith(f"kinto-fxa check-config {path}\n")
        result = subprocess.run(
            [KINTO_FXA, "check-config", ini(tmp_path, "garbage = [", "broken.ini")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == ERRORS
        assert "ERROR" in result.stdout


# --- What it says about caches, routing and exposure ----------------------------------


class TestReport:
    def test_shared_cache_levels_and_revocation_bound(self, tmp_path, capsys):
        # Nothing is started: the PostgreSQL URLs are never reached.
        body = clean() + (
            "kinto.cache_backend = kinto.core.cache.postgresql\n"
            "kinto.cache_url = postgresql://nobody@192.0.2.1/none\n"
            "kinto.storage_backend = kinto.core.storage.postgresql\n"
            "kinto.storage_url = postgresql://nobody@192.0.2.1/none\n"
            "fxa-oauth.local_cache_ttl_seconds = 7\n"
            "fxa-oauth.cache_ttl_seconds = 120\n"
        )
        status, out = run(capsys, ini(tmp_path, body))
        assert status == OK, out
        caches = out.split("Caches and revocation\n")[1].split("\n\n")[0]
        assert "verifications: in-process 7 s" in caches
        assert "opaque tokens only, in the Kinto cache 120 s" in caches
        assert "revocation bound: 7 s" in caches
        assert "two steps must reach the same process" not in caches
        assert "webhook: disabled (account events through process-account-events only)" in out

    def test_environment_variables_apply_as_on_the_server(self, tmp_path, capsys, monkeypatch):
        body = clean() + "kinto.storage_backend = kinto.core.storage.postgresql\n"
        body += "fxa-oauth.local_cache_ttl_seconds = 10\n"
        monkeypatch.setenv("FXA_OAUTH_LOCAL_CACHE_TTL_SECONDS", "3")
        monkeypatch.setenv("KINTO_CACHE_BACKEND", "kinto.core.cache.memcached")
        report = checkconfig.check(ini(tmp_path, body))
        assert report.settings is not None
        assert report.settings.revocation_bound_seconds == 3
        assert "revocation bound: 3 s" in report.render()
        assert "Kinto cache: kinto.core.cache.memcached" in report.render()

    def test_top_level_tokens_next_to_named_clients(self, tmp_path, capsys):
        body = clean(**{"fxa-oauth.accept_top_level_tokens": "true"})
        body += "fxa-oauth.clients.notes.client_id = notes-client\n"
        body += "fxa-oauth.clients.notes.client_secret = notes-secret\n"
        body += (
            "fxa-oauth.clients.notes.required_scope = https://identity.mozilla.com/apps/notes\n"
        )
        body += "fxa-oauth.clients.notes.allowed_client_ids = notes-web notes-android\n"
        status, out = run(capsys, ini(tmp_path, body))
        assert status == OK, out
        assert "tokens are routed among every client" in out
        assert "-> fxa:<uid>\n" in out
        assert (
            "token granting 'https://identity.mozilla.com/apps/notes', issued to notes-web or "
            "notes-android -> fxa:<uid>-notes\n"
        ) in out
        assert "also principal" not in out

    def test_several_policies(self, tmp_path, capsys):
        body = clean().replace(
            "multiauth.policies = fxa\n",
            "multiauth.policies = fxa fxa2\n"
            "multiauth.policy.fxa2.use = kinto_fxa.authentication.FxAOAuthAuthenticationPolicy\n",
        )
        status, out = run(capsys, ini(tmp_path, body))
        assert status == OK, out
        assert "policies: fxa, fxa2 (user ids prefixed by each)" in out

    def test_static_jwks_and_webhook(self, tmp_path, capsys, fxa_server):
        jwks = json.dumps(fxa_server.jwks)
        body = clean(**{"fxa-oauth.jwks": jwks, "fxa-oauth.webhook.enabled": "true"})
        status, out = run(capsys, ini(tmp_path, body))
        assert status == OK, out
        assert (
            f"JWKS: static, 1 key(s) ({fxa_server.current_kid}); FxA's /jwks is never read" in out
        )
        assert "POST /v1/fxa-oauth/events (webhook), issuer https://accounts.firefox.com/" in out

    @pytest.mark.parametrize(
        ("setting", "warning"),
        [
            (
                {"fxa-oauth.required_scope": "profile"},
                "Client 'default' requires only 'profile', which FxA grants to every client",
            ),
            (
                {"fxa-oauth.scope": "https://identity.mozilla.com/apps/kinto"},
                '"fxa-oauth.scope" is deprecated',
            ),
            (
                {"fxa-oauth.webapp.authorized_domains": "app.example.com:80"},
                "contains 'app.example.com:80': tokens may be sent to plain-http pages",
            ),
            (
                {"fxa-oauth.webapp.authorized_domains": "*.example.com:*"},
                "contains '*.example.com:*': tokens may be sent to plain-http pages",
            ),
            (
                {"fxa-oauth.oauth_uri": "http://fxa.example.com/v1"},
                "fxa-oauth.oauth_uri is plain http (http://fxa.example.com/v1)",
            ),
            (
                {"fxa-oauth.redirect_uri": "http://kinto.example.com/v1/fxa-oauth/token"},
                "fxa-oauth.redirect_uri is plain http",
            ),
            (
                {"fxa-oauth.client_secret": ""},
                "Client 'default' has no fxa-oauth.client_secret while the relier is on: "
                "/v1/fxa-oauth/login trades",
            ),
            (
                {"fxa-oauth.client_id": "", "fxa-oauth.client_secret": ""},
                "fxa-oauth.client_id is not set: /v1/fxa-oauth/login answers 503",
            ),
        ],
    )
    def test_warnings(self, tmp_path, setting: dict[str, str], warning: str):
        report = checkconfig.check(ini(tmp_path, clean(**setting)))
        assert report.status == WARNINGS
        assert len(report.warnings) == 1, report.warnings
        assert warning in report.warnings[0]
        assert "WARNING: " in report.render()

    @pytest.mark.parametrize(
        "setting",
        [
            {"fxa-oauth.required_scope": "profile", "fxa-oauth.allowed_client_ids": "web-app"},
            {"fxa-oauth.webapp.authorized_domains": "localhost:* 127.0.0.1:80 [::1]:*"},
            {"fxa-oauth.oauth_uri": "http://127.0.0.1:9010/v1"},
            {"fxa-oauth.client_secret": "", "fxa-oauth.relier.enabled": "false"},
        ],
    )
    def test_no_warnings(self, tmp_path, setting: dict[str, str]):
        report = checkconfig.check(ini(tmp_path, clean(**setting)))
        assert report.warnings == []
        assert report.status == OK

    def test_no_fxa_policy(self, tmp_path):
        body = clean().replace(ORIGINAL_POLICY, "multiauth.policies = basicauth\n")
        report = checkconfig.check(ini(tmp_path, body))
        assert report.status == WARNINGS
        assert report.warnings[0].startswith("No multiauth policy uses kinto_fxa.authentication")


# --- Broken configurations -------------------------------------------------------------


class TestErrors:
    def test_a_missing_file(self, tmp_path, capsys):
        status, out = run(capsys, str(tmp_path / "nope.ini"))
        assert status == ERRORS
        assert f"ERROR: Configuration file not found: {tmp_path / 'nope.ini'}" in out
        assert out.endswith("Result: 1 error(s) (exit status 2)\n")

    def test_the_global_ini_option(self, tmp_path, capsys):
        status = cli.main(["--ini", str(tmp_path / "nope.ini"), "check-config"])
        assert status == ERRORS
        assert "nope.ini" in capsys.readouterr().out

    @pytest.mark.parametrize(
        "text",
        [
            "this is not an ini file\n",
            "[app:main]\nuse = egg:no-such-distribution\n",
            "[server:main]\n",
        ],
    )
    def test_unreadable_ini(self, tmp_path, text: str):
        path = tmp_path / "broken.ini"
        path.write_text(text)
        report = checkconfig.check(str(path))
        assert report.status == ERRORS
        assert report.errors[0].startswith(f"Cannot read {path}: ")

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            (
                "fxa-oauth.cache_ttl_seconds = soon",
                "Invalid setting: fxa-oauth.cache_ttl_seconds must be a whole number, got 'soon'",
            ),
            (
                "fxa-oauth.webapp.authorized_domains = https://app.example.com\n"
                "fxa-oauth.relier.enabled = true",
                "Invalid setting: fxa-oauth.webapp.authorized_domains: invalid port in "
                "'https://app.example.com'",
            ),
            (
                "fxa-oauth.clients.notes.required_scope = https://identity.mozilla.com/apps/kinto\n"
                "fxa-oauth.clients.todo.required_scope = https://identity.mozilla.com/apps/kinto",
                "Invalid setting: Clients 'notes' and 'todo' require the same scope",
            ),
            (
                "fxa-oauth.clients.notes.scope = profile",
                "Invalid setting: Unknown setting fxa-oauth.clients.notes.scope",
            ),
            # Conflicts with kinto.includes:
            ("includes = kinto.plugins.default_bucket", "Settings '"),
        ],
    )
    def test_invalid_settings(self, tmp_path, capsys, line: str, message: str):
        body = clean().replace("fxa-oauth.webapp.authorized_domains = app.example.com\n", "")
        status, out = run(capsys, ini(tmp_path, body + line + "\n"))
        assert status == ERRORS
        assert f"ERROR: {message}" in out

    def test_kinto_fxa_not_included(self, tmp_path):
        body = clean().replace(ORIGINAL_INCLUDE, "kinto.includes = kinto.plugins.default_bucket\n")
        report = checkconfig.check(ini(tmp_path, body))
        assert report.status == ERRORS
        assert report.errors == [
            f"kinto_fxa is not in the kinto.includes setting of {tmp_path}/kinto.ini"
        ]

    def test_kinto_fxa_in_pyramid_includes(self, tmp_path):
        body = clean().replace(ORIGINAL_INCLUDE, "pyramid.includes = kinto_fxa\n")
        report = checkconfig.check(ini(tmp_path, body))
        assert report.status == ERRORS
        assert "kinto_fxa is in pyramid.includes" in report.errors[0]


# --- Online ---------------------------------------------------------------------------


class TestOnline:
    def test_a_healthy_fxa(self, tmp_path, capsys, fxa_server):
        status, out = run(capsys, ini(tmp_path, clean(fxa_server.oauth_uri)), "--online")
        assert status == OK, out
        online = out.split("FxA, online\n")[1].split("\n\n")[0]
        assert f"heartbeat {fxa_server.url}/__heartbeat__: 200 in " in online
        assert (
            f"JWKS {fxa_server.oauth_uri}/jwks: 1 key(s) ({fxa_server.current_kid}) in " in online
        )
        assert fxa_server.calls["/__heartbeat__"] == 1
        assert fxa_server.calls["/v1/jwks"] == 1

    def test_without_online_fxa_is_not_reached(self, tmp_path, capsys, fxa_server):
        status, out = run(capsys, ini(tmp_path, clean(fxa_server.oauth_uri)))
        assert status == OK
        assert "FxA, online" not in out
        assert not fxa_server.calls

    def test_fxa_down(self, tmp_path, capsys, fxa_server):
        path = ini(tmp_path, clean(fxa_server.oauth_uri))
        fxa_server.fail("down")
        status, out = run(capsys, path, "--online")
        assert status == ERRORS
        assert f"heartbeat {fxa_server.url}/__heartbeat__: unreachable (" in out
        errors = out.split("Errors (2)\n")[1]
        assert f"ERROR: FxA heartbeat {fxa_server.url}/__heartbeat__ unreachable after " in errors
        assert f"ERROR: FxA JWKS {fxa_server.oauth_uri}/jwks unusable after " in errors
        assert "ConnectionError" in errors

    def test_nothing_listening(self, tmp_path, capsys):
        from tests.helpers import free_port

        uri = f"http://127.0.0.1:{free_port()}/v1"
        status, out = run(capsys, ini(tmp_path, clean(uri)), "--online")
        assert status == ERRORS
        assert "Errors (2)" in out

    def test_fxa_answering_errors(self, tmp_path, capsys, fxa_server):
        path = ini(tmp_path, clean(fxa_server.oauth_uri))
        fxa_server.fail("5xx")
        report = checkconfig.check(path, online=True)
        assert report.status == ERRORS
        assert report.errors[0] == f"FxA heartbeat {fxa_server.url}/__heartbeat__ answered 503"
        assert "ServerError" in report.errors[1]

    def test_fxa_answering_nonsense(self, tmp_path, fxa_server):
        path = ini(tmp_path, clean(fxa_server.oauth_uri))
        fxa_server.fail("malformed", endpoints=("/v1/jwks",))
        report = checkconfig.check(path, online=True)
        assert report.status == ERRORS
        assert len(report.errors) == 1
        assert report.errors[0].startswith(f"FxA JWKS {fxa_server.oauth_uri}/jwks unusable")

    @pytest.mark.parametrize(
        ("jwks", "reason"),
        [
            ({"keys": []}, "no usable RSA key with a kid"),
            ({"keys": ["junk", {"kty": "RSA"}, "key without kid"]}, "no usable RSA key"),
            ([1], "no keys list"),
        ],
    )
    def test_unusable_jwks(self, monkeypatch, tmp_path, fxa_server, jwks: Any, reason: str):
        (key,) = fxa_server.jwks["keys"]
        no_kid = {name: value for name, value in key.items() if name != "kid"}
        if isinstance(jwks, dict):
            jwks = {"keys": [no_kid if k == "key without kid" else k for k in jwks["keys"]]}
        monkeypatch.setattr(type(fxa_server), "jwks", property(lambda self: jwks))
        report = checkconfig.check(ini(tmp_path, clean(fxa_server.oauth_uri)), online=True)
        assert report.status == ERRORS
        assert reason in report.errors[0]

    def test_static_jwks_holding_the_keys_fxa_publishes(self, tmp_path, fxa_server):
        body = clean(fxa_server.oauth_uri, **{"fxa-oauth.jwks": json.dumps(fxa_server.jwks)})
        report = checkconfig.check(ini(tmp_path, body), online=True)
        assert report.status == OK, report.render()

    def test_static_jwks_missing_the_key_fxa_publishes(self, tmp_path, fxa_server):
        body = clean(fxa_server.oauth_uri, **{"fxa-oauth.jwks": json.dumps(fxa_server.jwks)})
        old_kid = fxa_server.current_kid
        new_kid = fxa_server.rotate_key()
        report = checkconfig.check(ini(tmp_path, body), online=True)
        assert report.status == WARNINGS
        assert report.warnings == [
            f"fxa-oauth.jwks lacks key(s) FxA publishes ({new_kid}): tokens signed with them "
            "are refused."
        ]
        assert old_kid != new_kid
