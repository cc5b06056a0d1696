"""The documented contract: kinto-fxa 2.5.3's configurations, with their exact lines,
behave as its documentation says (multi-client routing, separate default buckets, sharing
through ``fxa:<uid>``), plus the opt-ins 3.0 adds (top-level tokens next to named
clients, client allowlists)."""

import configparser
import logging

import pytest
import requests
from pyramid.exceptions import ConfigurationError

from kinto_fxa.authentication import ROUTING_MEMO_SIZE
from tests.conftest import backend_settings, kinto_settings
from tests.helpers import auth
from tests.original_docs import (
    ORIGINAL_CLIENT,
    ORIGINAL_CLIENTS,
    ORIGINAL_INCLUDE,
    ORIGINAL_POLICY,
)


# kinto-fxa 2.5.3's documented lines, verbatim ("Handling multiple FxA clients", the
# single-client settings, the policy); ``oauth_uri`` is then pointed at the local FxA.
ORIGINAL_MULTI_CLIENT_LINES = ORIGINAL_CLIENTS
ORIGINAL_SINGLE_CLIENT_LINES = ORIGINAL_CLIENT
ORIGINAL_POLICY_LINES = ORIGINAL_INCLUDE + ORIGINAL_POLICY
NOTES_URL = "https://identity.mozilla.com/apps/notes"


