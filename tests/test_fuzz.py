"""Property-based tests (Hypothesis) over every input an attacker controls (issue 8.5).

Targets, each a Kinto WSGI app against the local FxA server (healthy throughout):

- ``Authorization`` on an authenticated endpoint: opaque- and JWT-shaped tokens, JWTs signed
  with FxA's own key carrying arbitrary claim values and types, and forged ones (``alg``
  none/HS256, another key, ``jku``/``jwk``/``x5u``, ``kid`` injection), on the memory and
  PostgreSQL backends;
- the login and token endpoints' query strings and cookies;
- the webhook's headers and body (Security Event Tokens like the above);
- SQS message bodies, through the function the consumer calls for each message.

Properties: never a 5xx while FxA is up; never a 2xx for something that must be refused;
what must be accepted is (valid tokens keep working after everything else was thrown at
the app); every error body is Kinto's JSON error format; the events change nothing but
what they name.

Each example draws an expectation together with the input: ``ACCEPT``, ``REFUSE`` or
``EITHER`` (inputs only FxA could produce whose fate the FxA protocol does not settle, e.g.
a float ``exp``): for those only the "no 5xx" and error-format properties are checked.

Example counts: see :mod:`tests.fuzz_profiles` (``make fuzz`` for the long run); the counts
actually run are printed at the end of the session.
"""

import base64
import collections
import contextlib
import hashlib
import hmac
import json
import math
import os
import string
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
import webtest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from fxa._utils import scope_matches
from hypothesis import given
from hypothesis import strategies as st

from kinto_fxa import events, sqs
from kinto_fxa.testing.fxa_server import DELETE_USER, PASSWORD_CHANGE, PROFILE_CHANGE
from kinto_fxa.uids import is_fxa_uid
from kinto_fxa.views import webhook
from tests._events_helpers import NOTES, FakeSQS, Snapshot, events_settings, seed, sqs_message
from tests.conftest import kinto_settings
from tests.fuzz_profiles import fuzz_settings


ACCEPT, REFUSE, EITHER = "accept", "refuse", "either"
CLIENT_ID = "kinto-client"
PROTECTED = "/v1/buckets"
#: Examples actually run per target (printed at the end of the session).
COUNTS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    plugins = request.config.pluginmanager
    reporter, capture = (
        plugins.get_plugin("terminalreporter"),
        plugins.get_plugin("capturemanager"),
    )
    if reporter is None or capture is None or not COUNTS:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for target, count in sorted(COUNTS.items()):
            reporter.write_line(f"fuzz examples: {target} = {count}")


def combine(*expectations: str) -> str:
    if REFUSE in expectations:
        return REFUSE
    if EITHER in expectations:
        return EITHER
    return ACCEPT


def assert_kinto_error(resp: webtest.TestResponse) -> None:
    """Kinto's JSON error format: ``{code, errno, error, message}``, ``code`` the status."""
    assert resp.content_type == "application/json", (resp.status, resp.body[:200])
    body = resp.json
    assert isinstance(body, dict) and {"code", "errno", "error", "message"} <= set(body), body
    assert body["code"] == resp.status_int, body


def assert_no_5xx(resp: webtest.TestResponse, what: Any) -> None:
    assert resp.status_int < 500, (resp.status, resp.body[:300], repr(what)[:500])
    if resp.status_int >= 400:
        assert_kinto_error(resp)


# --- Strategies --------------------------------------------------------------------------

#: What a WSGI server may put in a header: any latin-1 character but CR and LF.
HEADER_CHARS = st.characters(min_codepoint=0, max_codepoint=0xFF, exclude_characters="\r\n")
header_text = st.text(HEADER_CHARS, max_size=120)
hex_uid = st.text("0123456789abcdef", min_size=32, max_size=32)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def uid_variants(uid: str) -> st.SearchStrategy[str]:
    """Strings that look like ``uid`` and must not be taken for it (issue 8.3)."""
    return st.sampled_from(
        [uid + "-notes", uid + "\n", uid.upper(), uid[:-1], uid + "0", " " + uid, uid + "\x00"]
    )


class World:
    """What the strategies need from the local FxA server."""

    def __init__(self, fxa_server: Any) -> None:
        self.fxa = fxa_server
        current = fxa_server._keys[-1]  # The key FxA signs with (tests only).
        self.key = current.private_key
        self.kid = current.kid
        self.attacker = fxa_server.new_key()
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_jwk = fxa_server.jwks["keys"][-1]
        attacker_numbers = self.attacker.public_key().public_numbers()
        self.attacker_jwk = {
            "kty": "RSA",
            "kid": self.kid,
            "n": b64(attacker_numbers.n.to_bytes(256, "big")),
            "e": b64(attacker_numbers.e.to_bytes(3, "big")),
        }


def sign_compact(header: Any, claims: Any, signer: Callable[[bytes], bytes]) -> str:
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return signing_input + "." + b64(signer(signing_input.encode("ascii")))


