import json
import warnings

import pytest
from pyramid.exceptions import ConfigurationError

from kinto_fxa.settings import DEFAULT_CLIENT, DEFAULT_WEBHOOK_ISSUER, parse_settings


POLICY = {
    "multiauth.policies": "fxa basicauth",
    "multiauth.policy.fxa.use": "kinto_fxa.authentication.FxAOAuthAuthenticationPolicy",
}

NOTES = "https://identity.mozilla.com/apps/notes"


def test_defaults():
    s = parse_settings({})
    assert s.oauth_uri is None
    assert s.default_client.name == DEFAULT_CLIENT
    assert s.default_client.requested_scope == ("profile",)
    assert s.default_client.required_scope == ("profile",)
    assert s.cache_ttl_seconds == 300
    assert s.state_ttl_seconds == 3600
    assert s.heartbeat_timeout_seconds == 3
    assert s.relier_enabled is True
    assert s.webhook_enabled is False
    assert s.authorized_domains == ()
    assert s.jwks is None
    assert s.policy_names == ("fxa",)


def test_values_are_parsed():
    s = parse_settings(
        {
            **POLICY,
            "fxa-oauth.oauth_uri": "http://127.0.0.1:9010/v1",
            "fxa-oauth.client_id": "abc",
            "fxa-oauth.requested_scope": "profile kinto",
            "fxa-oauth.required_scope": "kinto",
            "fxa-oauth.cache_ttl_seconds": " 60 ",
            "fxa-oauth.relier.enabled": "false",
            "fxa-oauth.webapp.authorized_domains": "*.example.com\nlocalhost:8000",
        }
    )
    assert s.oauth_uri == "http://127.0.0.1:9010/v1"
    assert s.default_client.client_id == "abc"
    assert s.default_client.requested_scope == ("profile", "kinto")
    assert s.default_client.required_scope == ("kinto",)
    assert s.cache_ttl_seconds == 60
    assert s.relier_enabled is False
    assert s.authorized_domains == ("*.example.com", "localhost:8000")


def test_deprecated_scope_sets_both_with_a_warning():
    with pytest.warns(DeprecationWarning, match="fxa-oauth.scope"):
        s = parse_settings({"fxa-oauth.scope": "kinto"})
    assert s.default_client.requested_scope == ("kinto",)
    assert s.default_client.required_scope == ("kinto",)


def test_extra_clients_and_user_ids():
    s = parse_settings(
        {
            **POLICY,
            "fxa-oauth.clients.notes.client_id": "notes-id",
            "fxa-oauth.clients.notes.client_secret": "s3cr3t",
            "fxa-oauth.clients.notes.required_scope": NOTES,
            "fxa-oauth.clients.lockbox.required_scope": "lockbox",
            "fxa-oauth.clients.lockbox.requested_scope": "profile lockbox",
        }
    )
    assert [c.name for c in s.clients] == ["default", "lockbox", "notes"]
    notes = s.clients_by_name["notes"]
    assert notes.requested_scope == (NOTES,)  # Defaults to the required scope.
    assert s.clients_by_name["lockbox"].requested_scope == ("profile", "lockbox")
    assert s.client_ids == {"notes-id"}
    assert s.user_ids("u1") == ["fxa:u1", "fxa:u1-lockbox", "fxa:u1-notes"]
    assert [c.name for c in s.route([NOTES])] == ["notes"]
    # Named clients only, as in kinto-fxa 2.x: the top-level scope routes nothing.
    assert [c.name for c in s.route(["profile", NOTES])] == ["notes"]
    assert s.route(["profile"]) == []
    assert s.route(["other"]) == []


def test_policy_name_comes_from_multiauth():
    s = parse_settings(
        {
            "multiauth.policies": "basicauth accounts",
            "multiauth.policy.accounts.use": "kinto_fxa.authentication."
            "FxAOAuthAuthenticationPolicy",
        }
    )
    assert s.policy_names == ("accounts",)
    assert s.user_ids("u") == ["accounts:u"]


def test_static_jwks_accepted_as_jwks_object_or_list():
    from kinto_fxa.testing.fxa_server import LocalFxAServer

    server = LocalFxAServer()
    jwks = server.jwks
    assert parse_settings({"fxa-oauth.jwks": json.dumps(jwks)}).jwks == tuple(jwks["keys"])
    assert parse_settings({"fxa-oauth.jwks": json.dumps(jwks["keys"])}).jwks == tuple(jwks["keys"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fxa-oauth.cache_ttl_seconds": "five"}, "fxa-oauth.cache_ttl_seconds"),
        ({"fxa-oauth.cache_ttl_seconds": "-1"}, "fxa-oauth.cache_ttl_seconds must be >= 0"),
        ({"fxa-oauth.state.ttl_seconds": "0"}, "fxa-oauth.state.ttl_seconds"),
        ({"fxa-oauth.heartbeat_timeout_seconds": "soon"}, "heartbeat_timeout_seconds"),
        ({"fxa-oauth.request_timeout_seconds": "0"}, "request_timeout_seconds must be > 0"),
        ({"fxa-oauth.oauth_uri": "not a url"}, "fxa-oauth.oauth_uri"),
        ({"fxa-oauth.oauth_uri": "ftp://fxa.example.com"}, "fxa-oauth.oauth_uri"),
        ({"fxa-oauth.required_scope": ""}, "fxa-oauth.required_scope must not be empty"),
        (
            {
                "fxa-oauth.clients.notes.required_scope": "profile notes",
                "fxa-oauth.clients.todo.required_scope": "notes profile",
            },
            "Clients 'notes' and 'todo' require the same scope",
        ),
        (
            {
                "fxa-oauth.clients.a.required_scope": "x y",
                "fxa-oauth.clients.b.required_scope": "y x",
            },
            "Clients 'a' and 'b'",
        ),
        ({"fxa-oauth.clients.notes.scopes": "x"}, "fxa-oauth.clients.notes.scopes"),
        ({"fxa-oauth.clients.no+tes.required_scope": "x"}, "Invalid client name"),
        ({"fxa-oauth.clients.default.required_scope": "x"}, "reserved"),
        ({"fxa-oauth.clients.notes.client_id": "x"}, "clients.notes.required_scope"),
        (
            {"fxa-oauth.clients.n.required_scope": "x", "fxa-oauth.clients.n.redirect_uri": "/"},
            "fxa-oauth.clients.n.redirect_uri",
        ),
        ({"fxa-oauth.jwks": "{not json"}, "fxa-oauth.jwks must be JSON"),
        ({"fxa-oauth.jwks": '"a string"'}, "fxa-oauth.jwks must be a JWKS"),
        ({"fxa-oauth.jwks": '[{"kty": "RSA", "n": "x"}]'}, "unusable key"),
    ],
)
def test_bad_configuration_names_the_setting(settings, message):
    with warnings.catch_warnings(), pytest.raises(ConfigurationError, match=message):
        warnings.simplefilter("ignore")
        parse_settings(settings)


