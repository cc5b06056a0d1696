"""TokenVerifier and JWKSKeySet against the local FxA server, no Pyramid involved."""

import base64
import json
import time

import pytest

from kinto_fxa.verification import (
    FxAUnavailable,
    InvalidToken,
    TokenVerifier,
    build_api_client,
    heartbeat_url,
    unverified_segment,
)


@pytest.fixture
def verifier(fxa_server):
    return TokenVerifier(fxa_server.oauth_uri, timeout=2)


def b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_jwt_claims_are_reported(verifier, fxa_server):
    now = int(time.time())
    token = fxa_server.mint_jwt("a" * 32, scope="profile kinto", iat=now, ttl=60)
    verified = verifier.verify(token)
    assert verified.uid == "a" * 32
    assert verified.client_id == "kinto-client"
    assert verified.scopes == ("profile", "kinto")
    assert verified.issued_at_ms == now * 1000
    assert verified.expires_at == now + 60


def test_generation_wins_over_iat(verifier, fxa_server):
    token = fxa_server.mint_jwt("a" * 32, generation=1234567890123)
    assert verifier.verify(token).issued_at_ms == 1234567890123


def test_opaque_token_reports_its_generation(verifier, fxa_server):
    token = fxa_server.mint_opaque("b" * 32, generation=42)
    verified = verifier.verify(token)
    assert (verified.uid, verified.issued_at_ms, verified.expires_at) == ("b" * 32, 42, None)


def test_jwt_without_subject_is_invalid(verifier, fxa_server):
    token = fxa_server.mint_jwt("a" * 32, extra_claims={"sub": None})
    with pytest.raises(InvalidToken, match="user"):
        verifier.verify(token)


def test_jwt_shaped_garbage_is_asked_to_fxa(verifier, fxa_server):
    header = b64({"alg": "RS256", "typ": "at+JWT", "kid": fxa_server.current_kid})
    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.!!!.sig")
    assert fxa_server.calls["/v1/verify"] == 1
    fxa_server.fail("5xx", endpoints=("/v1/verify",))
    with pytest.raises(FxAUnavailable, match="503"):
        verifier.verify(f"{header}.!!!.sig")
    fxa_server.fail("down", endpoints=("/v1/verify",))
    with pytest.raises(FxAUnavailable):
        verifier.verify(f"{header}.!!!.sig")


def test_jwt_without_kid_is_tried_against_every_key(verifier, fxa_server):
    first = fxa_server.mint_jwt("a" * 32, kid=None)
    fxa_server.rotate_key()
    verifier.verify(fxa_server.mint_jwt("a" * 32))  # Loads both keys.
    header = json.loads(base64.urlsafe_b64decode(first.split(".")[0] + "=="))
    assert "kid" not in header or header["kid"] is None or isinstance(header["kid"], str)
    assert verifier.verify(first).uid == "a" * 32


def test_token_with_a_non_string_kid(verifier, fxa_server):
    token = fxa_server.mint_jwt("a" * 32, kid=None)
    _, payload, signature = token.split(".")
    bad = b64({"alg": "RS256", "typ": "at+JWT", "kid": 12}) + f".{payload}.{signature}"
    with pytest.raises(InvalidToken):
        verifier.verify(bad)


def test_verify_answer_with_wrong_types_means_unavailable():
    with pytest.raises(FxAUnavailable, match="wrong types"):
        TokenVerifier._to_verified({"user": 1, "client_id": "c", "scope": []}, None)


def test_static_keys_refuse_unknown_kids_without_fetching(fxa_server):
    verifier = TokenVerifier(fxa_server.oauth_uri, jwks=fxa_server.jwks["keys"])
    fxa_server.rotate_key(keep_old=False)
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(fxa_server.mint_jwt("a" * 32))
    assert fxa_server.calls["/v1/jwks"] == 0


def test_keys_fetched_meanwhile_are_not_fetched_again(verifier, fxa_server):
    verifier.verify(fxa_server.mint_jwt("a" * 32))
    verifier.jwks._fetch(fxa_server.current_kid)  # As a thread that lost the race would.
    verifier.jwks._fetch(None)
    assert fxa_server.calls["/v1/jwks"] == 1


def test_unusable_jwks_answer_is_unavailable(verifier, fxa_server):
    fxa_server.fail("malformed", endpoints=("/v1/jwks",))
    with pytest.raises(FxAUnavailable, match="JWKS"):
        verifier.verify(fxa_server.mint_jwt("a" * 32))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://fxa/v1", "http://fxa/v1"),
        ("http://fxa/v1/", "http://fxa/v1"),
        ("http://fxa", "http://fxa/v1"),
    ],
)
def test_api_client_url_and_no_retries(given, expected):
    client = build_api_client(given, timeout=1.5)
    assert client.server_url == expected
    assert client.timeout == 1.5
    adapter = client._session.get_adapter(expected)
    assert adapter.max_retries.total == 0


@pytest.mark.parametrize("uri", ["http://fxa/v1", "http://fxa/v1/", "http://fxa"])
def test_heartbeat_url_is_at_the_server_root(uri):
    assert heartbeat_url(uri) == "http://fxa/__heartbeat__"


@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c", b64({"x": 1})[:-1] + ".b.c", "W10.b.c"])
def test_unverified_segment_of_non_jwts(token):
    assert unverified_segment(token, 0) is None
