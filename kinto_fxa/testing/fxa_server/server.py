"""A local Firefox Accounts OAuth server, for tests and development.

:class:`LocalFxAServer` is a real HTTP server, bound to 127.0.0.1 by default, that answers
the way FxA's OAuth server (``https://oauth.accounts.firefox.com/v1``) answers relying
services:

========================================  ==================================================
``GET  /v1/jwks``                         the published public keys (``{"keys": [...]}``)
``POST /v1/verify {"token"}``             ``{user, client_id, scope, generation?, ...}``
``POST /v1/token``                        authorization code (+ secret or PKCE) → token
``GET  /v1/authorization?...``            a minimal sign-in page (only asks for an email)
``POST /v1/authorization``                signs in: 302 to ``redirect_uri?code=&state=``
``POST /v1/destroy {"token"}``            destroys a token (JWTs: only ``/verify`` cares)
``GET  /v1/client/<client_id>``           public metadata of a registered client
``GET  /__heartbeat__``, ``/__lbheartbeat__``  ``{}``
``POST /__test__/token``                  development helper, see below
========================================  ==================================================

Errors use FxA's shape: ``{"code": 400, "errno": 108, "error": "Bad Request", "message":
"Invalid token"}``. There are no passwords: signing in only takes an email address, whose
account id is :meth:`LocalFxAServer.uid_for` (a hash of the email).

Tokens are minted directly from Python (:meth:`~LocalFxAServer.mint_jwt`,
:meth:`~LocalFxAServer.mint_opaque`, :meth:`~LocalFxAServer.mint_set`) or, for a developer
with curl, through ``POST /__test__/token`` — an endpoint that **exists only in this local
server**, never in FxA::

    curl -s -X POST http://127.0.0.1:PORT/__test__/token \\
         -H 'Content-Type: application/json' -d '{"email": "alice@example.com"}'

:meth:`~LocalFxAServer.fail` makes the server misbehave (refuse connections, answer
slowly, answer 5xx or non-JSON) so that relying services can test their failure handling;
:attr:`~LocalFxAServer.calls` counts the requests received per path.

It is served by waitress in a background thread: waitress sets ``TCP_NODELAY`` on the
connections it accepts, so keep-alive requests do not pay the ~40 ms of Nagle's algorithm
meeting delayed ACKs that :mod:`http.server` would add to every response.

The server never logs tokens, codes or secrets.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import html
import json
import re
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from waitress import wasyncore
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher
from waitress.trigger import trigger as WaitressTrigger
from webob import Request, Response


__all__ = [
    "DEFAULT_CLIENTS",
    "DELETE_USER",
    "FAIL_MODES",
    "PASSWORD_CHANGE",
    "PROFILE_CHANGE",
    "SUBSCRIPTION_STATE_CHANGE",
    "LocalFxAError",
    "LocalFxAServer",
    "serve",
]

#: Security Event Token event URIs, as sent by FxA's event broker.
EVENT_URI_PREFIX = "https://schemas.accounts.firefox.com/event/"
DELETE_USER = EVENT_URI_PREFIX + "delete-user"
PASSWORD_CHANGE = EVENT_URI_PREFIX + "password-change"
PROFILE_CHANGE = EVENT_URI_PREFIX + "profile-change"
SUBSCRIPTION_STATE_CHANGE = EVENT_URI_PREFIX + "subscription-state-change"

#: Accepted values of :meth:`LocalFxAServer.fail`'s ``mode``.
FAIL_MODES = (None, "down", "slow", "5xx", "500", "malformed", "429")
#: ``Retry-After`` (s) of the 429 answers of ``fail("429")``.
RATE_LIMIT_RETRY_AFTER = 30

#: Clients registered by :func:`serve` when none are given: (client_id, secret, redirect_uri).
DEFAULT_CLIENTS: tuple[tuple[str, str | None, str | None], ...] = (
    ("kinto-client", "kinto-secret", None),
    ("kinto-public", None, None),
)

DEFAULT_EMAIL = "alice@example.com"
DEFAULT_TOKEN_TTL = 3600
MAX_TOKEN_TTL = 14 * 24 * 3600
DEFAULT_CODE_TTL = 600

# FxA OAuth errnos.
ERRNO_UNKNOWN_CLIENT = 101
ERRNO_INCORRECT_SECRET = 102
ERRNO_INCORRECT_REDIRECT = 103
ERRNO_UNKNOWN_CODE = 105
ERRNO_MISMATCH_CODE = 106
ERRNO_EXPIRED_CODE = 107
ERRNO_INVALID_TOKEN = 108
ERRNO_INVALID_PARAMETER = 109
ERRNO_INVALID_SCOPES = 114
ERRNO_UNEXPECTED = 999

_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_HEX32 = re.compile(r"[0-9a-f]{32}")
# RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 7636: the verifier is 43 to 128 unreserved characters; an S256 challenge is
# the unpadded base64url encoding of 32 bytes.
_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_ACTIONS = ("signin", "signup", "email", "force_auth")


class LocalFxAError(Exception):
    """An FxA-shaped error answered by the local server to one of its Python helpers."""

    def __init__(self, code: int, errno: int, message: str) -> None:
        super().__init__(f"{code} errno {errno}: {message}")
        self.code = code
        self.errno = errno
        self.message = message


class _FxAError(Exception):
    """Raised by request handlers; turned into an FxA error response."""

    def __init__(self, code: int, errno: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.errno = errno
        self.message = message


@dataclass
class _Client:
    client_id: str
    secret: str | None
    redirect_uri: str | None
    name: str
    jwt_tokens: bool

    @property
    def public(self) -> bool:
        return self.secret is None


@dataclass
class _Code:
    client_id: str
    uid: str
    scope: str
    code_challenge: str | None
    auth_at: int
    expires_at: float


@dataclass
class _OpaqueToken:
    uid: str
    client_id: str
    scope: str
    expires_at: float
    generation: int | None
    profile_changed_at: int


@dataclass
class _Key:
    kid: str
    private_key: rsa.RSAPrivateKey
    created_at: int


@dataclass(frozen=True)
class _Failure:
    mode: str | None = None
    endpoints: frozenset[str] | None = None
    delay: float = 2.0

    def applies_to(self, path: str) -> bool:
        if self.mode is None or path.startswith("/__test__/"):
            return False
        return self.endpoints is None or path in self.endpoints

    @property
    def refuses_connections(self) -> bool:
        return self.mode == "down" and self.endpoints is None


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _scope_string(scope: str | Iterable[str]) -> str:
    if isinstance(scope, str):
        return scope
    return " ".join(scope)


def _error_response(code: int, errno: int, message: str) -> Response:
    body = {"code": code, "errno": errno, "error": _REASONS.get(code, "Error"), "message": message}
    return _json_response(body, status=code)


def _json_response(body: Any, status: int = 200, *, no_store: bool = False) -> Response:
    response = Response(
        status=status, content_type="application/json", charset="utf-8", body=json.dumps(body)
    )
    if no_store:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invalid(name: str) -> _FxAError:
    return _FxAError(400, ERRNO_INVALID_PARAMETER, f"Invalid parameter in request body: {name}")


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Invalid JSON in request body") from None
    if not isinstance(body, dict):
        raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Request body must be a JSON object")
    return body


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name)
    return value


def _ttl(body: Mapping[str, Any]) -> int:
    ttl = _optional_int(body, "ttl")
    if ttl is None:
        return DEFAULT_TOKEN_TTL
    if not 0 < ttl <= MAX_TOKEN_TTL:
        raise _invalid("ttl")
    return ttl


def _check_scope(scope: str) -> str:
    tokens = scope.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise _FxAError(400, ERRNO_INVALID_SCOPES, "Requested scopes are not allowed")
    return scope


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and not any(c.isspace() for c in url)
    )


def _add_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _new_kid() -> str:
    return time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(4)


def _wait_forever() -> None:  # pragma: no cover  (replaced in tests)
    while True:
        time.sleep(3600)


_SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - local Firefox Accounts</title></head>
<body>
<h1>Sign in to continue to {name}</h1>
<p>Local FxA server for development: no password, any email address signs in.</p>
<form method="post" action="{action}">
{hidden}
<label>Email <input type="email" name="email" value="{email}" required{readonly}></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""


class LocalFxAServer:
    """A local FxA OAuth server, served over HTTP from a background thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with LocalFxAServer() as server:
            server.register_client("kinto-client", "kinto-secret")
            token = server.mint_jwt(server.uid_for("alice@example.com"))
            settings["fxa-oauth.oauth_uri"] = server.oauth_uri

    ``port=0`` picks a free port; it is kept across :meth:`stop`/:meth:`start` and
    ``fail("down")`` so that :attr:`url` never changes once started.
    """

    #: Attempts at binding the port again after ``fail("down")`` (20 ms apart).
    bind_attempts = 50

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, issuer: str = "https://accounts.firefox.com"
    ) -> None:
        self.host = host
        self.port = port
        self.issuer = issuer
        #: Seconds an authorization code stays valid (restored by :meth:`reset`).
        self.code_ttl: float = DEFAULT_CODE_TTL
        #: Number of requests received, per path (``calls["/v1/jwks"]``).
        self.calls: collections.Counter[str] = collections.Counter()
        self._calls_lock = threading.Lock()
        self._lock = threading.RLock()
        self._listener_lock = threading.Lock()
        self._clients: dict[str, _Client] = {}
        self._codes: dict[str, _Code] = {}
        self._opaque: dict[str, _OpaqueToken] = {}
        self._destroyed_jtis: set[str] = set()
        self._initial_key = _Key(_new_kid(), self.new_key(), int(time.time()))
        self._keys: list[_Key] = [self._initial_key]
        self._failure = _Failure()
        self._wake = threading.Event()
        self._started_ms = int(time.time() * 1000)
        self._started = False
        self._map: dict[int, Any] | None = None
        self._trigger: Any = None
        self._waitress: Any = None
        self._thread: threading.Thread | None = None

    # Life cycle.

    def start(self) -> LocalFxAServer:
        """Start listening (idempotent) and return the server."""
        with self._listener_lock:
            if not self._started:
                self._start_listener()
                self._started = True
        self._sync_listener()
        return self

    def stop(self) -> None:
        """Stop listening and serving (idempotent); interrupts slow answers."""
        self._wake_sleepers()
        with self._listener_lock:
            self._started = False
            self._stop_listener()

    def __enter__(self) -> LocalFxAServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT`` (``/__heartbeat__`` is there)."""
        if not self.port:
            raise RuntimeError("The server has no port yet: start() it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def oauth_uri(self) -> str:
        """The OAuth API root: :attr:`url` + ``/v1`` (``fxa-oauth.oauth_uri``)."""
        return self.url + "/v1"

    @property
    def listening(self) -> bool:
        """Whether connections are accepted (false when stopped or ``fail("down")``)."""
        return self._waitress is not None

    def _create_server(self, socket_map: dict[int, Any]) -> Any:
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(4)
        # Listening again on our port after fail("down") can meet a socket briefly using
        # it (e.g. a client's ephemeral port): retry for a moment.
        attempts = max(1, self.bind_attempts) if self.port else 1
        for attempt in range(attempts):
            try:
                return create_server(
                    self.wsgi_app,
                    map=socket_map,
                    _dispatcher=dispatcher,
                    host=self.host,
                    port=self.port,
                    ident="kinto-fxa-local-fxa",
                    # Connections dropped on purpose (fail("down", endpoints=...)) are
                    # not worth a traceback.
                    log_socket_errors=False,
                )
            except OSError:
                wasyncore.close_all(socket_map, ignore_all=True)
                if attempt == attempts - 1:
                    dispatcher.shutdown(timeout=1)
                    raise
                time.sleep(0.02)
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_listener(self) -> None:
        socket_map: dict[int, Any] = {}
        server = self._create_server(socket_map)
        self._trigger = WaitressTrigger(socket_map)
        if hasattr(server, "effective_port"):
            port = server.effective_port
        else:  # pragma: no cover  (a host name resolving to several addresses)
            port = server.effective_listen[0][1]
        self.port = int(port)
        self._map = socket_map
        self._waitress = server
        self._thread = threading.Thread(
            target=server.run, name=f"local-fxa-{self.port}", daemon=True
        )
        self._thread.start()

    def _stop_listener(self) -> None:
        server, thread, socket_map = self._waitress, self._thread, self._map
        if server is None or thread is None or socket_map is None:
            return
        self._waitress = self._thread = self._map = None

        def close_everything() -> None:
            wasyncore.close_all(socket_map, ignore_all=True)

        # Close the listening socket and every connection from the loop's own thread;
        # the loop ends once its socket map is empty.
        self._trigger.pull_trigger(close_everything)
        thread.join(5)
        if thread.is_alive():  # pragma: no cover  (the loop did not run the thunk)
            close_everything()
            thread.join(5)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)

    def _sync_listener(self) -> None:
        """Listen or not, according to the failure mode."""
        with self._listener_lock:
            if not self._started:
                return
            refuse = self._failure.refuses_connections
            if refuse and self.listening:
                self._stop_listener()
            elif not refuse and not self.listening:
                self._start_listener()

    def _wake_sleepers(self) -> None:
        with self._lock:
            self._wake.set()
            self._wake = threading.Event()

    # State.

    def register_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        name: str = "",
        *,
        jwt_tokens: bool = True,
    ) -> None:
        """Register (or replace) an OAuth client.

        Without ``client_secret`` the client is public and must use PKCE. ``redirect_uri``
        is the only redirect target accepted when set; otherwise the authorization
        request must give one. ``jwt_tokens=False`` makes ``/v1/token`` hand out opaque
        tokens to this client instead of JWTs.
        """
        with self._lock:
            self._clients[client_id] = _Client(
                client_id, client_secret, redirect_uri, name or client_id, jwt_tokens
            )

    @staticmethod
    def uid_for(email: str) -> str:
        """The FxA account id (32 hex chars) of ``email``: deterministic, case-insensitive."""
        return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:32]

    @staticmethod
    def new_key() -> rsa.RSAPrivateKey:
        """A fresh RSA private key: FxA never published it (to forge tokens)."""
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def current_kid(self) -> str:
        """The ``kid`` of the key currently signing tokens."""
        with self._lock:
            return self._keys[-1].kid

    def rotate_key(self, keep_old: bool = True) -> str:
        """Sign with a new key (returned: its kid); older keys stay published if ``keep_old``."""
        key = _Key(_new_kid(), self.new_key(), int(time.time()))
        with self._lock:
            self._keys = [*self._keys, key] if keep_old else [key]
        return key.kid

    def publish_next_key(self) -> str:
        """Publish a new key (returned: its kid) without signing with it yet, as FxA does
        before rotating; :meth:`sign_with` switches to it."""
        key = _Key(_new_kid(), self.new_key(), int(time.time()))
        with self._lock:
            self._keys = [*self._keys[:-1], key, self._keys[-1]]
        return key.kid

    def sign_with(self, kid: str) -> None:
        """Sign tokens with the published key ``kid`` from now on (all stay published)."""
        with self._lock:
            key = next(k for k in self._keys if k.kid == kid)
            self._keys = [*(k for k in self._keys if k is not key), key]

    @property
    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The published public keys, as ``GET /v1/jwks`` answers them."""
        with self._lock:
            keys = list(self._keys)
        published = []
        for key in keys:
            numbers = key.private_key.public_key().public_numbers()
            published.append(
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "kid": key.kid,
                    "use": "sig",
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                    "fxa-createdAt": key.created_at,
                }
            )
        return {"keys": published}

    def fail(
        self,
        mode: str | None,
        *,
        endpoints: Iterable[str] | None = None,
        delay: float = 2.0,
    ) -> None:
        """Misbehave, on ``endpoints`` (exact paths, e.g. ``("/v1/verify",)``) or everywhere.

        - ``None``: healthy.
        - ``"down"``: everywhere, the server stops listening: connections are refused.
          Limited to ``endpoints``, the connection is closed without an answer
          (``requests.ConnectionError`` either way).
        - ``"slow"``: wait ``delay`` seconds, then answer normally (changing the mode,
          :meth:`reset` or :meth:`stop` cut the wait short).
        - ``"5xx"``: 503 with an FxA JSON error body (errno 999).
        - ``"500"``: 500 with an FxA JSON error body (errno 999).
        - ``"malformed"``: 200 with an HTML body.
        - ``"429"``: 429 (rate limited) with an FxA JSON error body and ``Retry-After``
          (:data:`RATE_LIMIT_RETRY_AFTER`).

        ``/__test__/`` helpers are never failed (but are unreachable when "down").
        """
        if mode not in FAIL_MODES:
            raise ValueError(f"Unknown failure mode {mode!r}: use one of {FAIL_MODES}")
        if delay < 0:
            raise ValueError("delay must be positive")
        if isinstance(endpoints, str):
            endpoints = (endpoints,)
        paths = frozenset(endpoints) if endpoints is not None else None
        with self._lock:
            self._failure = _Failure(mode, paths, delay)
        self._wake_sleepers()
        self._sync_listener()

    def reset_calls(self) -> None:
        """Clear :attr:`calls`."""
        with self._calls_lock:
            self.calls.clear()

    def reset(self) -> None:
        """Back to the initial state, as far as tests can tell.

        Healthy again (``fail(None)``), :attr:`calls` cleared, :attr:`code_ttl` restored and
        only the initial signing key published and used (tokens minted with rotated keys
        stop verifying). Kept: registered clients, minted opaque tokens, pending codes and
        destroyed tokens (all random, so they cannot leak between tests).
        """
        with self._lock:
            self._keys = [self._initial_key]
            self.code_ttl = DEFAULT_CODE_TTL
        self.fail(None)
        self.reset_calls()

    # Minting.

    def _profile_changed_at(self, iat: int) -> int:
        return min(self._started_ms, iat * 1000)

    def mint_jwt(
        self,
        uid: str | None = None,
        *,
        scope: str | Iterable[str] = "profile",
        client_id: str = "kinto-client",
        ttl: int = DEFAULT_TOKEN_TTL,
        iat: int | None = None,
        generation: int | None = None,
        kid: str | None = None,
        typ: str | None = "at+JWT",
        signing_key: rsa.RSAPrivateKey | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT access token (RS256, header ``typ: at+JWT`` and ``kid``), as FxA issues.

        ``uid`` defaults to ``uid_for("alice@example.com")``; ``exp`` is ``iat + ttl``
        (``iat`` defaults to now); ``fxa-generation`` is only set when ``generation`` is.
        ``signing_key`` forges a token with a key that was never published (``kid`` still
        names the current key unless given: ``typ=None`` omits the header).
        ``extra_claims`` are added last and override the others; a ``None`` value removes
        the claim (e.g. ``{"client_id": None}`` for a token FxA would never issue).
        """
        issued_at = int(time.time()) if iat is None else int(iat)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": uid if uid is not None else self.uid_for(DEFAULT_EMAIL),
            "client_id": client_id,
            "scope": _scope_string(scope),
            "iat": issued_at,
            "exp": issued_at + ttl,
            "jti": secrets.token_hex(32),
            "fxa-profileChangedAt": self._profile_changed_at(issued_at),
        }
        if generation is not None:
            claims["fxa-generation"] = generation
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        with self._lock:
            current = self._keys[-1]
        headers = {"typ": typ, "kid": kid if kid is not None else current.kid}
        key = signing_key if signing_key is not None else current.private_key
        return jwt.encode(claims, key, algorithm="RS256", headers=headers)

    def mint_opaque(
        self,
        uid: str | None = None,
        *,
        scope: str | Iterable[str] = "profile",
        client_id: str = "kinto-client",
        ttl: int = DEFAULT_TOKEN_TTL,
        generation: int | None = None,
    ) -> str:
        """An opaque access token (64 hex chars), only checkable through ``/v1/verify``."""
        token = secrets.token_hex(32)
        now = time.time()
        record = _OpaqueToken(
            uid=uid if uid is not None else self.uid_for(DEFAULT_EMAIL),
            client_id=client_id,
            scope=_scope_string(scope),
            expires_at=now + ttl,
            generation=generation,
            profile_changed_at=self._profile_changed_at(int(now)),
        )
        with self._lock:
            self._opaque[_digest(token)] = record
        return token

    def mint_set(
        self,
        uid: str,
        events: Mapping[str, Any],
        *,
        aud: str = "kinto-client",
        iss: str | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        iat: int | None = None,
        jti: str | None = None,
    ) -> str:
        """A Security Event Token (RFC 8417), as FxA's event broker POSTs to webhooks.

        Signed (RS256, header ``typ: secevent+jwt`` and ``kid``) with the current OAuth
        key, or ``signing_key``. ``events`` maps event URIs (:data:`DELETE_USER`...) to their
        payloads. ``iss`` defaults to the issuer with a trailing slash
        (``https://accounts.firefox.com/``).
        """
        claims = {
            "iss": iss if iss is not None else self.issuer.rstrip("/") + "/",
            "sub": uid,
            "aud": aud,
            "iat": int(time.time()) if iat is None else iat,
            "jti": jti if jti is not None else str(uuid.uuid4()),
            "events": dict(events),
        }
        with self._lock:
            current = self._keys[-1]
        key = signing_key if signing_key is not None else current.private_key
        headers = {"typ": "secevent+jwt", "kid": current.kid}
        return jwt.encode(claims, key, algorithm="RS256", headers=headers)

    def authorize(
        self,
        client_id: str,
        state: str,
        scope: str,
        email: str,
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
        *,
        action: str | None = None,
    ) -> str:
        """Sign ``email`` in, over HTTP, as the sign-in page's form does.

        Returns the redirect ``Location`` (``<redirect_uri>?code=...&state=...``); raises
        :class:`LocalFxAError` when the server refuses. ``code_challenge`` is S256.
        """
        form = {"client_id": client_id, "state": state, "scope": scope, "email": email}
        if redirect_uri is not None:
            form["redirect_uri"] = redirect_uri
        if code_challenge is not None:
            form["code_challenge"] = code_challenge
            form["code_challenge_method"] = "S256"
        if action is not None:
            form["action"] = action
        response = requests.post(
            self.oauth_uri + "/authorization", data=form, allow_redirects=False, timeout=10
        )
        if response.status_code != 302:
            try:
                body = response.json()
                errno, message = int(body["errno"]), str(body["message"])
            except (ValueError, KeyError, TypeError):
                errno, message = ERRNO_UNEXPECTED, "unexpected answer"
            raise LocalFxAError(response.status_code, errno, message)
        return str(response.headers["Location"])

    # Checking.

    def _verify(self, token: str) -> dict[str, Any] | None:
        """What ``/v1/verify`` answers for ``token``, or None when it is invalid."""
        if token.count(".") == 2:
            return self._verify_jwt(token)
        with self._lock:
            record = self._opaque.get(_digest(token))
        if record is None or record.expires_at <= time.time():
            return None
        info: dict[str, Any] = {
            "user": record.uid,
            "client_id": record.client_id,
            "scope": record.scope.split(),
        }
        if record.generation is not None:
            info["generation"] = record.generation
        info["profile_changed_at"] = record.profile_changed_at
        return info

    def _decode_jwt(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token signed by a published key, unexpired."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        typ = str(header.get("typ", ""))
        if "/" not in typ:
            typ = "application/" + typ
        if typ.lower() != "application/at+jwt":
            return None
        with self._lock:
            keys = sorted(self._keys, key=lambda k: k.kid != header.get("kid"))
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.private_key.public_key(),
                    algorithms=["RS256"],
                    options={"verify_aud": False, "require": ["exp", "sub", "client_id"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                return None
            return claims
        return None

    def _verify_jwt(self, token: str) -> dict[str, Any] | None:
        claims = self._decode_jwt(token)
        if claims is None:
            return None
        with self._lock:
            if claims.get("jti") in self._destroyed_jtis:
                return None
        scope = claims.get("scope", "")
        info: dict[str, Any] = {
            "user": claims["sub"],
            "client_id": claims["client_id"],
            "scope": scope.split() if isinstance(scope, str) else [],
        }
        if "fxa-generation" in claims:
            info["generation"] = claims["fxa-generation"]
        if "fxa-profileChangedAt" in claims:
            info["profile_changed_at"] = claims["fxa-profileChangedAt"]
        return info

    # HTTP.

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The WSGI application (usable without the HTTP server, e.g. with webtest)."""
        request = Request(environ)
        path = request.path_info
        with self._calls_lock:
            self.calls[path] += 1
        with self._lock:
            failure, wake = self._failure, self._wake
        response: Response | None = None
        if failure.applies_to(path):
            if failure.mode == "slow":
                wake.wait(failure.delay)
            else:
                response = self._failed(failure.mode, environ)
        if response is None:
            try:
                response = self._dispatch(request, path)
            except _FxAError as e:
                response = _error_response(e.code, e.errno, e.message)
            except Exception:
                response = _error_response(500, ERRNO_UNEXPECTED, "Unspecified error")
        return response(environ, start_response)

    def _failed(self, mode: str | None, environ: dict[str, Any]) -> Response:
        if mode == "down":
            self._drop_connection(environ)
            return _error_response(503, ERRNO_UNEXPECTED, "Connection dropped")
        if mode == "malformed":
            return Response(
                status=200,
                content_type="text/html",
                charset="utf-8",
                body=b"<html><body><h1>Welcome to nginx!</h1></body></html>",
            )
        if mode == "429":
            response = _error_response(429, ERRNO_UNEXPECTED, "Too Many Requests (simulated)")
            response.headers["Retry-After"] = str(RATE_LIMIT_RETRY_AFTER)
            return response
        code = 500 if mode == "500" else 503
        return _error_response(code, ERRNO_UNEXPECTED, f"{_REASONS[code]} (simulated)")

    @staticmethod
    def _drop_connection(environ: dict[str, Any]) -> None:
        """Close the client's connection without answering (reset, no response)."""
        channel = getattr(environ.get("waitress.client_disconnected"), "__self__", None)
        sock = getattr(channel, "socket", None)
        if sock is None:  # pragma: no cover  (not served by waitress)
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # pragma: no cover  (already gone)
            pass

    def _dispatch(self, request: Request, path: str) -> Response:
        routes: dict[str, dict[str, Callable[[Request], Response]]] = {
            "/__heartbeat__": {"GET": self._heartbeat},
            "/__lbheartbeat__": {"GET": self._heartbeat},
            "/v1/jwks": {"GET": self._get_jwks},
            "/v1/verify": {"POST": self._post_verify},
            "/v1/token": {"POST": self._post_token},
            "/v1/authorization": {
                "GET": self._get_authorization,
                "POST": self._post_authorization,
            },
            "/v1/destroy": {"POST": self._post_destroy},
            "/__test__/token": {"POST": self._post_test_token},
        }
        methods = routes.get(path)
        if methods is None and path.startswith("/v1/client/"):
            client_id = path[len("/v1/client/") :]
            if client_id and "/" not in client_id:
                methods = {"GET": lambda r: self._get_client(client_id)}
        if methods is None:
            return _error_response(404, ERRNO_UNEXPECTED, "Not Found")
        handler = methods.get(request.method)
        if handler is None:
            response = _error_response(405, ERRNO_UNEXPECTED, "Method Not Allowed")
            response.headers["Allow"] = ", ".join(methods)
            return response
        return handler(request)

    def _heartbeat(self, request: Request) -> Response:
        return _json_response({})

    def _get_jwks(self, request: Request) -> Response:
        return _json_response(self.jwks)

    def _get_client(self, client_id: str) -> Response:
        client = self._client(client_id)
        return _json_response(
            {
                "id": client.client_id,
                "name": client.name,
                "redirect_uri": client.redirect_uri or "",
                "image_uri": "",
                "trusted": True,
            }
        )

    def _client(self, client_id: Any) -> _Client:
        if not isinstance(client_id, str) or not client_id:
            raise _invalid("client_id")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            raise _FxAError(400, ERRNO_UNKNOWN_CLIENT, "Unknown client")
        return client

    def _post_verify(self, request: Request) -> Response:
        token = _json_body(request).get("token")
        if not isinstance(token, str) or not token:
            raise _invalid("token")
        info = self._verify(token)
        if info is None:
            raise _FxAError(400, ERRNO_INVALID_TOKEN, "Invalid token")
        return _json_response(info)

    def _post_destroy(self, request: Request) -> Response:
        body = _json_body(request)
        token = body.get("token", body.get("access_token"))
        if not isinstance(token, str) or not token:
            raise _invalid("token")
        destroyed = False
        if token.count(".") == 2:
            claims = self._decode_jwt(token)
            if claims is not None and isinstance(claims.get("jti"), str):
                with self._lock:
                    self._destroyed_jtis.add(claims["jti"])
                destroyed = True
        else:
            with self._lock:
                destroyed = self._opaque.pop(_digest(token), None) is not None
        if not destroyed:
            raise _FxAError(400, ERRNO_INVALID_TOKEN, "Invalid token")
        return _json_response({})

    def _post_token(self, request: Request) -> Response:
        if request.content_type == "application/x-www-form-urlencoded":
            body: dict[str, Any] = dict(request.POST)
            if "ttl" in body:
                try:
                    body["ttl"] = int(body["ttl"])
                except ValueError:
                    raise _invalid("ttl") from None
        else:
            body = _json_body(request)
        if body.get("grant_type", "authorization_code") != "authorization_code":
            raise _invalid("grant_type")
        client = self._client(body.get("client_id"))
        secret = body.get("client_secret")
        if client.public:
            if secret is not None:
                raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Public clients have no secret")
        elif client.secret is not None and not (
            isinstance(secret, str)
            and hmac.compare_digest(secret.encode("utf-8"), client.secret.encode("utf-8"))
        ):
            raise _FxAError(400, ERRNO_INCORRECT_SECRET, "Incorrect secret")
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise _invalid("code")
        verifier = body.get("code_verifier")
        if verifier is not None and not (
            isinstance(verifier, str) and _PKCE_VERIFIER.fullmatch(verifier)
        ):
            raise _invalid("code_verifier")
        ttl = _ttl(body)
        with self._lock:
            record = self._codes.get(code)
            if record is None:
                raise _FxAError(400, ERRNO_UNKNOWN_CODE, "Unknown code")
            if record.client_id != client.client_id:
                raise _FxAError(400, ERRNO_MISMATCH_CODE, "Incorrect code")
            if record.expires_at <= time.time():
                del self._codes[code]
                raise _FxAError(400, ERRNO_EXPIRED_CODE, "Expired code")
            if record.code_challenge is not None:
                if verifier is None or not hmac.compare_digest(
                    _s256(verifier), record.code_challenge
                ):
                    raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Incorrect code_verifier")
            elif verifier is not None:
                raise _FxAError(400, ERRNO_INVALID_PARAMETER, "No code_challenge to verify")
            del self._codes[code]
        if client.jwt_tokens:
            token = self.mint_jwt(
                record.uid, scope=record.scope, client_id=client.client_id, ttl=ttl
            )
        else:
            token = self.mint_opaque(
                record.uid, scope=record.scope, client_id=client.client_id, ttl=ttl
            )
        return _json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "scope": record.scope,
                "expires_in": ttl,
                "auth_at": record.auth_at,
            },
            no_store=True,
        )

    def _authorization_request(
        self, params: Mapping[str, str]
    ) -> tuple[_Client, str, str, str, str | None]:
        """Validate an authorization request: (client, redirect_uri, scope, state, challenge)."""
        client = self._client(params.get("client_id"))
        state = params.get("state", "")
        scope = _check_scope(params.get("scope") or "profile")
        requested = params.get("redirect_uri") or None
        if requested is not None:
            if client.redirect_uri is not None and requested != client.redirect_uri:
                raise _FxAError(400, ERRNO_INCORRECT_REDIRECT, "Incorrect redirect_uri")
            if not _is_http_url(requested):
                raise _FxAError(400, ERRNO_INCORRECT_REDIRECT, "Incorrect redirect_uri")
            redirect_uri = requested
        elif client.redirect_uri is not None:
            redirect_uri = client.redirect_uri
        else:
            raise _invalid("redirect_uri")
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or None
        if challenge is not None:
            if method != "S256":
                raise _invalid("code_challenge_method")
            if not _PKCE_CHALLENGE.fullmatch(challenge):
                raise _invalid("code_challenge")
        elif method is not None:
            raise _invalid("code_challenge")
        elif client.public:
            raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Public clients must use PKCE")
        action = params.get("action") or None
        if action is not None and action not in _ACTIONS:
            raise _invalid("action")
        if action == "force_auth" and not params.get("email"):
            raise _invalid("email")
        return client, redirect_uri, scope, state, challenge

    def _get_authorization(self, request: Request) -> Response:
        params = dict(request.GET)
        client, *_ = self._authorization_request(params)
        hidden = "\n".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in params.items()
            if name != "email"
        )
        page = _SIGN_IN_PAGE.format(
            name=html.escape(client.name),
            action=html.escape(request.path_info),
            hidden=hidden,
            email=html.escape(params.get("email", "")),
            readonly=" readonly" if params.get("action") == "force_auth" else "",
        )
        response = Response(status=200, content_type="text/html", charset="utf-8", text=page)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _post_authorization(self, request: Request) -> Response:
        params = dict(request.POST)
        client, redirect_uri, scope, state, challenge = self._authorization_request(params)
        email = params.get("email", "").strip()
        if not email or "@" not in email or len(email) > 255 or any(c.isspace() for c in email):
            raise _invalid("email")
        code = secrets.token_hex(32)
        now = time.time()
        with self._lock:
            self._codes[code] = _Code(
                client_id=client.client_id,
                uid=self.uid_for(email),
                scope=scope,
                code_challenge=challenge,
                auth_at=int(now),
                expires_at=now + self.code_ttl,
            )
        response = Response(status=302)
        response.location = _add_query(redirect_uri, {"code": code, "state": state})
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _post_test_token(self, request: Request) -> Response:
        body = _json_body(request)
        email, uid = body.get("email"), body.get("uid")
        if uid is None:
            if not isinstance(email, str) or "@" not in email:
                raise _invalid("email")
            uid = self.uid_for(email)
        elif not isinstance(uid, str) or not _HEX32.fullmatch(uid):
            raise _invalid("uid")
        scope = body.get("scope", "profile")
        if not isinstance(scope, str) or not scope:
            raise _invalid("scope")
        _check_scope(scope)
        client_id = body.get("client_id", "kinto-client")
        if not isinstance(client_id, str) or not client_id:
            raise _invalid("client_id")
        ttl = _ttl(body)
        generation = _optional_int(body, "generation")
        opaque = body.get("opaque", False)
        if not isinstance(opaque, bool):
            raise _invalid("opaque")
        if opaque:
            token = self.mint_opaque(
                uid, scope=scope, client_id=client_id, ttl=ttl, generation=generation
            )
        else:
            token = self.mint_jwt(
                uid, scope=scope, client_id=client_id, ttl=ttl, generation=generation
            )
        return _json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "scope": scope,
                "expires_in": ttl,
                "user": uid,
            },
            no_store=True,
        )


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    clients: list[tuple[str, str | None, str | None]] | None = None,
) -> None:
    """Run a :class:`LocalFxAServer` in the foreground until Ctrl-C.

    ``clients`` are ``(client_id, client_secret or None, redirect_uri or None)`` tuples;
    by default a confidential ``kinto-client``/``kinto-secret`` and a public
    ``kinto-public``.
    """
    server = LocalFxAServer(host=host, port=port)
    registered = list(DEFAULT_CLIENTS) if clients is None else clients
    for client_id, secret, redirect_uri in registered:
        server.register_client(client_id, secret, redirect_uri)
    with server:
        print(f"Local FxA OAuth server listening on {server.url}", flush=True)
        print(f"  fxa-oauth.oauth_uri = {server.oauth_uri}")
        for client_id, secret, redirect_uri in registered:
            kind = "confidential" if secret is not None else "public (PKCE)"
            where = f", redirect_uri {redirect_uri}" if redirect_uri else ""
            print(f"  client {client_id}: {kind}{where}")
        print("Mint an access token (this endpoint only exists in the local server):")
        print(
            f"  curl -s -X POST {server.url}/__test__/token -H 'Content-Type: application/json'"
            """ -d '{"email": "alice@example.com", "scope": "profile"}'"""
        )
        print("Press Ctrl-C to stop.", flush=True)
        try:
            _wait_forever()
        except KeyboardInterrupt:
            print("Stopping.", flush=True)