def rs256(key: Any) -> Callable[[bytes], bytes]:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def draw_signature(data: st.DataObject, world: World, header: dict[str, Any]) -> tuple[Any, str]:
    """How the token is signed (may rewrite ``header``): the signer and its expectation."""
    how = data.draw(
        st.sampled_from(["fxa"] * 6 + ["none", "hs256", "attacker", "jku", "jwk", "x5u", "alg"])
    )
    if how == "fxa":
        return rs256(world.key), ACCEPT
    if how == "none":
        header["alg"] = data.draw(st.sampled_from(["none", "None", "NONE", ""]))
        return (lambda _: b""), REFUSE
    if how == "hs256":  # The public key used as an HMAC secret (algorithm confusion).
        header["alg"] = "HS256"
        secret = data.draw(st.sampled_from([world.public_pem, world.public_jwk["n"].encode()]))
        return (lambda d: hmac.new(secret, d, hashlib.sha256).digest()), REFUSE
    if how in ("jku", "x5u"):  # The attacker's key, "to be fetched" from the attacker.
        header[how] = data.draw(st.sampled_from(["https://evil.example.com/jwks", "file:///x"]))
    elif how == "jwk":  # The attacker's key, embedded.
        header["jwk"] = world.attacker_jwk
    elif how == "alg":
        header["alg"] = data.draw(
            st.sampled_from(["RS512", "PS256", "ES256", "rs256", "HS512"]) | json_values
        )
        return rs256(world.key), REFUSE
    return rs256(world.attacker), REFUSE


def draw_header(data: st.DataObject, world: World, typ: str) -> tuple[dict[str, Any], str]:
    """A JOSE header around FxA's ``typ``/``kid``, possibly mistyped: (header, expectation)."""
    header: dict[str, Any] = {"alg": "RS256", "typ": typ, "kid": world.kid}
    expectation = ACCEPT
    what = data.draw(st.sampled_from(["keep"] * 4 + ["typ", "no-typ", "kid", "no-kid", "junk"]))
    if what == "typ":
        header["typ"] = data.draw(
            st.sampled_from(["at+jwt", "application/at+JWT", "JWT", "secevent+jwt", ""])
            | json_values
        )
        # Judged by the caller (typ_expectation), who knows which types it wants.
    elif what == "no-typ":
        del header["typ"]
    elif what == "kid":  # Injection: unknown, path-like, SQL-like, huge, mistyped.
        header["kid"] = data.draw(
            st.sampled_from(["../../../etc/passwd", "' OR '1'='1", "x" * 5000, world.kid + " "])
            | st.text(max_size=30)
            | json_values
        )
        expectation = REFUSE if isinstance(header["kid"], str) else EITHER
        if header["kid"] == world.kid:
            expectation = ACCEPT
    elif what == "no-kid":
        del header["kid"]
        expectation = EITHER  # Every published key is tried: FxA's signature passes.
    elif what == "junk":
        header.update(
            data.draw(
                st.dictionaries(
                    st.sampled_from(["crit", "cty", "zip", "x"]), json_values, min_size=1
                )
            )
        )
        expectation = EITHER
    return header, expectation


def typ_expectation(header: dict[str, Any], wanted: tuple[str, ...], refused: bool) -> str:
    """``ACCEPT``/``REFUSE`` for ``header['typ']``: it must be one of ``wanted`` (after
    RFC 7515's implicit ``application/``), or, with ``refused``, must not be."""
    typ = header.get("typ", "")
    if not isinstance(typ, str):
        return REFUSE
    full = (typ if "/" in typ else "application/" + typ).lower()
    matches = full in wanted
    return ACCEPT if matches != refused else REFUSE


def draw_claim(
    data: st.DataObject, claims: dict[str, Any], name: str, judge: Callable[[Any], str]
) -> str:
    """Keep, drop or replace ``claims[name]``; ``judge(value)`` says what a value deserves
    (it is given ``KeyError`` for a dropped claim)."""
    what = data.draw(st.sampled_from(["keep"] * 5 + ["drop", "value"]))
    if what == "keep":
        return ACCEPT
    if what == "drop":
        claims.pop(name, None)
        return judge(KeyError)
    claims[name] = data.draw(json_values)
    return judge(claims[name])


def judge_sub(value: Any) -> str:
    return ACCEPT if is_fxa_uid(value) else REFUSE


def judge_client_id(value: Any) -> str:
    return ACCEPT if value == CLIENT_ID else REFUSE


def judge_scope(value: Any) -> str:
    if not isinstance(value, str):
        return REFUSE
    return EITHER if scope_matches(value.split(), ["profile"]) else REFUSE


def judge_exp(value: Any, now: float) -> str:
    if value is KeyError:
        return REFUSE  # FxA always sets exp: a token without it never expires.
    if isinstance(value, bool):
        return REFUSE
    if isinstance(value, int):
        if value > now + 120:
            return ACCEPT
        return REFUSE if value < now - 120 else EITHER
    if isinstance(value, float) and math.isfinite(value):
        return EITHER
    if isinstance(value, str):
        return EITHER  # PyJWT reads int("123"); not a type FxA would sign.
    return REFUSE


