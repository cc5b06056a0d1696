"""The local FxA OAuth server, over real HTTP and through PyFxA."""

import base64
import hashlib
import importlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import fxa.errors
import fxa.oauth
import jwt
import pytest
import requests
from waitress.server import create_server

from kinto_fxa.testing.fxa_server import (
    DELETE_USER,
    PASSWORD_CHANGE,
    PROFILE_CHANGE,
    SUBSCRIPTION_STATE_CHANGE,
    LocalFxAError,
    LocalFxAServer,
    serve,
)
from kinto_fxa.testing.fxa_server import authorization as fxa_authorization
from kinto_fxa.testing.fxa_server import cli as fxa_cli
from kinto_fxa.testing.fxa_server import server as fxa_listener


REDIRECT = "https://app.example.com/callback"


@pytest.fixture
def client(fxa_server: LocalFxAServer) -> fxa.oauth.Client:
    """A PyFxA client of the local server, without cache nor static JWKS."""
    return fxa.oauth.Client(server_url=fxa_server.oauth_uri, jwks=None, cache=None)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def post(server: LocalFxAServer, path: str, body: Any = None, **kw: Any) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=5, **kw)


def assert_error(response: requests.Response, code: int, errno: int) -> dict[str, Any]:
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert body["errno"] == errno
    assert isinstance(body["error"], str)
    assert isinstance(body["message"], str)
    return body


