"""TokenVerifier, with JWKSKeySet and the FxA API calls it makes, against the local FxA
server: no Pyramid involved."""

import base64
import json
import time

import jwt
import pytest
import requests
from fxa import errors as fxa_errors

from kinto_fxa import errors, metrics, verification
from kinto_fxa.errors import (
    EXPIRED,
    INVALID,
    ISSUER,
    MALFORMED,
    NOT_YET_VALID,
    SIGNATURE,
    TOKEN_TYPE,
    UNKNOWN_KEY,
    FxAUnavailable,
    InvalidToken,
)
from kinto_fxa.fxa_api import build_api_client, heartbeat_url
from kinto_fxa.jwks import JWKSKeySet
from kinto_fxa.testing import fxa_server as local_fxa
from kinto_fxa.verification import TokenVerifier, parse_jws
from tests._events_helpers import RecordingMetrics
from tests.helpers import wait_until


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
    with pytest.raises(InvalidToken, match="sub"):
        verifier.verify(token)


def test_jwt_shaped_garbage_is_refused_without_asking_fxa(verifier, fxa_server):
    header = b64({"alg": "RS256", "typ": "at+JWT", "kid": fxa_server.current_kid})
    for mode in (None, "5xx", "down"):
        fxa_server.fail(mode, endpoints=("/v1/verify",))
        with pytest.raises(InvalidToken) as raised:
            verifier.verify(f"{header}.!!!.sig")
        assert raised.value.reason == MALFORMED
    assert fxa_server.calls["/v1/verify"] == 0


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


@pytest.mark.parametrize(
    "answer",
    [
        {"user": 1, "client_id": "c", "scope": []},
        {"user": "a" * 32, "client_id": 7, "scope": []},
        {"user": "a" * 32, "client_id": "c", "scope": "profile"},
        {"user": "a" * 32, "client_id": "c", "scope": [1]},
        {"user": "a" * 32, "client_id": "c", "scope": [], "generation": "1"},
        {"user": "a" * 32, "client_id": "c", "scope": [], "generation": True},
        {"client_id": "c", "scope": []},
        ["not", "an", "object"],
    ],
)
def test_verify_answer_with_wrong_types_means_unavailable(answer):
    with pytest.raises(FxAUnavailable, match="wrong types"):
        verification.verified_from_answer(answer)


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
def test_non_jwts_are_not_parsed(token):
    assert parse_jws(token) is None


# Mistyped and missing claims of tokens signed with FxA's key (issue 8.1).

UID = "a" * 32


def sign(fxa_server, claims, **headers):
    """A JWT signed with FxA's current key, with exactly ``claims`` (``None`` stays null)."""
    key = fxa_server._keys[-1]
    header = {"typ": "at+JWT", "kid": key.kid, **headers}
    payload = json.dumps(claims).encode()  # PyJWT's encode() refuses some bad claims.
    return jwt.PyJWS().encode(payload, key.private_key, algorithm="RS256", headers=header)