def draw_access_token(data: st.DataObject, world: World, uids: list[str]) -> tuple[str, str]:
    """A JWT access token: (token, expectation)."""
    now = time.time()
    uid = data.draw(st.sampled_from(uids) | hex_uid)
    claims: dict[str, Any] = {
        "iss": "https://accounts.firefox.com",
        "sub": uid,
        "client_id": CLIENT_ID,
        "scope": data.draw(
            st.sampled_from(["profile", "profile:email profile", "openid profile"])
        ),
        "iat": int(now),
        "exp": int(now) + 3600,
        "jti": "j" * 16,
    }
    expectations = []
    if data.draw(st.booleans()):
        claims["sub"] = data.draw(uid_variants(uid) | header_text)
        expectations.append(judge_sub(claims["sub"]))
    expectations += [
        draw_claim(data, claims, "sub", judge_sub),
        draw_claim(data, claims, "client_id", judge_client_id),
        draw_claim(data, claims, "scope", lambda v: REFUSE if v is KeyError else judge_scope(v)),
        draw_claim(data, claims, "exp", lambda v: judge_exp(v, now)),
        draw_claim(data, claims, "iat", lambda v: EITHER),
        draw_claim(data, claims, "fxa-generation", lambda v: EITHER),
        draw_claim(data, claims, "iss", lambda v: EITHER),  # Not checked: see the report.
        draw_claim(data, claims, "nbf", lambda v: EITHER),
        draw_claim(data, claims, "aud", lambda v: ACCEPT),  # FxA relies on scope, not aud.
        # PyJWT refuses a jti that is not a string.
        draw_claim(
            data,
            claims,
            "jti",
            lambda v: ACCEPT if v is KeyError or isinstance(v, str) else REFUSE,
        ),
    ]
    header, header_expectation = draw_header(data, world, "at+JWT")
    signer, signature_expectation = draw_signature(data, world, header)
    typ = typ_expectation(header, ("application/at+jwt",), refused=False)
    token = sign_compact(header, claims, signer)
    expectations += [header_expectation, signature_expectation, typ]
    mangle = data.draw(st.sampled_from(["none"] * 8 + ["flip", "truncate", "segments"]))
    if mangle == "flip":
        token = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
        expectations.append(REFUSE)
    elif mangle == "truncate":
        token = token[: data.draw(st.integers(0, len(token) - 1))]
        expectations.append(REFUSE)
    elif mangle == "segments":
        token = data.draw(st.sampled_from([token + ".", "." + token, token.replace(".", "..", 1)]))
        expectations.append(REFUSE)
    return token, combine(*expectations)


def draw_authorization(data: st.DataObject, world: World, uids: list[str]) -> tuple[str, str]:
    """An ``Authorization`` header value: (value, expectation)."""
    kind = data.draw(st.sampled_from(["jwt"] * 5 + ["opaque", "hex64", "text", "shaped"]))
    if kind == "jwt":
        token, expectation = draw_access_token(data, world, uids)
    elif kind == "opaque":
        uid = data.draw(st.sampled_from(uids) | hex_uid | header_text)
        scope = data.draw(st.sampled_from(["profile", "openid", NOTES, "profile:email"]))
        client_id = data.draw(st.sampled_from([CLIENT_ID, "other-client"]))
        token = world.fxa.mint_opaque(uid, scope=scope, client_id=client_id)
        good = is_fxa_uid(uid) and scope == "profile" and client_id == CLIENT_ID
        expectation = ACCEPT if good else REFUSE
        if good and data.draw(st.booleans()):
            token, expectation = (
                data.draw(st.sampled_from([token.upper(), token[:-1], token + "0"])),
                REFUSE,
            )
    elif kind == "hex64":  # Opaque-shaped, unknown to FxA.
        token, expectation = (
            data.draw(st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)),
            REFUSE,
        )
    elif kind == "shaped":  # Three base64url segments of anything.
        parts = data.draw(st.lists(st.binary(max_size=60), min_size=3, max_size=3))
        token, expectation = ".".join(b64(p) for p in parts), REFUSE
    else:
        token, expectation = (
            data.draw(header_text | st.text(HEADER_CHARS, min_size=8000, max_size=9000)),
            REFUSE,
        )
    scheme = data.draw(
        st.sampled_from(
            ["Bearer "] * 6
            + ["bearer ", "BEARER ", "Bearer  ", "Basic ", "", "Bearer\t", "Token "]
        )
    )
    if scheme.strip().lower() != "bearer" or "\t" in scheme:
        expectation = REFUSE
    value = scheme + token
    if data.draw(st.integers(0, 9)) == 0:
        value = data.draw(header_text)  # Anything at all.
        expectation = REFUSE
    return value, expectation


# --- Authorization header ----------------------------------------------------------------


@pytest.fixture
def token_app(make_app, fxa_server, backend):
    settings = kinto_settings(
        fxa_server.oauth_uri,
        **backend,
        **{
            "multiauth.policies": "fxa",
            "fxa-oauth.allowed_client_ids": CLIENT_ID,
            "fxa-oauth.request_timeout_seconds": 5,
        },
    )
    return make_app(settings)


def test_authorization_header(token_app, fxa_server, backend):
    target = "authorization-" + (
        "memory" if "memory" in backend["storage_backend"] else "postgresql"
    )
    world = World(fxa_server)
    uids = [fxa_server.uid_for(f"user{i}@example.com") for i in range(3)]
    kept = {
        "jwt": "Bearer " + fxa_server.mint_jwt(uids[0]),
        "opaque": "Bearer " + fxa_server.mint_opaque(uids[1]),
    }
    for value in kept.values():
        token_app.get(PROTECTED, headers={"Authorization": value}, status=200)

    @fuzz_settings(300 if target.endswith("memory") else 120)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        COUNTS[target] += 1
        value, expectation = draw_authorization(data, world, uids)
        resp = token_app.get(PROTECTED, headers={"Authorization": value}, expect_errors=True)
        assert_no_5xx(resp, value)
        if expectation == ACCEPT:
            assert resp.status_int == 200, (resp.status, resp.body[:300], value[:300])
        elif expectation == REFUSE:
            assert resp.status_int == 401, (resp.status, resp.body[:300], value[:300])
        else:
            assert resp.status_int in (200, 401), resp.status
        if resp.status_int == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")
        # Valid tokens keep working, whatever came before.
        which = data.draw(st.sampled_from(sorted(kept)))
        token_app.get(PROTECTED, headers={"Authorization": kept[which]}, status=200)

    run()

    # Never-seen valid tokens too (nothing poisoned the caches or the key set).
    for value in (
        "Bearer " + fxa_server.mint_jwt(uids[2]),
        "Bearer " + fxa_server.mint_opaque(uids[2]),
    ):
        token_app.get(PROTECTED, headers={"Authorization": value}, status=200)