@pytest.mark.parametrize(
    ("oauth_uri", "issuer"),
    [
        (None, "https://accounts.firefox.com"),
        ("https://oauth.accounts.firefox.com/v1", "https://accounts.firefox.com"),
        ("https://oauth.accounts.firefox.com", "https://accounts.firefox.com"),
        ("https://oauth.stage.mozaws.net/v1", "https://accounts.stage.mozaws.net"),
        # Not a known FxA: production's, so that another FxA's tokens are refused.
        ("https://oauth.fxa.example.com/v1", "https://accounts.firefox.com"),
        ("http://127.0.0.1:9010/v1", "https://accounts.firefox.com"),
    ],
)
def test_the_issuer_defaults_to_the_fxa_environment(oauth_uri, issuer):
    s = parse_settings({"fxa-oauth.oauth_uri": oauth_uri} if oauth_uri else {})
    assert (s.issuer, s.issuer_is_default) == (issuer, True)
    assert s.webhook_issuer == issuer + "/"  # As FxA's Security Event Tokens carry it.


def test_the_issuer_is_shared_with_the_webhook_unless_overridden():
    stage = "https://accounts.stage.mozaws.net"
    s = parse_settings({"fxa-oauth.issuer": f" {stage} "})
    assert (s.issuer, s.issuer_is_default, s.webhook_issuer) == (stage, False, stage + "/")
    s = parse_settings(
        {"fxa-oauth.issuer": stage, "fxa-oauth.webhook.issuer": "https://x.example/"}
    )
    assert (s.issuer, s.webhook_issuer) == (stage, "https://x.example/")
    s = parse_settings({"fxa-oauth.issuer": "", "fxa-oauth.webhook.issuer": ""})
    assert (s.issuer, s.webhook_issuer) == ("https://accounts.firefox.com", DEFAULT_WEBHOOK_ISSUER)


@pytest.mark.parametrize("value", ["accounts.firefox.com", "ftp://accounts.firefox.com"])
def test_the_issuer_must_be_a_url(value):
    with pytest.raises(ConfigurationError, match=r"fxa-oauth\.issuer"):
        parse_settings({"fxa-oauth.issuer": value})


def test_a_self_hosted_fxa_without_issuer_is_warned_about():
    (warning,) = parse_settings(
        {"fxa-oauth.oauth_uri": "https://oauth.fxa.example.com/v1"}
    ).issuer_warnings()
    assert "fxa-oauth.issuer" in warning
    for quiet in (
        {},
        {"fxa-oauth.oauth_uri": "https://oauth.stage.mozaws.net/v1"},
        {"fxa-oauth.oauth_uri": "http://localhost:9010/v1"},
        {
            "fxa-oauth.oauth_uri": "https://oauth.fxa.example.com/v1",
            "fxa-oauth.issuer": "https://accounts.fxa.example.com",
        },
    ):
        assert parse_settings(quiet).issuer_warnings() == []


def test_jwks_max_age():
    assert parse_settings({}).jwks_max_age_seconds == 300
    assert parse_settings({"fxa-oauth.jwks_max_age_seconds": "0"}).jwks_max_age_seconds == 0
    with pytest.raises(ConfigurationError, match=r"fxa-oauth\.jwks_max_age_seconds"):
        parse_settings({"fxa-oauth.jwks_max_age_seconds": "soon"})


def test_the_readme_documents_every_setting_with_its_default():
    # Each setting is declared once (``settings.setting``); the README's table must follow.
    import dataclasses
    import re
    from pathlib import Path

    from kinto_fxa.settings import PREFIX, FxASettings

    readme = (Path(__file__).parent.parent / "README.rst").read_text()
    rows = dict(re.findall(r"^``(fxa-oauth\.[\w.<>*]+)``\s+(\S.*?)\s{2,}", readme, re.MULTILINE))
    for f in dataclasses.fields(FxASettings):
        if "key" not in f.metadata:
            continue
        name, default = PREFIX + f.metadata["key"], f.metadata["default"]
        assert name in rows, f"{name} is not in the README's settings table"
        if default in (None, ""):
            assert rows[name].startswith(("*(", "FxA's", "the ")), (name, rows[name])
        else:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert rows[name] == f"``{shown}``", (name, rows[name])