def ini_lines(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string("[app:main]\n" + text)
    return dict(parser["app:main"])


def original_settings(oauth_uri: str, *blocks: str, **extra: str) -> dict[str, str]:
    """Kinto settings made of the original's lines (``kinto.`` prefixes as in an ini)."""
    settings = {**kinto_settings(oauth_uri)}
    for block in (ORIGINAL_POLICY_LINES, *blocks):
        for key, value in ini_lines(block).items():
            settings[key.removeprefix("kinto.")] = value
    settings["includes"] = "kinto_fxa kinto.plugins.default_bucket"
    settings["multiauth.policies"] = "fxa basicauth"  # For the admin steps of the tests.
    if not settings.get("fxa-oauth.oauth_uri"):
        settings["fxa-oauth.oauth_uri"] = oauth_uri
    settings.update(extra)
    return settings


def user(app, token, status=200):
    return app.get("/v1/", headers=auth(token), status=status).json.get("user")


class TestOriginalMultiClientConfiguration:
    @pytest.fixture
    def app(self, make_app, fxa_server, backend):
        return make_app(
            original_settings(fxa_server.oauth_uri, ORIGINAL_MULTI_CLIENT_LINES, **backend)
        )

    def test_each_app_gets_its_own_user_id_and_the_person_principal(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        notes = user(app, fxa_server.mint_jwt(uid, scope="profile app-notes"))
        todo = user(app, fxa_server.mint_jwt(uid, scope="profile app-todo"))
        assert notes["id"] == f"fxa:{uid}-notes"
        assert todo["id"] == f"fxa:{uid}-todo"
        assert f"fxa:{uid}" in notes["principals"]
        assert f"fxa:{uid}" in todo["principals"]
        assert notes["bucket"] != todo["bucket"]

    def test_a_token_matching_no_client_is_refused(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        resp = app.get("/v1/buckets", headers=auth(fxa_server.mint_jwt(uid)), status=401)
        assert resp.json["errno"] == 104

    def test_default_buckets_are_isolated_and_sharing_works(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        notes = auth(fxa_server.mint_jwt(uid, scope="profile app-notes"))
        todo = auth(fxa_server.mint_jwt(uid, scope="profile app-todo"))
        app.put_json("/v1/buckets/default/collections/tasks/records/t1", {}, headers=todo)
        todo_bucket = app.get("/v1/", headers=todo).json["user"]["bucket"]
        tasks = f"/v1/buckets/{todo_bucket}/collections/tasks/records"
        app.get(tasks, headers=notes, status=403)  # No permission given: no access.
        mine = app.get("/v1/buckets/default/collections/tasks/records", headers=notes)
        assert mine.json["data"] == []  # The notes app's own default bucket.
        # The todo app shares with the person, whichever app they use.
        app.patch_json(
            f"/v1/buckets/{todo_bucket}/collections/tasks",
            {"permissions": {"read": [f"fxa:{uid}"]}},
            headers=todo,
        )
        assert [r["id"] for r in app.get(tasks, headers=notes).json["data"]] == ["t1"]

    def test_served_by_kinto_start_with_the_original_ini(
        self, make_app, fxa_server, postgresql_url, kinto_processes
    ):
        settings = original_settings(
            fxa_server.oauth_uri,
            ORIGINAL_MULTI_CLIENT_LINES,
            **backend_settings("postgresql", postgresql_url),
        )
        make_app(settings)  # Creates the schemas.
        kinto = kinto_processes(settings)
        uid = fxa_server.uid_for("bob@example.com")
        for scope, user_id in (("profile app-notes", f"fxa:{uid}-notes"), ("profile", None)):
            resp = requests.get(
                kinto.url + "/v1/", headers=auth(fxa_server.mint_jwt(uid, scope=scope)), timeout=10
            )
            assert resp.json().get("user", {}).get("id") == user_id


class TestOriginalSingleClientConfiguration:
    def test_required_scope_kinto(self, make_app, fxa_server, backend):
        app = make_app(
            original_settings(fxa_server.oauth_uri, ORIGINAL_SINGLE_CLIENT_LINES, **backend)
        )
        uid = fxa_server.uid_for("alice@example.com")
        assert user(app, fxa_server.mint_jwt(uid, scope="profile kinto"))["id"] == f"fxa:{uid}"
        app.get("/v1/buckets", headers=auth(fxa_server.mint_jwt(uid)), status=401)
        params = app.get("/v1/fxa-oauth/params").json
        assert params["client_id"] == "89513028159972bc"
        assert params["scope"] == "kinto"


def test_readme_url_scope_example_with_profile(make_app, fxa_server):
    app = make_app(
        kinto_settings(
            fxa_server.oauth_uri,
            **{
                "fxa-oauth.clients.notes.client_id": "a3e1f0",
                "fxa-oauth.clients.notes.required_scope": NOTES_URL,
            },
        )
    )
    uid = fxa_server.uid_for("alice@example.com")
    token = fxa_server.mint_jwt(uid, scope=f"profile {NOTES_URL}")  # What FxA apps ask for.
    assert user(app, token)["id"] == f"fxa:{uid}-notes"


class TestTopLevelTokensNextToNamedClients:
    SETTINGS = {
        "fxa-oauth.required_scope": "kinto",
        "fxa-oauth.accept_top_level_tokens": "true",
        "fxa-oauth.clients.notes.required_scope": NOTES_URL,
    }

    def test_refused_at_startup_when_routing_would_be_ambiguous(self, make_app, fxa_server):
        settings = original_settings(
            fxa_server.oauth_uri,
            ORIGINAL_MULTI_CLIENT_LINES,
            **{"fxa-oauth.accept_top_level_tokens": "true"},
        )
        with pytest.raises(ConfigurationError, match="accept_top_level_tokens"):
            make_app(settings)

    def test_an_app_token_cannot_act_as_the_top_level_user(self, make_app, fxa_server, backend):
        app = make_app(kinto_settings(fxa_server.oauth_uri, **self.SETTINGS, **backend))
        uid = fxa_server.uid_for("alice@example.com")
        top = auth(fxa_server.mint_jwt(uid, scope="kinto"))
        notes = auth(fxa_server.mint_jwt(uid, scope=NOTES_URL))
        top_user = app.get("/v1/", headers=top).json["user"]
        notes_user = app.get("/v1/", headers=notes).json["user"]
        assert (top_user["id"], notes_user["id"]) == (f"fxa:{uid}", f"fxa:{uid}-notes")
        assert f"fxa:{uid}" not in notes_user["principals"]
        app.put_json("/v1/buckets/default/collections/c/records/r", {}, headers=top)
        top_bucket = f"/v1/buckets/{top_user['bucket']}/collections/c/records/r"
        app.get(top_bucket, headers=notes, status=403)
        app.put_json(top_bucket, {"data": {"x": 1}}, headers=notes, status=403)


class TestClientAllowlist:
    SETTINGS = {
        "fxa-oauth.clients.notes.required_scope": "profile app-notes",
        "fxa-oauth.clients.notes.allowed_client_ids": "notes-web notes-android",
        "fxa-oauth.clients.todo.required_scope": "profile app-todo",
    }

    @pytest.fixture
    def app(self, make_app, fxa_server, backend):
        return make_app(kinto_settings(fxa_server.oauth_uri, **self.SETTINGS, **backend))

    def test_listed_clients_only(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        for client_id in ("notes-web", "notes-android"):
            token = fxa_server.mint_jwt(uid, scope="profile app-notes", client_id=client_id)
            assert user(app, token)["id"] == f"fxa:{uid}-notes"
        foreign = fxa_server.mint_jwt(uid, scope="profile app-notes", client_id="other-service")
        resp = app.get("/v1/buckets", headers=auth(foreign), status=401)
        assert resp.json["errno"] == 104
        # A client without allowlist still takes any FxA client's token.
        token = fxa_server.mint_jwt(uid, scope="profile app-todo", client_id="anyone")
        assert user(app, token)["id"] == f"fxa:{uid}-todo"

    def test_foreign_opaque_tokens_are_refused_and_remembered(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        foreign = fxa_server.mint_opaque(uid, scope="profile app-notes", client_id="other")
        for _ in range(3):
            app.get("/v1/buckets", headers=auth(foreign), status=401)
        assert fxa_server.calls["/v1/verify"] == 1

    def test_routing_is_decided_once_per_scopes_and_client_and_each_refusal_logged(
        self, app, fxa_server, caplog
    ):
        uid = fxa_server.uid_for("alice@example.com")
        decide = app.app.registry.fxa_authenticator._decide
        decide.cache_clear()
        with caplog.at_level(logging.INFO, logger="kinto_fxa"):
            for _ in range(3):
                foreign = fxa_server.mint_jwt(uid, scope="profile app-notes", client_id="x")
                app.get("/v1/buckets", headers=auth(foreign), status=401)
                token = fxa_server.mint_jwt(uid, scope="profile app-notes", client_id="notes-web")
                assert user(app, token)["id"] == f"fxa:{uid}-notes"
        assert caplog.text.count("issued to client 'x'") == 3
        info = decide.cache_info()
        assert (info.misses, info.hits, info.maxsize) == (2, 4, ROUTING_MEMO_SIZE)

    def test_top_level_allowlist(self, make_app, fxa_server):
        app = make_app(
            kinto_settings(fxa_server.oauth_uri, **{"fxa-oauth.allowed_client_ids": "mine"})
        )
        uid = fxa_server.uid_for("alice@example.com")
        assert user(app, fxa_server.mint_jwt(uid, client_id="mine"))["id"] == f"fxa:{uid}"
        app.get("/v1/buckets", headers=auth(fxa_server.mint_jwt(uid, client_id="x")), status=401)


class TestExposureWarning:
    def test_profile_without_allowlist_is_warned_about(self, make_app, fxa_server, caplog):
        with caplog.at_level(logging.WARNING, logger="kinto_fxa"):
            make_app(original_settings(fxa_server.oauth_uri, ORIGINAL_MULTI_CLIENT_LINES))
        assert "allowed_client_ids" not in caplog.text  # ``app-notes`` is not open to all.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kinto_fxa"):
            make_app(kinto_settings(fxa_server.oauth_uri))
        assert "fxa-oauth.allowed_client_ids" in caplog.text
        assert "every client" in caplog.text

    def test_no_warning_with_an_allowlist(self, make_app, fxa_server, caplog):
        with caplog.at_level(logging.WARNING, logger="kinto_fxa"):
            make_app(
                kinto_settings(fxa_server.oauth_uri, **{"fxa-oauth.allowed_client_ids": "a b"})
            )
        assert "allowed_client_ids" not in caplog.text