# --- Login and token endpoints -----------------------------------------------------------

LOGIN_PATH = "/v1/fxa-oauth/login"
TOKEN_PATH = "/v1/fxa-oauth/token"
TOKEN_URL = "http://localhost/v1/fxa-oauth/token"
GOOD_REDIRECTS = [
    "https://app.example.com/#",
    "http://localhost:3000/#/auth/x/",
    "https://APP.example.com:443/p?q=1#",
]
#: Pieces of redirect URLs, tricky ones included.
SCHEMES = ["https://", "http://", "HTTPS://", "javascript:", "//", "https:", "data:", "", "ftp://"]
USERINFO = ["", "", "", "user@", "app.example.com@", ":@", "user:pw@"]
HOSTS = [
    "app.example.com",
    "app.example.com",
    "localhost",
    "APP.EXAMPLE.COM",
    "app.example.com.",
    "evil.com",
    "app.example.com.evil.com",
    "evilapp.example.com",
    "a.app.example.com",
    "app.example.com\\@evil.com",
    "app.exаmple.com",  # noqa: RUF001  (a Cyrillic a)
    "127.0.0.1",
    "[::1]",
    "app%2eexample.com",
    "",
]
PORTS = ["", "", ":3000", ":443", ":80", ":99999", ":abc", ":", ":0", ":3000 "]
PATHS = ["/", "", "/path", "//evil.com", "/\\evil.com", "/%2e%2e/", "/%zz", "/\x00", "/ é"]
FRAGMENTS = ["#", "#", "#/auth/", "", "#x#y", "?q=1#", "#%23", "#\n"]

redirect_urls = (
    st.sampled_from(GOOD_REDIRECTS)
    | st.tuples(
        *(st.sampled_from(p) for p in (SCHEMES, USERINFO, HOSTS, PORTS, PATHS, FRAGMENTS))
    ).map("".join)
    | st.text(max_size=60)
)
QUERY_NAMES = [
    "redirect",
    "client",
    "action",
    "email",
    "code",
    "state",
    "scope",
    "redirect_uri",
    "x",
]


def draw_query(
    data: st.DataObject, values: dict[str, st.SearchStrategy[str]]
) -> tuple[str, list[tuple[str, str]]]:
    """A query string: the ``(name, value)`` pairs (``values`` maps names to strategies)
    encoded by urlencode, or raw: percent-encoded bytes (invalid UTF-8 too) or junk."""
    names = st.sampled_from(list(values) + QUERY_NAMES) | st.text(max_size=8)
    pairs = data.draw(
        st.lists(
            names.flatmap(lambda n: st.tuples(st.just(n), values.get(n, st.text(max_size=40)))),
            max_size=6,
        )
    )
    how = data.draw(st.sampled_from(["urlencode"] * 6 + ["bytes", "junk"]))
    if how == "urlencode":
        return urlencode(pairs), pairs
    if how == "bytes":
        raw = data.draw(
            st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=30)), max_size=4)
        )
        return "&".join(quote(k, safe="") + "=" + quote(v, safe="") for k, v in raw), []
    return data.draw(
        st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
            max_size=80,
        )
    ), []


def draw_cookie(data: st.DataObject, valid: str | None = None) -> str | None:
    """A ``Cookie`` header (or none): ``valid`` (the state cookie's value) kept, altered or
    drowned in junk."""
    what = data.draw(st.sampled_from(["valid"] * 4 + ["none", "junk", "other", "two", "latin1"]))
    if what == "valid" and valid is not None:
        return f"fxa-oauth-state={valid}"
    if what == "none":
        return None
    if what == "other" and valid is not None:
        altered = data.draw(st.sampled_from([valid + "x", valid[:-1], valid.upper(), ""]))
        return f"fxa-oauth-state={altered}"
    if what == "two" and valid is not None:
        other = data.draw(st.text(HEADER_CHARS, max_size=10))
        return f"fxa-oauth-state={other}; fxa-oauth-state={valid}"
    if what == "latin1":  # Not UTF-8 once webob encodes the header back to bytes.
        return "fxa-oauth-state=" + data.draw(
            st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=10)
        )
    return data.draw(header_text)


def looks_authorized(redirect: str) -> bool:
    """What a redirect the login accepted must be (see kinto_fxa.redirects): an RFC 3986
    http(s) URL with exactly one ``#``, no userinfo, on an authorized host and port."""
    if not redirect.isascii() or any(c.isspace() or c in '\\"<>{}|^`' for c in redirect):
        return False
    if redirect.count("#") != 1:
        return False
    try:
        parts = urlsplit(redirect)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return False
    if not redirect.lower().startswith(parts.scheme + "://"):
        return False
    default = {"http": 80, "https": 443}[parts.scheme]
    if parts.hostname == "app.example.com":
        return port in (None, default)
    return parts.hostname == "localhost" and port == 3000