def good_claims(**changes):
    now = int(time.time())
    claims = {
        "iss": "https://accounts.firefox.com",
        "sub": UID,
        "client_id": "kinto-client",
        "scope": "profile",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return claims


def refusal(verifier, token):
    with pytest.raises(InvalidToken) as raised:
        verifier.verify(token)
    return raised.value.reason


def test_signed_good_claims_are_accepted(verifier, fxa_server):
    assert verifier.verify(sign(fxa_server, good_claims())).uid == UID


@pytest.mark.parametrize(
    "changes",
    [
        {"scope": ["profile"]},
        {"scope": 12},
        {"scope": None},
        {"client_id": 12},
        {"client_id": None},
        {"client_id": ["kinto-client"]},
        {"sub": 12},
        {"sub": "A" * 32},
        {"sub": "a" * 31},
        {"sub": "a" * 33},
        {"sub": "a" * 32 + "\n"},
        {"sub": "g" * 32},
        {"iat": "1700000000"},
        {"iat": True},
        {"iat": None},
        {"exp": True},
        {"exp": "2000000000"},
        {"exp": None},
        {"exp": [1]},
        {"iss": 12},
        {"fxa-generation": "12"},
        {"fxa-generation": True},
    ],
)
def test_mistyped_claims_are_invalid_not_errors(verifier, fxa_server, changes):
    assert refusal(verifier, sign(fxa_server, good_claims(**changes))) == MALFORMED
    assert fxa_server.calls["/v1/verify"] == 0


@pytest.mark.parametrize("claim", ["exp", "sub", "client_id", "scope"])
def test_required_claims(verifier, fxa_server, claim):
    claims = good_claims()
    del claims[claim]
    assert refusal(verifier, sign(fxa_server, claims)) == MALFORMED
    assert fxa_server.calls["/v1/verify"] == 0


def test_a_jwt_without_exp_is_refused(verifier, fxa_server):
    token = fxa_server.mint_jwt(UID, extra_claims={"exp": None})
    assert refusal(verifier, token) == MALFORMED


def test_a_mistyped_claim_is_401_through_the_app(make_app, fxa_server):
    from tests.conftest import kinto_settings

    app = make_app(kinto_settings(fxa_server.oauth_uri))
    for changes in ({"scope": ["profile"]}, {"client_id": 12}, {"exp": None}):
        token = sign(fxa_server, good_claims(**changes))
        app.get("/v1/buckets", headers={"Authorization": f"Bearer {token}"}, status=401)


# What is not a token never reaches FxA.


@pytest.mark.parametrize(
    "payload",
    [
        "!!!",
        "bm90IGpzb24",  # "not json"
        b64(["a", "list"]),
        "a",  # Not decodable base64.
        b64(good_claims()) + "=",
    ],
)
def test_a_known_kid_with_a_garbage_payload_is_refused_locally(verifier, fxa_server, payload):
    header = b64({"alg": "RS256", "typ": "at+JWT", "kid": fxa_server.current_kid})
    assert refusal(verifier, f"{header}.{payload}.c2ln") == MALFORMED
    assert fxa_server.calls["/v1/verify"] == 0


def test_undecodable_claims_never_fall_back_to_fxa_verify(verifier, fxa_server):
    # PyJWT raises DecodeError on a non-integer nbf or an infinite exp: PyFxA would then
    # POST the token to /verify.
    for changes in ({"nbf": "soon"}, {"nbf": float("inf")}, {"exp": float("inf")}):
        claims = good_claims(**changes)
        assert refusal(verifier, sign(fxa_server, claims)) == MALFORMED
    header = b64({"alg": "RS256", "typ": "at+JWT", "kid": fxa_server.current_kid})
    _, payload, _ = sign(fxa_server, good_claims()).split(".")
    assert refusal(verifier, f"{header}.{payload}.") == SIGNATURE  # An empty signature.
    assert fxa_server.calls["/v1/verify"] == 0


def test_junk_strings_cost_no_fxa_call(verifier, fxa_server):
    junk = [f"junk-{i}-" + "x" * 8000 for i in range(200)]
    junk += ["a" * 63, "a" * 65, "g" * 64, "a.b", "a.b.c.d", b64({"x": 1}) + ".b", ""]
    junk += [b64({"kid": fxa_server.current_kid}) + ".e30.!!", "W10.e30.c2ln", "bnVsbA.e30.c2ln"]
    for token in junk:
        assert refusal(verifier, token) == MALFORMED
    assert fxa_server.calls.total() == 0


def test_opaque_tokens_are_64_hex_digits(verifier, fxa_server):
    for token in ("f" * 64, "F" * 64):
        assert refusal(verifier, token) == INVALID
    assert fxa_server.calls["/v1/verify"] == 2


# Reasons.


def test_reasons(verifier, fxa_server):
    now = int(time.time())
    assert refusal(verifier, fxa_server.mint_jwt(UID, iat=now - 7200, ttl=60)) == EXPIRED
    forged = fxa_server.mint_jwt(UID, signing_key=fxa_server.new_key())
    assert refusal(verifier, forged) == SIGNATURE
    unknown = fxa_server.mint_jwt(UID, kid="made-up", signing_key=fxa_server.new_key())
    assert refusal(verifier, unknown) == UNKNOWN_KEY
    assert refusal(verifier, fxa_server.mint_jwt(UID, typ="JWT")) == TOKEN_TYPE
    assert refusal(verifier, fxa_server.mint_jwt(UID, iat=now + 3600)) == NOT_YET_VALID
    assert refusal(verifier, sign(fxa_server, good_claims(nbf=now + 3600))) == NOT_YET_VALID
    _, payload, signature = sign(fxa_server, good_claims()).split(".")
    hs256 = b64({"alg": "HS256", "typ": "at+JWT", "kid": fxa_server.current_kid})
    assert refusal(verifier, f"{hs256}.{payload}.{signature}") == MALFORMED
    assert refusal(verifier, "f" * 64) == INVALID
    assert refusal(verifier, "not-a-token") == MALFORMED
    assert fxa_server.calls["/v1/verify"] == 1


def test_fxa_clock_slightly_ahead_or_behind(verifier, fxa_server):
    # FxA's clock and ours differ by a few seconds: a token FxA just issued must work, one
    # that expired a moment ago by FxA's clock too (within CLOCK_SKEW_SECONDS), not later.
    now = int(time.time())
    skew = verification.CLOCK_SKEW_SECONDS
    assert verifier.verify(fxa_server.mint_jwt(UID, iat=now + 5)).uid == UID
    assert verifier.verify(fxa_server.mint_jwt(UID, iat=now - 65, ttl=60)).uid == UID
    late = fxa_server.mint_jwt(UID, iat=now - 60 - skew - 5, ttl=60)
    assert refusal(verifier, late) == EXPIRED
    assert refusal(verifier, fxa_server.mint_jwt(UID, iat=now + skew + 60)) == NOT_YET_VALID


def test_signed_parts_cannot_be_mixed(verifier, fxa_server):
    header, payload, signature = sign(fxa_server, good_claims()).split(".")
    _, other_payload, other_signature = sign(fxa_server, good_claims(sub="b" * 32)).split(".")
    assert verifier.verify(f"{header}.{payload}.{signature}").uid == UID
    assert refusal(verifier, f"{header}.{other_payload}.{signature}") == SIGNATURE
    assert refusal(verifier, f"{header}.{payload}.{other_signature}") == SIGNATURE
    assert refusal(verifier, f"{header}.{payload}.") == SIGNATURE
    assert refusal(verifier, f"{header}.{payload}.{signature[:-1]}") in (SIGNATURE, MALFORMED)


def test_critical_header_extensions_are_refused(verifier, fxa_server):
    token = sign(fxa_server, good_claims(), crit=["b64"], b64=False)
    assert refusal(verifier, token) == MALFORMED


def test_reasons_are_short_constants():
    reasons = errors.REASONS
    assert set(reasons) == {
        EXPIRED,
        INVALID,
        ISSUER,
        MALFORMED,
        NOT_YET_VALID,
        SIGNATURE,
        TOKEN_TYPE,
        UNKNOWN_KEY,
    }
    assert all(r.isidentifier() and r.islower() and len(r) <= 16 for r in reasons)
    assert InvalidToken("x").reason == INVALID


# FxA's /v1/verify errors.


def test_rate_limiting_is_unavailable_not_invalid(verifier, fxa_server):
    token = fxa_server.mint_opaque(UID)
    fxa_server.fail("429", endpoints=("/v1/verify",))
    with pytest.raises(FxAUnavailable, match="429"):
        verifier.verify(token)
    fxa_server.fail(None)
    # PyFxA now backs off for Retry-After seconds, handing back the 429 without asking.
    with pytest.raises(FxAUnavailable, match="backing off"):
        verifier.verify(token)
    header = b64({"alg": "RS256", "typ": "at+JWT", "kid": fxa_server.current_kid})
    assert refusal(verifier, f"{header}.!!!.sig") == MALFORMED
    assert fxa_server.calls["/v1/verify"] == 1
    assert verifier.verify(fxa_server.mint_jwt(UID)).uid == UID  # JWTs are not blocked.


def test_rate_limiting_is_503_and_not_cached_through_the_app(make_app, fxa_server):
    from tests.conftest import kinto_settings

    app = make_app(kinto_settings(fxa_server.oauth_uri))
    token = fxa_server.mint_opaque(UID)
    fxa_server.fail("429", endpoints=("/v1/verify",))
    app.get("/v1/buckets", headers={"Authorization": f"Bearer {token}"}, status=503)
    app.app.registry.fxa_verifier.apiclient._backoff_until = 0  # Retry-After has passed.
    fxa_server.fail(None)
    app.get("/v1/", headers={"Authorization": f"Bearer {token}"}, status=200)


def test_backing_off_never_turns_a_jwt_into_a_500(make_app, fxa_server):
    from tests.conftest import kinto_settings

    app = make_app(kinto_settings(fxa_server.oauth_uri))
    fxa_server.fail("429", endpoints=("/v1/verify",))
    opaque = {"Authorization": f"Bearer {fxa_server.mint_opaque(UID)}"}
    app.get("/v1/buckets", headers=opaque, status=503)
    fxa_server.fail(None)
    app.get("/v1/buckets", headers=opaque, status=503)  # Backing off: FxA is not asked.
    app.get("/v1/", headers={"Authorization": f"Bearer {fxa_server.mint_jwt(UID)}"})
    header = b64({"alg": "RS256", "typ": "at+JWT", "kid": fxa_server.current_kid})
    for garbage in (f"{header}.!!!.sig", f"{header}.bm90IGpzb24.c2ln", f"{header}.e30.a"):
        app.get("/v1/buckets", headers={"Authorization": f"Bearer {garbage}"}, status=401)
    assert fxa_server.calls["/v1/verify"] == 1


@pytest.mark.parametrize(
    ("code", "errno", "outcome"),
    [
        (400, 108, InvalidToken),
        (401, 108, InvalidToken),
        (400, 109, FxAUnavailable),
        (400, 101, FxAUnavailable),
        (401, 111, FxAUnavailable),
        (403, 112, FxAUnavailable),
        (404, 999, FxAUnavailable),
        (429, 108, FxAUnavailable),
        (400, None, FxAUnavailable),
        (400, "108", FxAUnavailable),
        (500, 108, FxAUnavailable),
        (503, 999, FxAUnavailable),
    ],
)
def test_only_fxa_invalid_token_errors_mean_invalid(code, errno, outcome):
    body = {"code": code, "errno": errno, "error": "Bad Request", "message": "Nope"}
    error_class = fxa_errors.ClientError if code < 500 else fxa_errors.ServerError
    with pytest.raises(outcome) as raised:
        verification.classify_verify_error(error_class(body))
    if outcome is InvalidToken:
        assert raised.value.reason == INVALID


# Issuer (issue 8.2).


@pytest.mark.parametrize("iss", ["https://accounts.firefox.com", "https://accounts.firefox.com/"])
def test_the_expected_issuer_with_or_without_a_slash(verifier, fxa_server, iss):
    assert verifier.verify(sign(fxa_server, good_claims(iss=iss))).uid == UID


@pytest.mark.parametrize(
    "iss",
    [
        "https://accounts.firefox.com//",
        "https://accounts.stage.mozaws.net",
        "https://accounts.firefox.com.evil.example",
        "http://accounts.firefox.com",
        "",
    ],
)
def test_another_issuer_is_refused(verifier, fxa_server, iss):
    assert refusal(verifier, sign(fxa_server, good_claims(iss=iss))) == ISSUER


def test_a_missing_issuer_is_refused(verifier, fxa_server):
    assert refusal(verifier, fxa_server.mint_jwt(UID, extra_claims={"iss": None})) == ISSUER


def test_the_issuer_is_configurable(fxa_server):
    stage = TokenVerifier(fxa_server.oauth_uri, issuer="https://accounts.stage.mozaws.net/")
    assert refusal(stage, fxa_server.mint_jwt(UID)) == ISSUER
    token = fxa_server.mint_jwt(UID, extra_claims={"iss": "https://accounts.stage.mozaws.net"})
    assert stage.verify(token).uid == UID


# JWKS key rotation (issue 7.4).


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def recorder():
    return RecordingMetrics()


@pytest.fixture
def scheduled(fxa_server, clock, recorder):
    return TokenVerifier(
        fxa_server.oauth_uri,
        jwks_refresh_interval=60,
        jwks_max_age=300,
        metrics_=metrics.Metrics(lambda: recorder),
        clock=clock,
    )


def refreshes(recorder):
    return [
        (c["trigger"], c["outcome"]) for key, c in recorder.counts if key == metrics.JWKS_REFRESHES
    ]


def test_keys_are_refreshed_on_a_schedule_in_the_background(scheduled, fxa_server, clock):
    scheduled.verify(fxa_server.mint_jwt(UID))
    next_kid = fxa_server.publish_next_key()
    clock.now += 299
    scheduled.verify(fxa_server.mint_jwt(UID))
    assert fxa_server.calls["/v1/jwks"] == 1  # Not stale yet.
    clock.now += 1
    scheduled.verify(fxa_server.mint_jwt(UID))  # Stale: refreshed without waiting.
    wait_until(
        lambda: next_kid in scheduled.jwks.kids and not scheduled.jwks.refreshing,
        "the key refresh",
    )
    assert fxa_server.calls["/v1/jwks"] == 2
    fxa_server.sign_with(next_kid)
    assert scheduled.verify(fxa_server.mint_jwt(UID)).uid == UID
    assert fxa_server.calls["/v1/jwks"] == 2


def test_rotation_under_made_up_kids(scheduled, fxa_server, clock, recorder):
    """FxA publishes its next key, then signs with it, while an attacker sends tokens with
    made-up kids: no fresh token is refused and the JWKS fetches stay within the bound."""
    scheduled.verify(fxa_server.mint_jwt(UID))
    start = clock.now
    made_up = 0

    def attack(rounds):
        nonlocal made_up
        for _ in range(rounds):
            made_up += 1
            token = fxa_server.mint_jwt(UID, kid=f"made-up-{made_up}", signing_key=attacker)
            assert refusal(scheduled, token) == UNKNOWN_KEY

    attacker = fxa_server.new_key()
    attack(20)  # Spends this interval's refetch.
    next_kid = fxa_server.publish_next_key()
    for _ in range(40):  # 400 s, in steps of 10 s, under attack.
        clock.now += 10
        attack(5)
        assert scheduled.verify(fxa_server.mint_jwt(UID)).uid == UID
        wait_until(lambda: not scheduled.jwks.refreshing, "the key refresh")
    assert next_kid in scheduled.jwks.kids
    fxa_server.sign_with(next_kid)
    for _ in range(10):
        clock.now += 10
        attack(5)
        assert scheduled.verify(fxa_server.mint_jwt(UID)).uid == UID
        wait_until(lambda: not scheduled.jwks.refreshing, "the key refresh")
    elapsed = clock.now - start
    fetches = fxa_server.calls["/v1/jwks"]
    assert fetches <= 1 + elapsed // 60 + 1, (fetches, elapsed)  # Initial + 1 per interval.
    assert refreshes(recorder)[0] == ("initial", "ok")
    assert {trigger for trigger, _ in refreshes(recorder)} == {"initial", "unknown_kid"}


def test_a_failed_scheduled_refresh_keeps_the_keys(scheduled, fxa_server, clock, recorder):
    scheduled.verify(fxa_server.mint_jwt(UID))
    fxa_server.fail("5xx", endpoints=("/v1/jwks",))
    clock.now += 300
    scheduled.verify(fxa_server.mint_jwt(UID))
    wait_until(
        lambda: fxa_server.calls["/v1/jwks"] == 2 and not scheduled.jwks.refreshing,
        "the key refresh",
    )
    assert refreshes(recorder) == [("initial", "ok"), ("scheduled", "failed")]
    for _ in range(20):  # Still stale, but retried only once per interval.
        clock.now += 1
        assert scheduled.verify(fxa_server.mint_jwt(UID)).uid == UID
    assert fxa_server.calls["/v1/jwks"] == 2
    fxa_server.fail(None)
    clock.now += 40
    scheduled.verify(fxa_server.mint_jwt(UID))
    wait_until(
        lambda: fxa_server.calls["/v1/jwks"] == 3 and not scheduled.jwks.refreshing,
        "the key refresh",
    )
    assert refreshes(recorder)[-1] == ("scheduled", "ok")


def test_one_background_refresh_at_a_time(scheduled, fxa_server, clock):
    scheduled.verify(fxa_server.mint_jwt(UID))
    fxa_server.fail("slow", endpoints=("/v1/jwks",), delay=30)
    clock.now += 300
    for _ in range(20):
        scheduled.verify(fxa_server.mint_jwt(UID))  # Not blocked by the slow refresh.
    assert scheduled.jwks.refreshing
    wait_until(lambda: fxa_server.calls["/v1/jwks"] == 2, "the key refresh")
    fxa_server.fail(None)  # Ends the slow answer.
    wait_until(lambda: not scheduled.jwks.refreshing, "the key refresh")
    assert fxa_server.calls["/v1/jwks"] == 2


def test_an_unusable_jwks_answer_keeps_the_keys(scheduled, fxa_server, clock):
    scheduled.verify(fxa_server.mint_jwt(UID))
    kid = fxa_server.current_kid
    for body in ({"keys": []}, {"keys": [{"kid": "x", "kty": "EC"}]}, {"keys": "no"}, [1]):
        scheduled.jwks._apply(body, clock.now)
        assert scheduled.jwks.kids == [kid]


def test_unusable_keys_are_skipped(fxa_server):
    keyset = JWKSKeySet(build_api_client(fxa_server.oauth_uri, 2))
    good = fxa_server.jwks["keys"][0]
    keyset._apply({"keys": [{"kid": "ec", "kty": "EC"}, {"kty": "RSA"}, good]}, 0)
    assert keyset.kids == [good["kid"]]


def test_static_keys_are_never_refreshed(fxa_server, clock):
    static = TokenVerifier(
        fxa_server.oauth_uri, jwks=fxa_server.jwks["keys"], jwks_max_age=1, clock=clock
    )
    clock.now += 3600
    assert static.verify(fxa_server.mint_jwt(UID)).uid == UID
    assert not static.jwks.refreshing
    assert fxa_server.calls["/v1/jwks"] == 0


# Metrics.


def test_calls_to_fxa_are_timed_and_failures_counted(fxa_server, recorder):
    verifier = TokenVerifier(
        fxa_server.oauth_uri, timeout=0.3, metrics_=metrics.Metrics(lambda: recorder)
    )
    verifier.verify(fxa_server.mint_jwt(UID))
    verifier.verify(fxa_server.mint_opaque(UID))
    for mode in ("5xx", "malformed", "slow", "down"):
        fxa_server.fail(mode, delay=1.0)
        with pytest.raises(FxAUnavailable):
            verifier.verify(fxa_server.mint_opaque(UID))
    fxa_server.fail("429")
    for _ in range(2):
        with pytest.raises(FxAUnavailable):
            verifier.verify(fxa_server.mint_opaque(UID))
    fxa_server.fail(None)
    failures = [
        (c["endpoint"], c["kind"]) for k, c in recorder.counts if k == metrics.FXA_CALL_FAILURES
    ]
    assert failures == [
        ("verify", "5xx"),
        ("verify", "malformed"),
        ("verify", "timeout"),
        ("verify", "refused"),
        ("verify", "rate_limited"),
        ("verify", "rate_limited"),
    ]
    timed = [c["endpoint"] for k, c in recorder.timers if k == metrics.FXA_CALL_DURATION]
    assert timed == ["jwks", "verify", "verify", "verify", "verify", "verify", "verify"]


def test_jwks_failures_are_counted(fxa_server, recorder):
    verifier = TokenVerifier(fxa_server.oauth_uri, metrics_=metrics.Metrics(lambda: recorder))
    fxa_server.fail("malformed", endpoints=("/v1/jwks",))
    with pytest.raises(FxAUnavailable):
        verifier.verify(fxa_server.mint_jwt(UID))
    failures = [
        (c["endpoint"], c["kind"]) for k, c in recorder.counts if k == metrics.FXA_CALL_FAILURES
    ]
    assert failures == [("jwks", "malformed")]
    assert refreshes(recorder) == [("initial", "failed")]


def test_the_local_fxa_server_publishes_the_next_key_before_signing_with_it(fxa_server):
    current = fxa_server.current_kid
    next_kid = fxa_server.publish_next_key()
    assert [k["kid"] for k in fxa_server.jwks["keys"]] == [next_kid, current]
    assert jwt.get_unverified_header(fxa_server.mint_jwt(UID))["kid"] == current
    fxa_server.sign_with(next_kid)
    assert fxa_server.current_kid == next_kid
    assert {k["kid"] for k in fxa_server.jwks["keys"]} == {current, next_kid}
    assert local_fxa.RATE_LIMIT_RETRY_AFTER > 0


# FxA answers the local server does not give, through PyFxA's own client.


class CannedAdapter(requests.adapters.BaseAdapter):
    """Answers every request with ``status`` and the JSON ``body``."""

    def __init__(self, status, body):
        super().__init__()
        self.status, self.body = status, body

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = self.status
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(self.body).encode()
        response.request, response.url = request, request.url
        return response

    def close(self):
        pass


def canned(status, body):
    apiclient = build_api_client("https://fxa.example/v1", timeout=1)
    apiclient._session.mount("https://", CannedAdapter(status, body))
    return apiclient


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, {"user": 1, "client_id": "c", "scope": []}, "malformed"),
        (200, [UID], "malformed"),
        (400, ["not", "an", "object"], "malformed"),
        (400, {"code": 400, "errno": 109, "message": "Invalid parameter"}, "4xx"),
    ],
)
def test_unexpected_verify_answers_mean_unavailable(status, body, kind, recorder):
    verifier = TokenVerifier("https://fxa.example/v1", metrics_=metrics.Metrics(lambda: recorder))
    verifier.apiclient = canned(status, body)
    with pytest.raises(FxAUnavailable):
        verifier.verify("f" * 64)
    failures = [c["kind"] for k, c in recorder.counts if k == metrics.FXA_CALL_FAILURES]
    assert failures == [kind]


