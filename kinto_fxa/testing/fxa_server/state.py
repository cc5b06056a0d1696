"""What the server knows: clients, codes, opaque tokens, signing keys and its failure mode."""

from __future__ import annotations

import base64
import collections
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from kinto_fxa.testing.fxa_server.errors import ERRNO_UNKNOWN_CLIENT, _FxAError, _invalid
from kinto_fxa.testing.fxa_server.failures import _Failure


DEFAULT_CODE_TTL = 600


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


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _new_kid() -> str:
    return time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(4)


class _State:
    """The state of :class:`LocalFxAServer` (all but its listener) and the keys it signs with."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        #: Seconds an authorization code stays valid (restored by :meth:`reset`).
        self.code_ttl: float = DEFAULT_CODE_TTL
        #: Number of requests received, per path (``calls["/v1/jwks"]``).
        self.calls: collections.Counter[str] = collections.Counter()
        self._calls_lock = threading.Lock()
        self._lock = threading.RLock()
        self._clients: dict[str, _Client] = {}
        self._codes: dict[str, _Code] = {}
        self._opaque: dict[str, _OpaqueToken] = {}
        self._destroyed_jtis: set[str] = set()
        self._initial_key = _Key(_new_kid(), self.new_key(), int(time.time()))
        self._keys: list[_Key] = [self._initial_key]
        self._failure = _Failure()
        self._wake = threading.Event()
        self._started_ms = int(time.time() * 1000)

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

    def _client(self, client_id: Any) -> _Client:
        if not isinstance(client_id, str) or not client_id:
            raise _invalid("client_id")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            raise _FxAError(400, ERRNO_UNKNOWN_CLIENT, "Unknown client")
        return client

    @staticmethod
    def uid_for(email: str) -> str:
        """The FxA account id (32 hex chars) of ``email``: deterministic, case-insensitive."""
        return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:32]

    def reset_calls(self) -> None:
        """Clear :attr:`calls`."""
        with self._calls_lock:
            self.calls.clear()

    # Keys.

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