@pytest.fixture
def relier_app(make_app, fxa_server):
    fxa_server.register_client("relier-client", "relier-secret", TOKEN_URL)
    fxa_server.register_client("relier-public", None, TOKEN_URL)
    settings = kinto_settings(
        fxa_server.oauth_uri,
        **{
            "multiauth.policies": "fxa",
            "fxa-oauth.client_id": "relier-client",
            "fxa-oauth.client_secret": "relier-secret",
            "fxa-oauth.redirect_uri": TOKEN_URL,
            "fxa-oauth.webapp.authorized_domains": "app.example.com localhost:3000",
            "fxa-oauth.clients.notes.client_id": "relier-public",
            "fxa-oauth.clients.notes.required_scope": NOTES,
            "fxa-oauth.clients.notes.redirect_uri": TOKEN_URL,
            "fxa-oauth.accept_top_level_tokens": "true",
            "fxa-oauth.request_timeout_seconds": 5,
        },
    )
    return make_app(settings)


LOGIN_VALUES = {
    "redirect": redirect_urls,
    "client": st.sampled_from(["notes", "default", "Notes", "notes\n", "../x", ""])
    | st.text(max_size=10),
    "action": st.sampled_from(["signin", "signup", "email", "force_auth", "SIGNIN", ""])
    | st.text(max_size=10),
    "email": st.sampled_from(
        ["alice@example.com", "a@b", "x" * 300 + "@example.com", "@", "a@b\x00"]
    )
    | st.emails()
    | st.text(max_size=20),
}


def state_cookie(resp: webtest.TestResponse) -> str:
    for header in resp.headers.getall("Set-Cookie"):
        name, _, rest = header.partition("=")
        if name == "fxa-oauth-state":
            return rest.split(";", 1)[0]
    raise AssertionError("No state cookie")


def test_login_query_and_cookies(relier_app, fxa_server):
    @fuzz_settings(300)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        COUNTS["login"] += 1
        query, pairs = draw_query(data, LOGIN_VALUES)
        cookie = draw_cookie(data, "x" * 43)
        relier_app.reset()
        headers = {"Cookie": cookie} if cookie is not None else {}
        resp = relier_app.get(LOGIN_PATH + "?" + query, headers=headers, expect_errors=True)
        assert_no_5xx(resp, (query, cookie))
        assert resp.status_int in (302, 400), (resp.status, resp.body[:300])
        redirects = [v for k, v in pairs if k == "redirect"]
        if resp.status_int == 302:
            assert redirects and looks_authorized(redirects[-1]), (query, resp.headers["Location"])
            fxa = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))
            assert resp.headers["Location"].startswith(fxa_server.oauth_uri + "/authorization?")
            assert fxa["client_id"] in ("relier-client", "relier-public")
            assert fxa["code_challenge_method"] == "S256" and fxa["state"]
            assert state_cookie(resp)
        names = [k for k, _ in pairs]
        if (
            pairs
            and names.count("redirect") == 1
            and set(names) == {"redirect"}
            and redirects[0] in GOOD_REDIRECTS
        ):
            assert resp.status_int == 302, resp.body  # A plain good login always works.

    run()
    relier_app.reset()
    relier_app.get(LOGIN_PATH, params={"redirect": GOOD_REDIRECTS[0]}, status=302)