def test_a_verify_answer_with_an_unusable_uid_is_invalid():
    answer = {"user": "A" * 32, "client_id": "c", "scope": ["profile"]}
    with pytest.raises(InvalidToken) as raised:
        verification.verified_from_answer(answer)
    assert raised.value.reason == MALFORMED


@pytest.mark.parametrize("body", [{"keys": []}, {"keys": [{"kid": "ec", "kty": "EC"}]}, {}])
def test_a_jwks_answer_without_usable_keys(body, recorder):
    keyset = JWKSKeySet(canned(200, body), metrics_=metrics.Metrics(lambda: recorder))
    with pytest.raises(FxAUnavailable, match="no usable key"):
        keyset.keys_for("kid")
    assert refreshes(recorder) == [("initial", "failed")]
    failures = [c["kind"] for k, c in recorder.counts if k == metrics.FXA_CALL_FAILURES]
    assert failures == ["malformed"]


def test_an_undecodable_signature_is_not_sent_to_fxa(verifier, fxa_server):
    header, payload, _ = sign(fxa_server, good_claims()).split(".")
    assert refusal(verifier, f"{header}.{payload}.a") == MALFORMED  # Bad base64 padding.
    assert fxa_server.calls["/v1/verify"] == 0


def test_a_header_is_decoded_once_and_cannot_be_changed(verifier, fxa_server):
    verification._header_object.cache_clear()
    first, second = (sign(fxa_server, good_claims(jti=str(i))) for i in range(2))
    assert first.split(".")[0] == second.split(".")[0]
    assert verifier.verify(first).uid == verifier.verify(second).uid == UID
    info = verification._header_object.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    header = verification.parse_jws(first).header
    with pytest.raises(TypeError):
        header["alg"] = "none"  # type: ignore[index]
    assert verifier.verify(first).uid == UID


