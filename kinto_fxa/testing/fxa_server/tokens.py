"""Minting: JWT and opaque access tokens, and Security Event Tokens, signed with RS256."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from kinto_fxa.testing.fxa_server.state import _digest, _OpaqueToken, _State


#: Security Event Token event URIs, as sent by FxA's event broker.
EVENT_URI_PREFIX = "https://schemas.accounts.firefox.com/event/"
DELETE_USER = EVENT_URI_PREFIX + "delete-user"
PASSWORD_CHANGE = EVENT_URI_PREFIX + "password-change"
PROFILE_CHANGE = EVENT_URI_PREFIX + "profile-change"
SUBSCRIPTION_STATE_CHANGE = EVENT_URI_PREFIX + "subscription-state-change"

DEFAULT_EMAIL = "alice@example.com"
DEFAULT_TOKEN_TTL = 3600
MAX_TOKEN_TTL = 14 * 24 * 3600


def _scope_string(scope: str | Iterable[str]) -> str:
    if isinstance(scope, str):
        return scope
    return " ".join(scope)


class _Minting(_State):
    """Mints the tokens FxA would issue, signed with the current key (or a forged one)."""

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