def open_sockets() -> int:
    """Sockets this process holds (Linux), to catch connections to FxA left open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # Closed meanwhile.
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux only")
def test_refused_codes_leave_no_connection_to_fxa_open(relier_app):
    """Found by the token target in make fuzz: each code FxA refused left a connection to
    FxA open (urllib3 2.x's Session.close() leaves pooled connections to the garbage
    collector), until the local FxA stopped accepting connections."""
    before = open_sockets()
    for _ in range(30):
        relier_app.reset()
        login = relier_app.get(LOGIN_PATH, params={"redirect": GOOD_REDIRECTS[0]}, status=302)
        state = dict(parse_qsl(urlsplit(login.headers["Location"]).query))["state"]
        relier_app.reset()
        query = urlencode({"state": state, "code": "0" * 64})
        headers = {"Cookie": f"fxa-oauth-state={state_cookie(login)}"}
        relier_app.get(TOKEN_PATH + "?" + query, headers=headers, status=400)
    assert open_sockets() - before < 10


TOKEN_VALUES = {
    "code": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=70)
    | st.text(max_size=20),
    "state": st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=60)
    | st.text(max_size=20),
}


def test_token_query_and_cookies(relier_app, fxa_server):
    @fuzz_settings(200)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        COUNTS["token"] += 1
        scenario = data.draw(st.sampled_from(["junk", "login", "login", "signed-in", "signed-in"]))
        legit = maybe = False
        redirect = data.draw(st.sampled_from(GOOD_REDIRECTS))
        if scenario == "junk":
            query, _ = draw_query(data, TOKEN_VALUES)
            cookie = draw_cookie(data)
        else:
            relier_app.reset()
            client = data.draw(st.sampled_from(["default", "notes"]))
            login = relier_app.get(
                LOGIN_PATH, params={"redirect": redirect, "client": client}, status=302
            )
            form = dict(parse_qsl(urlsplit(login.headers["Location"]).query))
            valid_cookie = state_cookie(login)
            state, code = form["state"], "0" * 64
            if scenario == "signed-in":
                callback = fxa_server.authorize(
                    form["client_id"],
                    form["state"],
                    form["scope"],
                    "alice@example.com",
                    redirect_uri=form["redirect_uri"],
                    code_challenge=form["code_challenge"],
                )
                code = dict(parse_qsl(urlsplit(callback).query))["code"]
            pieces = {"state": state, "code": code}
            kept = True
            for name in ("state", "code"):
                if data.draw(st.integers(0, 3)) == 0:
                    pieces[name] = data.draw(
                        TOKEN_VALUES[name]
                        | st.sampled_from([pieces[name] + "x", pieces[name][:-1]])
                    )
                    kept &= pieces[name] == {"state": state, "code": code}[name]
            pairs = list(pieces.items())
            if data.draw(st.integers(0, 3)) == 0:
                pairs.append(
                    (
                        data.draw(st.sampled_from(["x", "redirect", "scope"])),
                        data.draw(st.text(max_size=10)),
                    )
                )
            query = urlencode(pairs)
            cookie = draw_cookie(data, valid_cookie)
            legit = (
                scenario == "signed-in" and kept and cookie == f"fxa-oauth-state={valid_cookie}"
            )
            # The right cookie next to another of the same name: the browser holds it.
            maybe = scenario == "signed-in" and kept and valid_cookie in (cookie or "")
        relier_app.reset()
        headers = {"Cookie": cookie} if cookie is not None else {}
        resp = relier_app.get(TOKEN_PATH + "?" + query, headers=headers, expect_errors=True)
        assert_no_5xx(resp, (query, cookie))
        if legit:
            assert resp.status_int == 302, (resp.status, resp.body[:300])
            location = resp.headers["Location"]
            assert location.startswith(redirect)
            token = location[len(redirect) :]
            relier_app.get(PROTECTED, headers={"Authorization": "Bearer " + token}, status=200)
        elif not (maybe and resp.status_int == 302):
            assert 400 <= resp.status_int < 500, (resp.status, query, cookie)

    run()


# --- Webhook ---------------------------------------------------------------------------

WEBHOOK_PATH = "/v1/fxa-oauth/events"
OUR_CLIENTS = ("kinto-client", "notes-client")
UNAUTHORIZED, BAD, OK = 401, 400, 200


def verdict(*parts: Any) -> set[int]:
    """The statuses a webhook request may get, from what each part of it deserves
    (``OK``, ``BAD`` (400), ``UNAUTHORIZED`` or ``EITHER``): the signature, issuer,
    audience and age are checked before the events are read."""
    if UNAUTHORIZED in parts:
        return {UNAUTHORIZED}
    if EITHER in parts:
        return {OK, BAD, UNAUTHORIZED}
    if BAD in parts:
        return {BAD}
    return {OK}


def positive_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return 0 < value < events.MAX_TIMESTAMP_MS


def judge_iat(value: Any, now: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return UNAUTHORIZED
    age = now - value
    oldest, newest = webhook.MAX_AGE_SECONDS + webhook.LEEWAY_SECONDS, -webhook.LEEWAY_SECONDS
    if oldest - 10 > age > newest + 10:
        return OK
    if age > oldest + 10 or age < newest - 10:
        return UNAUTHORIZED
    return EITHER


event_payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=3)


def draw_events(data: st.DataObject) -> tuple[Any, Any]:
    what = data.draw(st.sampled_from(["events"] * 6 + ["empty", "junk"]))
    if what == "empty":
        return {}, BAD
    if what == "junk":
        value = data.draw(json_values)
        return value, (BAD if not (isinstance(value, dict) and value) else EITHER)
    found: dict[str, Any] = {}
    verdicts: dict[str, int] = {}  # The last payload of a URI is the one kept.
    for _ in range(data.draw(st.integers(1, 3))):
        uri = data.draw(
            st.sampled_from([DELETE_USER, PASSWORD_CHANGE, PROFILE_CHANGE]) | st.text(max_size=30)
        )
        if uri == PASSWORD_CHANGE:
            change = data.draw(st.integers(1, 2**41) | EXTREME_NUMBERS | json_values)
            payload: Any = {"changeTime": change}
            good = positive_number(change)
        else:
            payload = data.draw(st.just({}) | event_payloads | json_values)
            good = isinstance(payload, dict)
        found[uri] = payload
        verdicts[uri] = OK if good else BAD
    return found, (BAD if BAD in verdicts.values() else OK)


def draw_set(data: st.DataObject, world: World, victim: str) -> tuple[str, set[int]]:
    """A Security Event Token: (token, statuses it may get)."""
    now = time.time()
    uid = data.draw(hex_uid.filter(lambda u: u != victim))
    claims: dict[str, Any] = {
        "iss": "https://accounts.firefox.com/",
        "sub": uid,
        "aud": data.draw(st.sampled_from(OUR_CLIENTS)),
        "iat": int(now) - data.draw(st.integers(0, 3600)),
        "jti": "set",
    }
    claims["events"], events_verdict = draw_events(data)
    if claims["events"] is None:
        events_verdict = UNAUTHORIZED
    parts: list[Any] = [events_verdict]

    what = data.draw(st.sampled_from(["keep"] * 3 + ["victim", "sub", "no-sub"]))
    if what == "victim":  # Issue 8.3: another user id of the victim, or almost the victim.
        claims["sub"] = data.draw(uid_variants(victim))
        parts.append(BAD)
    elif what == "sub":
        claims["sub"] = data.draw(json_values | header_text)
        assert claims["sub"] != victim
        if not isinstance(claims["sub"], str):  # PyJWT: null is missing, a non-string bad.
            parts.append(UNAUTHORIZED)
        else:
            parts.append(OK if is_fxa_uid(claims["sub"]) else BAD)
    elif what == "no-sub":
        del claims["sub"]
        parts.append(UNAUTHORIZED)

    def judge_iss(value: Any) -> Any:
        if value is KeyError or value is None:
            return UNAUTHORIZED
        ok = isinstance(value, str) and value.removesuffix("/") == "https://accounts.firefox.com"
        return OK if ok else UNAUTHORIZED

    def judge_aud(value: Any) -> Any:
        if value is KeyError or value is None:
            return UNAUTHORIZED
        values = [value] if isinstance(value, str) else value
        ok = isinstance(values, list) and any(
            isinstance(v, str) and v in OUR_CLIENTS for v in values
        )
        return OK if ok else UNAUTHORIZED

    verdicts = {ACCEPT: OK, REFUSE: UNAUTHORIZED, EITHER: EITHER}
    for name, judge in (
        ("iss", judge_iss),
        ("aud", judge_aud),
        ("iat", lambda v: UNAUTHORIZED if v is KeyError else judge_iat(v, now)),
        ("exp", lambda v: EITHER),
        ("nbf", lambda v: EITHER),
        ("jti", lambda v: OK if v is KeyError or isinstance(v, str) else UNAUTHORIZED),
    ):
        what = data.draw(st.sampled_from(["keep"] * 5 + ["drop", "value"]))
        if what == "drop":
            claims.pop(name, None)
            parts.append(judge(KeyError))
        elif what == "value":
            claims[name] = data.draw(
                (
                    # An offset from now: strategies must not depend on the clock.
                    st.integers(-3 * 86400, 7200).map(lambda offset: ("offset", offset))
                    if name in ("iat", "exp", "nbf")
                    else st.nothing()
                )
                | (
                    st.sampled_from((*OUR_CLIENTS, "kinto", "KINTO-CLIENT")).flatmap(
                        lambda c: st.sampled_from([c, [c], ["x", c]])
                    )
                    if name == "aud"
                    else st.nothing()
                )
                | st.sampled_from(
                    [
                        "https://accounts.firefox.com",
                        "https://accounts.firefox.com//",
                        "https://evil.com/",
                    ]
                )
                | json_values
            )
            if isinstance(claims[name], tuple):
                claims[name] = int(now) + claims[name][1]
            parts.append(judge(claims[name]))

    header, header_expectation = draw_header(data, world, "secevent+jwt")
    signer, signature_expectation = draw_signature(data, world, header)
    typ = str(header.get("typ", "")).lower()
    parts += [
        verdicts[header_expectation],
        verdicts[signature_expectation],
        UNAUTHORIZED if typ in webhook.ACCESS_TOKEN_TYPES else OK,
    ]
    token = sign_compact(header, claims, signer)
    if data.draw(st.integers(0, 9)) == 0:
        token = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
        parts.append(UNAUTHORIZED)
    return token, verdict(*parts)


@pytest.fixture
def events_app(make_app, fxa_server):
    return make_app(
        events_settings(fxa_server.oauth_uri, {}, **{"fxa-oauth.webhook.enabled": "true"})
    )


def test_webhook_headers_and_body(events_app, fxa_server):
    world = World(fxa_server)
    seeded = seed(events_app, fxa_server)
    registry = events_app.app.registry
    before = Snapshot.of(registry)

    @fuzz_settings(300)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        COUNTS["webhook"] += 1
        token, allowed = draw_set(data, world, seeded.alice)
        scheme = data.draw(
            st.sampled_from(["Bearer "] * 8 + ["bearer ", "Basic ", "", "Bearer  "])
        )
        headers = {"Authorization": scheme + token}
        if scheme.strip().lower() != "bearer":
            allowed = {UNAUTHORIZED}
        if data.draw(st.integers(0, 9)) == 0:
            headers["Authorization"] = data.draw(header_text)
            allowed = {UNAUTHORIZED}
        content_type = data.draw(
            st.sampled_from(
                [None, "application/json", "text/plain", "multipart/form-data; boundary=x"]
            )
            | header_text
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
        body = data.draw(st.binary(max_size=200) | st.just(b""))
        resp = events_app.post(WEBHOOK_PATH, params=body, headers=headers, expect_errors=True)
        assert_no_5xx(resp, headers)
        assert resp.status_int in allowed, (resp.status, resp.body[:300], allowed)
        if resp.status_int == 200:
            assert set(resp.json["events"].values()) <= {"deleted", "revoked", "ignored"}
        # Only the account named is touched: the victim's data is all there.
        assert Snapshot.of(registry) == before

    run()

    events_app.get(PROTECTED, headers=seeded.bob_headers, status=200)
    token = fxa_server.mint_set(seeded.alice, {DELETE_USER: {}})
    events_app.post(WEBHOOK_PATH, headers={"Authorization": "Bearer " + token}, status=200)
    assert Snapshot.of(registry) == before.without_alice(seeded)


# --- SQS messages --------------------------------------------------------------------------


def json_object_like(text: str) -> bool:
    """Whether ``text`` could be read as an event (the junk strategies rarely make one)."""
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and ("Message" in value or "event" in value)


def expected_sqs_status(message: Any) -> str:
    """What handling ``message`` (the event itself) must give, per FxA's notifications."""
    if not isinstance(message, dict):
        return "invalid"
    name = message.get("event")
    if not isinstance(name, str):
        return "invalid"
    action = events.SQS_ACTIONS.get(name)
    if action is None and name.startswith("device:"):
        action = events.Action.IGNORE
    if action is None:
        return "invalid"
    if action is events.Action.IGNORE:
        return "ignored"
    if not is_fxa_uid(message.get("uid")):
        return "invalid"
    if action is events.Action.DELETE:
        return "deleted"
    for key, scale in (("generation", 1), ("ts", 1000), ("timestamp", 1)):
        if message.get(key) is not None:
            value = message[key]
            ok = positive_number(value) and positive_number(value * scale)
            return "revoked" if ok else "invalid"
    return "invalid"