def test_made_up_headers_are_refused_and_do_not_fill_the_memory(verifier, fxa_server):
    verification._header_object.cache_clear()
    _, payload, signature = sign(fxa_server, good_claims()).split(".")
    headers = [b64({"alg": "RS256", "typ": "at+JWT", "kid": f"k{i}"}) for i in range(300)]
    headers += [b64({"alg": "none", "n": i}) for i in range(100)]
    for header in headers:
        assert refusal(verifier, f"{header}.{payload}.{signature}") in (UNKNOWN_KEY, MALFORMED)
    assert verification._header_object.cache_info().currsize == verification.HEADER_MEMO_SIZE


def test_a_background_refresh_that_lost_the_race_does_nothing(scheduled, fxa_server):
    scheduled.verify(fxa_server.mint_jwt(UID))
    made_up = fxa_server.mint_jwt(UID, kid="made-up", signing_key=fxa_server.new_key())
    assert refusal(scheduled, made_up) == UNKNOWN_KEY
    assert fxa_server.calls["/v1/jwks"] == 2
    scheduled.jwks._refreshing = True
    scheduled.jwks._refresh()  # Within the interval of the last fetch.
    assert fxa_server.calls["/v1/jwks"] == 2
    assert not scheduled.jwks.refreshing


def test_the_settings_reach_the_verifier(make_app, fxa_server):
    from tests.conftest import kinto_settings

    stage = "https://accounts.stage.mozaws.net"
    settings = {"fxa-oauth.issuer": stage, "fxa-oauth.jwks_max_age_seconds": 120}
    app = make_app(kinto_settings(fxa_server.oauth_uri, **settings))
    verifier = app.app.registry.fxa_verifier
    assert (verifier.issuer, verifier.jwks._max_age) == (stage, 120)
    production = fxa_server.mint_jwt(UID)
    app.get("/v1/buckets", headers={"Authorization": f"Bearer {production}"}, status=401)
    ours = fxa_server.mint_jwt(UID, extra_claims={"iss": stage + "/"})
    resp = app.get("/v1/", headers={"Authorization": f"Bearer {ours}"})
    assert resp.json["user"]["id"] == f"fxa:{UID}"
    never = make_app(kinto_settings(fxa_server.oauth_uri, **{"fxa-oauth.jwks_max_age_seconds": 0}))
    assert never.app.registry.fxa_verifier.jwks._max_age is None
