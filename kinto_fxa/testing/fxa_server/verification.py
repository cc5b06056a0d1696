"""Verification: what ``/v1/verify`` answers for an opaque token or a JWT access token."""

from __future__ import annotations

import time
from typing import Any

import jwt

from kinto_fxa.testing.fxa_server.state import _digest, _State


class _Verification(_State):
    """Checks tokens: known or signed by a published key, unexpired, not destroyed."""

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