EXTREME_NUMBERS = st.sampled_from(
    [2**53, 2**53 + 1, 2**63, 2**80, 1e308, 1e20, 9e15, -1, 0, 0.0, 0.4, -0.0, True]
)


def draw_sqs_body(data: st.DataObject, victim: str) -> tuple[Any, str]:
    """An SQS message body: (body, expected status, or ``EITHER``)."""
    kind = data.draw(st.sampled_from(["event"] * 6 + ["text", "json", "bytes"]))
    if kind == "text":
        text = data.draw(st.text(max_size=200))
        return text, (EITHER if json_object_like(text) else "invalid")
    if kind == "json":
        text = json.dumps(data.draw(json_values))
        return text, (EITHER if json_object_like(text) else "invalid")
    if kind == "bytes":
        raw = data.draw(st.binary(max_size=200))
        text = raw.decode("utf-8", errors="replace")
        return raw, (EITHER if json_object_like(text) else "invalid")

    message: dict[str, Any] = {}
    pick = data.draw(st.integers(0, 19))
    if pick < 8:  # What needs a valid uid (and time).
        message["event"] = data.draw(st.sampled_from(["delete", "passwordChange", "reset"]))
    elif pick < 15:
        others = [*events.SQS_ACTIONS, "device:create", "device:x"]
        message["event"] = data.draw(st.sampled_from(others))
    elif pick < 18:
        message["event"] = data.draw(st.sampled_from(["Delete", "delete ", "nope", "device"]))
    elif pick < 19:
        message["event"] = data.draw(json_values)
    uid = data.draw(
        st.sampled_from(["valid"] * 4 + ["victim", "junk", "none"]).flatmap(
            lambda how: {
                "valid": hex_uid.filter(lambda u: u != victim),
                "victim": uid_variants(victim),
                "junk": json_values | header_text,
                "none": st.just(KeyError),
            }[how]
        )
    )
    if uid is not KeyError:
        message["uid"] = uid
    for key, valid in (
        ("generation", st.integers(1, 2**41)),
        ("ts", st.floats(1, 2e9)),
        ("timestamp", st.integers(1, 2**41)),
    ):
        how = data.draw(st.sampled_from(["drop", "drop", "valid", "junk"]))
        if how != "drop":
            junk = EXTREME_NUMBERS | st.floats() | st.integers() | json_values
            message[key] = data.draw(valid if how == "valid" else junk)
    message.update(
        data.draw(
            st.dictionaries(
                st.sampled_from(["iss", "email", "x", "isActive"]), json_values, max_size=2
            )
        )
    )
    expected = expected_sqs_status(message)
    wrap = data.draw(st.sampled_from(["sns"] * 4 + ["raw", "bad-sns", "bytes"]))
    if wrap == "raw":
        if "event" not in message and "Message" not in message:
            expected = "invalid"
        body: Any = json.dumps(message)
    elif wrap == "bad-sns":
        value = data.draw(json_values)
        body = json.dumps({"Type": "Notification", "Message": value})
        expected = EITHER if isinstance(value, str) else "invalid"
    else:
        body = json.dumps({"Type": "Notification", "Message": json.dumps(message)})
        if wrap == "bytes":
            body = body.encode()
    return body, expected


def test_sqs_message_bodies(make_app, fxa_server):
    app = make_app(events_settings(fxa_server.oauth_uri, {}))
    seeded = seed(app, fxa_server)
    registry = app.app.registry
    before = Snapshot.of(registry)
    client = FakeSQS()
    consumer = sqs.Consumer(registry, client, "https://sqs.test/queue", wait_time=0)

    @fuzz_settings(500)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        COUNTS["sqs"] += 1
        body, expected = draw_sqs_body(data, seeded.alice)
        handle = f"h{COUNTS['sqs']}"
        status = consumer.process(sqs_message(body, handle))
        if expected == EITHER:
            assert status in ("deleted", "revoked", "ignored", "invalid"), status
        else:
            assert status == expected, (status, body)
        assert client.deleted[-1] == handle  # Handled or junk: never left to come back.
        assert Snapshot.of(registry) == before

    run()

    app.get(PROTECTED, headers=seeded.alice_headers, status=200)
    body = json.dumps({"Message": json.dumps({"event": "delete", "uid": seeded.alice})})
    assert consumer.process(sqs_message(body)) == "deleted"
    assert Snapshot.of(registry) == before.without_alice(seeded)