def code_from(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


class TestLifeCycle:
    def test_url_and_oauth_uri(self, fxa_server: LocalFxAServer) -> None:
        assert fxa_server.url == f"http://127.0.0.1:{fxa_server.port}"
        assert fxa_server.oauth_uri == fxa_server.url + "/v1"
        assert fxa_server.listening

    def test_url_needs_a_port(self) -> None:
        with pytest.raises(RuntimeError):
            _ = LocalFxAServer().url

    def test_ipv6_hosts_are_bracketed(self) -> None:
        assert LocalFxAServer(host="::1", port=8000).url == "http://[::1]:8000"

    def test_context_manager_start_and_stop_keep_the_port(self) -> None:
        server = LocalFxAServer()
        with server as started:
            assert started is server
            assert server.start() is server  # idempotent
            port = server.port
            assert requests.get(server.url + "/__lbheartbeat__", timeout=5).json() == {}
        assert not server.listening
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/__lbheartbeat__", timeout=5)
        server.stop()  # idempotent
        with server:
            assert server.port == port
            assert requests.get(server.url + "/__lbheartbeat__", timeout=5).json() == {}

    def test_down_before_start_is_honoured_at_start(self) -> None:
        server = LocalFxAServer()
        server.fail("down")
        with server:
            assert server.port and not server.listening
            server.fail(None)
            assert requests.get(server.url + "/__heartbeat__", timeout=5).json() == {}

    def test_keep_alive_connections_without_nagle_delay(self, http: requests.Session) -> None:
        # Through one keep-alive connection, 50 requests take ~60 ms with waitress; with
        # http.server they would take ~2 s (Nagle + delayed ACK: ~40 ms each). Timing is
        # not asserted: its cause is, TCP_NODELAY on the accepted connection.
        with LocalFxAServer() as server:
            for _ in range(50):
                assert http.get(server.url + "/__heartbeat__", timeout=5).status_code == 200
            channels = list(server._waitress.active_channels.values())
            assert len(channels) == 1  # a single connection served all of them
            sock = channels[0].socket
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert server.calls["/__heartbeat__"] == 50

    def test_a_busy_port(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            server = LocalFxAServer(port=busy.getsockname()[1])
            server.bind_attempts = 2
            with pytest.raises(OSError):
                server.start()
            assert not server.listening

    def test_binding_again_is_retried(
        self, fxa_server: LocalFxAServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        attempts: list[int] = []

        def flaky_create_server(*args: Any, **kw: Any) -> Any:
            attempts.append(kw["port"])
            if len(attempts) == 1:
                raise OSError("address already in use")
            return create_server(*args, **kw)

        fxa_server.fail("down")
        monkeypatch.setattr(fxa_listener, "create_server", flaky_create_server)
        fxa_server.fail(None)
        assert attempts == [fxa_server.port, fxa_server.port]
        assert requests.get(fxa_server.url + "/__heartbeat__", timeout=5).ok


class TestEndpoints:
    @pytest.mark.parametrize("path", ["/__heartbeat__", "/__lbheartbeat__"])
    def test_heartbeats(self, fxa_server: LocalFxAServer, path: str) -> None:
        response = requests.get(fxa_server.url + path, timeout=5)
        assert response.status_code == 200
        assert response.json() == {}

    @pytest.mark.parametrize("path", ["/nothing", "/v1/nothing", "/v1/client/", "/v1/client/a/b"])
    def test_unknown_paths(self, fxa_server: LocalFxAServer, path: str) -> None:
        assert_error(requests.get(fxa_server.url + path, timeout=5), 404, 999)

    def test_wrong_method(self, fxa_server: LocalFxAServer) -> None:
        response = requests.get(fxa_server.oauth_uri + "/verify", timeout=5)
        assert_error(response, 405, 999)
        assert response.headers["Allow"] == "POST"

    def test_jwks(self, fxa_server: LocalFxAServer) -> None:
        body = requests.get(fxa_server.oauth_uri + "/jwks", timeout=5).json()
        assert body == fxa_server.jwks
        (key,) = body["keys"]
        assert {k: key[k] for k in ("kty", "alg", "use", "e")} == {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "e": "AQAB",
        }
        assert key["kid"] == fxa_server.current_kid
        assert len(base64.urlsafe_b64decode(key["n"] + "==")) == 256

    def test_client_metadata(self, fxa_server: LocalFxAServer, client: fxa.oauth.Client) -> None:
        fxa_server.register_client("meta-client", "s", REDIRECT, name="Meta")
        assert client.get_client_metadata("meta-client") == {
            "id": "meta-client",
            "name": "Meta",
            "redirect_uri": REDIRECT,
            "image_uri": "",
            "trusted": True,
        }
        assert client.get_client_metadata("kinto-public")["redirect_uri"] == ""
        with pytest.raises(fxa.errors.ClientError) as excinfo:
            client.get_client_metadata("nobody")
        assert excinfo.value.errno == 101

    def test_internal_errors_are_fxa_shaped(
        self, fxa_server: LocalFxAServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def boom(*args: Any) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(fxa_server, "_heartbeat", boom)
        assert_error(requests.get(fxa_server.url + "/__heartbeat__", timeout=5), 500, 999)


class TestVerify:
    def test_pyfxa_accepts_minted_jwts(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        uid = fxa_server.uid_for("Alice@Example.com ")
        assert uid == fxa_server.uid_for("alice@example.com")
        assert len(uid) == 32 and int(uid, 16) >= 0
        token = fxa_server.mint_jwt(uid, scope="profile openid", generation=1234)
        info = client.verify_token(token, scope="profile:email")
        assert info["user"] == uid
        assert info["client_id"] == "kinto-client"
        assert info["scope"] == ["profile", "openid"]
        assert info["generation"] == 1234
        assert isinstance(info["profile_changed_at"], int)
        assert fxa_server.calls["/v1/jwks"] == 1
        assert fxa_server.calls["/v1/verify"] == 0

    def test_jwt_header_and_claims(self, fxa_server: LocalFxAServer) -> None:
        token = fxa_server.mint_jwt(
            scope=["a", "b"], client_id="c", ttl=60, iat=1000, extra_claims={"aud": "x"}
        )
        header = jwt.get_unverified_header(token)
        assert header == {"alg": "RS256", "typ": "at+JWT", "kid": fxa_server.current_kid}
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iss"] == "https://accounts.firefox.com"
        assert claims["sub"] == fxa_server.uid_for("alice@example.com")
        assert (claims["scope"], claims["client_id"], claims["aud"]) == ("a b", "c", "x")
        assert (claims["iat"], claims["exp"]) == (1000, 1060)
        assert len(claims["jti"]) == 64
        assert "fxa-generation" not in claims
        assert claims["fxa-profileChangedAt"] <= 1000 * 1000
        assert "typ" not in jwt.get_unverified_header(fxa_server.mint_jwt(typ=None))

    def test_pyfxa_accepts_opaque_tokens_through_verify(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        uid = fxa_server.uid_for("bob@example.com")
        token = fxa_server.mint_opaque(uid, scope="profile:email", client_id="c", generation=7)
        assert len(token) == 64 and int(token, 16) >= 0
        info = client.verify_token(token)
        assert info == {
            "user": uid,
            "client_id": "c",
            "scope": ["profile:email"],
            "generation": 7,
            "profile_changed_at": info["profile_changed_at"],
        }
        assert fxa_server.calls["/v1/verify"] == 1

    def test_verify_endpoint_also_accepts_jwts(self, fxa_server: LocalFxAServer) -> None:
        token = fxa_server.mint_jwt(generation=5)
        body = post(fxa_server, "/v1/verify", {"token": token}).json()
        assert body["user"] == fxa_server.uid_for("alice@example.com")
        assert body["scope"] == ["profile"]
        assert body["generation"] == 5
        assert "profile_changed_at" in body
        old_key = fxa_server.current_kid
        fxa_server.rotate_key()
        assert jwt.get_unverified_header(token)["kid"] == old_key
        assert post(fxa_server, "/v1/verify", {"token": token}).status_code == 200

    def test_verify_jwt_with_odd_claims(self, fxa_server: LocalFxAServer) -> None:
        token = fxa_server.mint_jwt(extra_claims={"scope": 12, "fxa-profileChangedAt": None})
        body = post(fxa_server, "/v1/verify", {"token": token}).json()
        assert body["scope"] == []
        assert "profile_changed_at" not in body

    def test_jwts_fxa_would_never_issue(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        token = fxa_server.mint_jwt(extra_claims={"client_id": None})
        assert "client_id" not in jwt.decode(token, options={"verify_signature": False})
        with pytest.raises(fxa.errors.OutOfProtocolError):
            client.verify_token(token)
        assert_error(post(fxa_server, "/v1/verify", {"token": token}), 400, 108)

    def test_pyfxa_rejects_expired_jwts(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        token = fxa_server.mint_jwt(iat=int(time.time()) - 7200, ttl=60)
        with pytest.raises(fxa.errors.TrustError):
            client.verify_token(token)
        assert_error(post(fxa_server, "/v1/verify", {"token": token}), 400, 108)

    def test_pyfxa_rejects_forged_jwts(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        forged = fxa_server.mint_jwt(signing_key=LocalFxAServer.new_key())
        assert jwt.get_unverified_header(forged)["kid"] == fxa_server.current_kid
        with pytest.raises(fxa.errors.TrustError):
            client.verify_token(forged)
        assert_error(post(fxa_server, "/v1/verify", {"token": forged}), 400, 108)

    @pytest.mark.parametrize("typ", ["JWT", "secevent+jwt"])
    def test_wrong_typ_is_refused(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client, typ: str
    ) -> None:
        token = fxa_server.mint_jwt(typ=typ)
        with pytest.raises(fxa.errors.TrustError):
            client.verify_token(token)
        assert_error(post(fxa_server, "/v1/verify", {"token": token}), 400, 108)

    def test_application_typ_is_accepted(self, fxa_server: LocalFxAServer) -> None:
        token = fxa_server.mint_jwt(typ="application/at+jwt")
        assert post(fxa_server, "/v1/verify", {"token": token}).status_code == 200

    @pytest.mark.parametrize("token", ["garbage", "a.b.c", "0" * 64, "é"])
    def test_garbage_and_unknown_tokens(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client, token: str
    ) -> None:
        with pytest.raises(fxa.errors.ClientError) as excinfo:
            client.verify_token(token)
        assert excinfo.value.errno == 108

    def test_expired_opaque_token(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        with pytest.raises(fxa.errors.ClientError) as excinfo:
            client.verify_token(fxa_server.mint_opaque(ttl=-1))
        assert excinfo.value.errno == 108

    @pytest.mark.parametrize(
        "kw", [{"data": b"{not json"}, {"json": ["token"]}, {"json": {}}, {"json": {"token": 1}}]
    )
    def test_bad_verify_bodies(self, fxa_server: LocalFxAServer, kw: dict[str, Any]) -> None:
        response = requests.post(fxa_server.oauth_uri + "/verify", timeout=5, **kw)
        assert_error(response, 400, 109)


class TestDestroy:
    def test_destroyed_opaque_tokens_are_refused(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        token = fxa_server.mint_opaque()
        client.verify_token(token)
        client.destroy_token(token)
        with pytest.raises(fxa.errors.ClientError) as excinfo:
            client.verify_token(token)
        assert excinfo.value.errno == 108

    def test_destroyed_jwts_are_only_refused_by_verify(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        token = fxa_server.mint_jwt()
        assert post(fxa_server, "/v1/destroy", {"access_token": token}).json() == {}
        assert_error(post(fxa_server, "/v1/verify", {"token": token}), 400, 108)
        # Like FxA: a JWT stays valid for whoever checks it locally.
        assert client.verify_token(token)["user"] == fxa_server.uid_for("alice@example.com")

    @pytest.mark.parametrize("token", ["nope", "0" * 64, "a.b.c"])
    def test_unknown_tokens(self, fxa_server: LocalFxAServer, token: str) -> None:
        assert_error(post(fxa_server, "/v1/destroy", {"token": token}), 400, 108)

    def test_destroying_twice(self, fxa_server: LocalFxAServer) -> None:
        token = fxa_server.mint_opaque()
        assert post(fxa_server, "/v1/destroy", {"token": token}).status_code == 200
        assert_error(post(fxa_server, "/v1/destroy", {"token": token}), 400, 108)

    def test_missing_token(self, fxa_server: LocalFxAServer) -> None:
        assert_error(post(fxa_server, "/v1/destroy", {}), 400, 109)


class TestAuthorizationPage:
    def test_sign_in_page_carries_the_parameters(self, fxa_server: LocalFxAServer) -> None:
        client = fxa.oauth.Client("kinto-client", server_url=fxa_server.oauth_uri)
        url = client.get_redirect_url(
            state='"><script>x</script>',
            redirect_uri=REDIRECT,
            scope="profile openid",
            action="force_auth",
            email="a@b.c",
        )
        response = requests.get(url, timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["Cache-Control"] == "no-store"
        page = response.text
        assert '<form method="post" action="/v1/authorization">' in page
        assert "<script>" not in page
        assert 'name="state" value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in page
        assert 'name="redirect_uri" value="https://app.example.com/callback"' in page
        assert 'name="email" value="a@b.c" required readonly' in page

    def test_the_form_signs_in(self, fxa_server: LocalFxAServer) -> None:
        form = {"client_id": "kinto-client", "state": "s1", "redirect_uri": REDIRECT}
        response = requests.post(
            fxa_server.oauth_uri + "/authorization",
            data={**form, "email": "carol@example.com"},
            allow_redirects=False,
            timeout=5,
        )
        assert response.status_code == 302
        assert response.headers["Cache-Control"] == "no-store"
        location = urlsplit(response.headers["Location"])
        assert location._replace(query="").geturl() == REDIRECT
        query = parse_qs(location.query)
        assert query["state"] == ["s1"]
        assert len(query["code"][0]) == 64

    def test_unknown_client(self, fxa_server: LocalFxAServer) -> None:
        url = fxa_server.oauth_uri + "/authorization?client_id=nobody&state=s"
        assert_error(requests.get(url, timeout=5), 400, 101)
        with pytest.raises(LocalFxAError) as excinfo:
            fxa_server.authorize("nobody", "s", "profile", "a@b.c", REDIRECT)
        assert (excinfo.value.code, excinfo.value.errno) == (400, 101)

    def test_registered_redirect_uri(self, fxa_server: LocalFxAServer) -> None:
        fxa_server.register_client("redirecting", "secret", REDIRECT)
        location = fxa_server.authorize("redirecting", "s", "profile", "a@b.c", action="signin")
        assert location.startswith(REDIRECT + "?code=")
        assert fxa_server.authorize("redirecting", "s", "profile", "a@b.c", REDIRECT)
        with pytest.raises(LocalFxAError) as excinfo:
            fxa_server.authorize("redirecting", "s", "profile", "a@b.c", REDIRECT + "/")
        assert excinfo.value.errno == 103

    def test_redirect_uri_query_is_kept(self, fxa_server: LocalFxAServer) -> None:
        location = fxa_server.authorize("kinto-client", "s t", "p", "a@b.c", REDIRECT + "?a=1")
        assert parse_qs(urlsplit(location).query)["a"] == ["1"]
        assert parse_qs(urlsplit(location).query)["state"] == ["s t"]

    @pytest.mark.parametrize(
        "params, errno",
        [
            ({"redirect_uri": None}, 109),
            ({"redirect_uri": "javascript:alert(1)"}, 103),
            ({"redirect_uri": "https://user@evil.example.com/"}, 103),
            ({"redirect_uri": "https://app.example.com:99999/"}, 103),
            ({"scope": 'profile "quoted"'}, 114),
            ({"scope": "profile  double-space"}, 114),
            ({"client_id": "kinto-public"}, 109),
            ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, 109),
            ({"code_challenge": "short", "code_challenge_method": "S256"}, 109),
            ({"code_challenge_method": "S256"}, 109),
            ({"action": "hack"}, 109),
            ({"action": "force_auth", "email": ""}, 109),
            ({"email": "not-an-email"}, 109),
            ({"email": "a b@c.d"}, 109),
            ({"client_id": ""}, 109),
        ],
    )
    def test_refused_requests(
        self, fxa_server: LocalFxAServer, params: dict[str, Any], errno: int
    ) -> None:
        form = {"client_id": "kinto-client", "state": "s", "email": "a@b.c"}
        form["redirect_uri"] = REDIRECT
        form.update(params)
        response = requests.post(
            fxa_server.oauth_uri + "/authorization", data=form, allow_redirects=False, timeout=5
        )
        assert_error(response, 400, errno)

    def test_authorize_raises_on_a_non_json_refusal(self, fxa_server: LocalFxAServer) -> None:
        fxa_server.fail("5xx", endpoints=("/v1/authorization",))
        with pytest.raises(LocalFxAError) as excinfo:
            fxa_server.authorize("kinto-client", "s", "profile", "a@b.c", REDIRECT)
        assert (excinfo.value.code, excinfo.value.errno) == (503, 999)
        fxa_server.fail("malformed")
        with pytest.raises(LocalFxAError) as excinfo:
            fxa_server.authorize("kinto-client", "s", "profile", "a@b.c", REDIRECT)
        assert (excinfo.value.code, excinfo.value.errno) == (200, 999)


class TestToken:
    def test_code_flow_with_a_secret(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        location = fxa_server.authorize(
            "kinto-client", "st", "profile", "dave@example.com", REDIRECT
        )
        before = int(time.time())
        response = client.trade_code(
            code_from(location), client_id="kinto-client", client_secret="kinto-secret"
        )
        assert response["token_type"] == "bearer"
        assert response["scope"] == "profile"
        assert response["expires_in"] == 3600
        assert before - 1 <= response["auth_at"] <= time.time()
        info = client.verify_token(response["access_token"], scope="profile")
        assert info["user"] == fxa_server.uid_for("dave@example.com")
        assert info["client_id"] == "kinto-client"
        assert jwt.get_unverified_header(response["access_token"])["typ"] == "at+JWT"

    def test_code_flow_with_pkce(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        challenge, verifier = client.generate_pkce_challenge()
        location = fxa_server.authorize(
            "kinto-public",
            "st",
            "profile",
            "erin@example.com",
            REDIRECT,
            code_challenge=challenge["code_challenge"],
        )
        response = client.trade_code(code_from(location), client_id="kinto-public", **verifier)
        info = client.verify_token(response["access_token"])
        assert info["user"] == fxa_server.uid_for("erin@example.com")
        assert info["client_id"] == "kinto-public"

    def test_pkce_with_a_confidential_client_needs_both(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        challenge, verifier = client.generate_pkce_challenge()
        location = fxa_server.authorize(
            "kinto-client", "st", "profile", "a@b.c", REDIRECT, challenge["code_challenge"]
        )
        code = code_from(location)
        with pytest.raises(fxa.errors.ClientError) as excinfo:
            client.trade_code(code, client_id="kinto-client", client_secret="kinto-secret")
        assert excinfo.value.errno == 109
        with pytest.raises(fxa.errors.ClientError) as excinfo:
            client.trade_code(code, client_id="kinto-client", **verifier)
        assert excinfo.value.errno == 102
        response = client.trade_code(
            code, client_id="kinto-client", client_secret="kinto-secret", **verifier
        )
        assert "access_token" in response

    def test_wrong_verifier_fails(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        challenge, _ = client.generate_pkce_challenge()
        _, other_verifier = client.generate_pkce_challenge()
        location = fxa_server.authorize(
            "kinto-public", "st", "profile", "a@b.c", REDIRECT, challenge["code_challenge"]
        )
        for kw in (other_verifier, {}):
            with pytest.raises(fxa.errors.ClientError) as excinfo:
                client.trade_code(code_from(location), client_id="kinto-public", **kw)
            assert excinfo.value.errno == 109

    def test_codes_are_single_use(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        code = code_from(fxa_server.authorize("kinto-client", "s", "profile", "a@b.c", REDIRECT))
        creds = {"client_id": "kinto-client", "client_secret": "kinto-secret"}
        client.trade_code(code, **creds)
        with pytest.raises(fxa.errors.ClientError) as excinfo:
            client.trade_code(code, **creds)
        assert excinfo.value.errno == 105

    def test_expired_code(self, fxa_server: LocalFxAServer, client: fxa.oauth.Client) -> None:
        fxa_server.code_ttl = -1
        code = code_from(fxa_server.authorize("kinto-client", "s", "profile", "a@b.c", REDIRECT))
        creds = {"client_id": "kinto-client", "client_secret": "kinto-secret"}
        for errno in (107, 105):
            with pytest.raises(fxa.errors.ClientError) as excinfo:
                client.trade_code(code, **creds)
            assert excinfo.value.errno == errno
        fxa_server.reset()
        assert fxa_server.code_ttl == 600

    def test_opaque_tokens_for_clients_without_jwts(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        fxa_server.register_client("opaque-client", "sec", jwt_tokens=False)
        location = fxa_server.authorize("opaque-client", "s", "profile", "a@b.c", REDIRECT)
        response = client.trade_code(
            code_from(location), client_id="opaque-client", client_secret="sec", ttl=60
        )
        assert len(response["access_token"]) == 64
        assert response["expires_in"] == 60
        assert client.verify_token(response["access_token"])["client_id"] == "opaque-client"
        assert fxa_server.calls["/v1/verify"] == 1

    def test_form_encoded_requests(self, fxa_server: LocalFxAServer) -> None:
        code = code_from(fxa_server.authorize("kinto-client", "s", "profile", "a@b.c", REDIRECT))
        form = {"client_id": "kinto-client", "client_secret": "kinto-secret", "code": code}
        response = requests.post(
            fxa_server.oauth_uri + "/token", data={**form, "ttl": "120"}, timeout=5
        )
        assert response.json()["expires_in"] == 120
        code = code_from(fxa_server.authorize("kinto-client", "s", "profile", "a@b.c", REDIRECT))
        response = requests.post(
            fxa_server.oauth_uri + "/token", data={**form, "code": code}, timeout=5
        )
        assert response.json()["expires_in"] == 3600
        assert response.headers["Cache-Control"] == "no-store"
        bad = requests.post(fxa_server.oauth_uri + "/token", data={**form, "ttl": "x"}, timeout=5)
        assert_error(bad, 400, 109)

    @pytest.mark.parametrize(
        "body, errno",
        [
            ({"client_id": "nobody"}, 101),
            ({"client_id": None}, 109),
            ({"client_secret": "wrong"}, 102),
            ({"client_secret": None}, 102),
            ({"client_id": "kinto-public", "client_secret": "x"}, 109),
            ({"grant_type": "refresh_token"}, 109),
            ({"code": None}, 109),
            ({"code": "f" * 64}, 105),
            ({"code_verifier": "short"}, 109),
            ({"code_verifier": "v" * 43}, 109),
            ({"ttl": 0}, 109),
            ({"ttl": True}, 109),
            ({"ttl": 10**9}, 109),
            ({"ttl": "60"}, 109),
            ({"client_id": "other-client", "client_secret": "other"}, 106),
        ],
    )
    def test_refused_trades(
        self, fxa_server: LocalFxAServer, body: dict[str, Any], errno: int
    ) -> None:
        fxa_server.register_client("other-client", "other")
        code = code_from(fxa_server.authorize("kinto-client", "s", "profile", "a@b.c", REDIRECT))
        request = {"client_id": "kinto-client", "client_secret": "kinto-secret", "code": code}
        request.update(body)
        request = {k: v for k, v in request.items() if v is not None}
        assert_error(post(fxa_server, "/v1/token", request), 400, errno)
        # A refused trade does not consume the code.
        request = {"client_id": "kinto-client", "client_secret": "kinto-secret", "code": code}
        assert post(fxa_server, "/v1/token", request).status_code == 200


class TestKeys:
    def test_rotation_keeps_the_old_key_published(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        old_kid = fxa_server.current_kid
        old_token = fxa_server.mint_jwt()
        new_kid = fxa_server.rotate_key()
        assert new_kid != old_kid
        assert fxa_server.current_kid == new_kid
        kids = [
            k["kid"]
            for k in requests.get(fxa_server.oauth_uri + "/jwks", timeout=5).json()["keys"]
        ]
        assert kids == [old_kid, new_kid]
        new_token = fxa_server.mint_jwt()
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        assert client.verify_token(old_token)
        assert client.verify_token(new_token)

    def test_rotation_can_drop_the_old_key(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        old_token = fxa_server.mint_jwt()
        new_kid = fxa_server.rotate_key(keep_old=False)
        assert [k["kid"] for k in fxa_server.jwks["keys"]] == [new_kid]
        with pytest.raises(fxa.errors.TrustError):
            client.verify_token(old_token)
        assert client.verify_token(fxa_server.mint_jwt())

    def test_reset_restores_the_initial_key(self, fxa_server: LocalFxAServer) -> None:
        initial = fxa_server.jwks
        token = fxa_server.mint_jwt()
        fxa_server.rotate_key(keep_old=False)
        rotated_token = fxa_server.mint_jwt()
        fxa_server.reset()
        assert fxa_server.jwks == initial
        assert post(fxa_server, "/v1/verify", {"token": token}).status_code == 200
        assert_error(post(fxa_server, "/v1/verify", {"token": rotated_token}), 400, 108)


class TestSecurityEventTokens:
    def test_set_verifies_against_the_jwks(self, fxa_server: LocalFxAServer) -> None:
        uid = fxa_server.uid_for("alice@example.com")
        events = {DELETE_USER: {}, PASSWORD_CHANGE: {"changeTime": 1_700_000_000_000}}
        token = fxa_server.mint_set(uid, events)
        jwks = jwt.PyJWKSet.from_dict(
            requests.get(fxa_server.oauth_uri + "/jwks", timeout=5).json()
        )
        header = jwt.get_unverified_header(token)
        assert header["typ"] == "secevent+jwt"
        key = next(k for k in jwks.keys if k.key_id == header["kid"])
        claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="kinto-client")
        assert claims["iss"] == "https://accounts.firefox.com/"
        assert claims["sub"] == uid
        assert claims["events"] == events
        assert isinstance(claims["jti"], str) and claims["iat"] <= time.time()

    def test_set_options(self, fxa_server: LocalFxAServer) -> None:
        token = fxa_server.mint_set(
            "u", {PROFILE_CHANGE: {}}, aud="other", iss="https://x/", iat=5, jti="j"
        )
        claims = jwt.decode(token, options={"verify_signature": False})
        assert (claims["aud"], claims["iss"], claims["iat"], claims["jti"]) == (
            "other",
            "https://x/",
            5,
            "j",
        )
        forged = fxa_server.mint_set(
            "u", {SUBSCRIPTION_STATE_CHANGE: {}}, signing_key=LocalFxAServer.new_key()
        )
        public = jwt.PyJWKSet.from_dict(fxa_server.jwks).keys[0].key
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(forged, public, algorithms=["RS256"], audience="kinto-client")

    def test_event_uris(self) -> None:
        prefix = "https://schemas.accounts.firefox.com/event/"
        assert [
            prefix + name
            for name in (
                "delete-user",
                "password-change",
                "profile-change",
                "subscription-state-change",
            )
        ] == [DELETE_USER, PASSWORD_CHANGE, PROFILE_CHANGE, SUBSCRIPTION_STATE_CHANGE]


class TestFailures:
    def test_down_refuses_connections(
        self, fxa_server: LocalFxAServer, http: requests.Session
    ) -> None:
        assert http.get(fxa_server.url + "/__heartbeat__", timeout=5).ok
        fxa_server.fail("down")
        assert not fxa_server.listening
        for session in (http, requests):  # a kept-alive connection and a new one
            with pytest.raises(requests.ConnectionError):
                session.get(fxa_server.url + "/__heartbeat__", timeout=5)
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", fxa_server.port))
        assert fxa_server.calls.total() == 1
        fxa_server.fail(None)
        assert http.get(fxa_server.url + "/__heartbeat__", timeout=5).json() == {}

    def test_down_on_some_endpoints_drops_connections(
        self, fxa_server: LocalFxAServer, http: requests.Session
    ) -> None:
        fxa_server.fail("down", endpoints="/v1/jwks")
        with pytest.raises(requests.ConnectionError):
            http.get(fxa_server.oauth_uri + "/jwks", timeout=5)
        assert http.get(fxa_server.url + "/__heartbeat__", timeout=5).json() == {}
        assert fxa_server.calls["/v1/jwks"] == 1

    def test_slow(self, fxa_server: LocalFxAServer, http: requests.Session) -> None:
        fxa_server.fail("slow", delay=0.3, endpoints=("/v1/jwks",))
        with pytest.raises(requests.Timeout):
            http.get(fxa_server.oauth_uri + "/jwks", timeout=0.1)
        assert http.get(fxa_server.url + "/__heartbeat__", timeout=5).ok
        assert http.get(fxa_server.oauth_uri + "/jwks", timeout=5).json() == fxa_server.jwks

    def test_slow_answers_are_cut_short_by_a_change(self, fxa_server: LocalFxAServer) -> None:
        fxa_server.fail("slow", delay=30)
        results: list[int] = []
        thread = threading.Thread(
            target=lambda: results.append(
                requests.get(fxa_server.url + "/__heartbeat__", timeout=30).status_code
            )
        )
        thread.start()
        deadline = time.monotonic() + 5
        while not fxa_server.calls["/__heartbeat__"] and time.monotonic() < deadline:
            time.sleep(0.01)
        fxa_server.fail(None)
        thread.join(5)
        assert results == [200]

    @pytest.mark.parametrize("mode, code", [("5xx", 503), ("500", 500)])
    def test_server_errors(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client, mode: str, code: int
    ) -> None:
        fxa_server.fail(mode)
        with pytest.raises(fxa.errors.ServerError) as excinfo:
            client.verify_token(fxa_server.mint_opaque())
        assert (excinfo.value.code, excinfo.value.errno) == (code, 999)
        assert (
            excinfo.value.error == {503: "Service Unavailable", 500: "Internal Server Error"}[code]
        )
        assert fxa_server.calls["/v1/jwks"] == 1  # PyFxA gave up at the first 5xx

    def test_5xx_on_verify_only(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        fxa_server.fail("5xx", endpoints=("/v1/verify",))
        assert client.verify_token(fxa_server.mint_jwt())
        with pytest.raises(fxa.errors.ServerError):
            client.verify_token(fxa_server.mint_opaque())

    def test_malformed(self, fxa_server: LocalFxAServer, client: fxa.oauth.Client) -> None:
        fxa_server.fail("malformed")
        response = requests.get(fxa_server.oauth_uri + "/jwks", timeout=5)
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
        with pytest.raises(fxa.errors.OutOfProtocolError):
            client.verify_token(fxa_server.mint_jwt())

    def test_test_helpers_are_never_failed(self, fxa_server: LocalFxAServer) -> None:
        fxa_server.fail("5xx")
        assert post(fxa_server, "/__test__/token", {"email": "a@b.c"}).status_code == 200

    @pytest.mark.parametrize("kw", [{"mode": "sometimes"}, {"mode": "slow", "delay": -1}])
    def test_bad_failure_modes(self, fxa_server: LocalFxAServer, kw: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            fxa_server.fail(**kw)

    def test_reset_heals_and_clears_calls(self, fxa_server: LocalFxAServer) -> None:
        fxa_server.fail("down")
        fxa_server.reset()
        assert requests.get(fxa_server.url + "/__heartbeat__", timeout=5).ok
        assert fxa_server.calls == {"/__heartbeat__": 1}
        fxa_server.reset_calls()
        assert fxa_server.calls.total() == 0


class TestCalls:
    def test_calls_count_requests_per_path(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client
    ) -> None:
        for _ in range(3):
            client.verify_token(fxa_server.mint_jwt())
        client.verify_token(fxa_server.mint_opaque())
        requests.get(fxa_server.url + "/nothing", timeout=5)
        assert fxa_server.calls == {"/v1/jwks": 4, "/v1/verify": 1, "/nothing": 1}

    def test_calls_are_thread_safe(self, fxa_server: LocalFxAServer) -> None:
        def hammer() -> None:
            with requests.Session() as session:
                for _ in range(25):
                    session.get(fxa_server.url + "/__lbheartbeat__", timeout=5)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert fxa_server.calls["/__lbheartbeat__"] == 100


class TestDevTokenEndpoint:
    def test_jwt_for_an_email(self, fxa_server: LocalFxAServer, client: fxa.oauth.Client) -> None:
        body = post(
            fxa_server,
            "/__test__/token",
            {"email": "dev@example.com", "scope": "profile openid", "ttl": 60, "generation": 3},
        ).json()
        assert body["user"] == fxa_server.uid_for("dev@example.com")
        assert (body["token_type"], body["scope"], body["expires_in"]) == (
            "bearer",
            "profile openid",
            60,
        )
        info = client.verify_token(body["access_token"])
        assert info["user"] == body["user"]
        assert info["generation"] == 3

    def test_opaque_for_a_uid(self, fxa_server: LocalFxAServer, client: fxa.oauth.Client) -> None:
        uid = "0123456789abcdef" * 2
        body = post(
            fxa_server, "/__test__/token", {"uid": uid, "opaque": True, "client_id": "x"}
        ).json()
        assert len(body["access_token"]) == 64
        assert client.verify_token(body["access_token"])["client_id"] == "x"

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"email": "nope"},
            {"uid": "ABC"},
            {"email": "a@b.c", "scope": ""},
            {"email": "a@b.c", "scope": "a\nb"},
            {"email": "a@b.c", "client_id": 3},
            {"email": "a@b.c", "opaque": "yes"},
            {"email": "a@b.c", "generation": "1"},
            {"email": "a@b.c", "ttl": -5},
        ],
    )
    def test_bad_requests(self, fxa_server: LocalFxAServer, body: dict[str, Any]) -> None:
        response = post(fxa_server, "/__test__/token", body)
        assert response.status_code == 400
        assert response.json()["errno"] in (109, 114)


class TestServe:
    def test_serve_runs_until_interrupted(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seen: dict[str, Any] = {}

        def use_then_interrupt() -> None:
            out = capsys.readouterr().out
            url = out.split("listening on ")[1].split()[0]
            seen["token"] = requests.post(
                url + "/__test__/token", json={"email": "a@b.c"}, timeout=5
            ).json()["access_token"]
            seen["client"] = requests.get(url + "/v1/client/web", timeout=5).json()
            seen["out"] = out
            raise KeyboardInterrupt

        monkeypatch.setattr(fxa_cli, "_wait_forever", use_then_interrupt)
        serve("127.0.0.1", 0, clients=[("web", "s3cr3t", REDIRECT), ("app", None, None)])
        assert seen["client"]["redirect_uri"] == REDIRECT
        assert "client web: confidential, redirect_uri " + REDIRECT in seen["out"]
        assert "client app: public (PKCE)" in seen["out"]
        assert "/__test__/token" in seen["out"]
        assert "s3cr3t" not in seen["out"]
        assert seen["token"] not in seen["out"]
        assert "Stopping." in capsys.readouterr().out

    def test_serve_registers_the_default_clients(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        def interrupt() -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(fxa_cli, "_wait_forever", interrupt)
        serve("127.0.0.1", 0)
        out = capsys.readouterr().out
        assert "client kinto-client: confidential" in out
        assert "client kinto-public: public (PKCE)" in out


class TestPytestPlugin:
    def test_plugin_module_reimports_cleanly(self) -> None:
        # pytest imports entry-point plugins before pytest-cov starts measuring: re-running
        # the module checks it is self-contained and gets its module-level lines measured.
        from kinto_fxa.testing import pytest_plugin

        module = importlib.reload(pytest_plugin)
        for name in ("fxa_server_session", "fxa_server", "fxa_token"):
            assert hasattr(module, name)

    def test_session_server_clients(self, fxa_server_session: LocalFxAServer) -> None:
        assert fxa_server_session.listening
        for client_id in ("kinto-client", "kinto-public"):
            assert requests.get(f"{fxa_server_session.oauth_uri}/client/{client_id}", timeout=5).ok

    def test_fxa_server_is_the_session_server(
        self, fxa_server: LocalFxAServer, fxa_server_session: LocalFxAServer
    ) -> None:
        assert fxa_server is fxa_server_session
        assert fxa_server.calls.total() == 0

    def test_fxa_token_factory(
        self, fxa_server: LocalFxAServer, client: fxa.oauth.Client, fxa_token: Callable[..., str]
    ) -> None:
        info = client.verify_token(fxa_token())
        assert info["user"] == fxa_server.uid_for("alice@example.com")
        info = client.verify_token(
            fxa_token("bob@example.com", scope="openid", client_id="c", generation=9)
        )
        assert (info["user"], info["scope"], info["client_id"], info["generation"]) == (
            fxa_server.uid_for("bob@example.com"),
            ["openid"],
            "c",
            9,
        )


def test_pkce_helper_matches_rfc7636() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    digest = hashlib.sha256(verifier.encode()).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert (
        fxa_authorization._s256(verifier)
        == expected
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
