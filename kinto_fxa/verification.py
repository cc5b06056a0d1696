"""Verify FxA access tokens through PyFxA, with no Pyramid in sight.

- JWT access tokens are checked locally against FxA's JWKS. The keys are fetched once and
  kept; a token naming an unknown ``kid`` triggers one refetch, at most once per
  ``refresh_interval`` (FxA publishes a new key next to the current one before rotating).
  PyFxA's ``verify_token`` fetches ``/jwks`` on every call when it is given no keys, so it
  is always given ours.
- Opaque tokens are checked by FxA's ``/v1/verify``.
- Outbound calls go through an ``APIClient`` with a timeout and no urllib3 retries: a failing
  FxA must fail fast (PyFxA's default session retries POSTs 3 times with backoff).

Outcomes are two exceptions: :class:`InvalidToken` (FxA says no: not authenticated) and
:class:`FxAUnavailable` (we cannot know: the caller answers 503).
"""

import binascii
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
from fxa import errors as fxa_errors
from fxa._utils import APIClient
from fxa.oauth import Client as OAuthClient
from jwt.utils import base64url_decode


logger = logging.getLogger(__name__)

# Used when ``fxa-oauth.oauth_uri`` is not set (PyFxA's default, FxA production).
PRODUCTION_OAUTH_URI = "https://oauth.accounts.firefox.com/v1"
MAX_UID_LENGTH = 64


class VerificationError(Exception):
    """Base class of the outcomes of a failed verification."""


class InvalidToken(VerificationError):
    """The token is not valid: unknown, expired, forged, revoked or lacking scope."""


class FxAUnavailable(VerificationError):
    """FxA could not be asked, or answered something that is not an answer."""


@dataclass(frozen=True)
class VerifiedToken:
    """What FxA vouches for about a token."""

    uid: str
    client_id: str
    scopes: tuple[str, ...]
    #: When the token (or the credentials it stems from) was issued, in ms; ``None`` if unknown.
    issued_at_ms: int | None = None
    #: Expiry as a UNIX timestamp in seconds; ``None`` if FxA did not say (opaque tokens).
    expires_at: float | None = None


def build_api_client(server_url: str, timeout: float) -> APIClient:
    """A PyFxA API client with a bounded timeout and no automatic retries."""
    server_url = server_url.rstrip("/")
    if not server_url.endswith("/v1"):
        server_url += "/v1"
    apiclient = APIClient(server_url, session=requests.Session())
    apiclient.timeout = timeout
    return apiclient


def heartbeat_url(oauth_uri: str) -> str:
    """FxA's ``/__heartbeat__`` lives at the server root, not under ``/v1``."""
    root = oauth_uri.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/__heartbeat__"


def unverified_segment(token: str, index: int) -> dict[str, Any] | None:
    """The JSON object in segment ``index`` of a compact JWS, or ``None`` if it is not one.

    Only for routing and for reading claims of a token PyFxA has verified: PyJWT's own
    unverified decoding validates every segment character by character, a cost paid again
    by the verification itself.
    """
    segments = token.split(".")
    if len(segments) != 3:
        return None
    try:
        value = json.loads(base64url_decode(segments[index]))
    except (ValueError, TypeError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


class JWKSKeySet:
    """FxA's public signing keys, fetched lazily and refreshed on unknown key ids."""

    def __init__(
        self,
        apiclient: APIClient,
        static_keys: Sequence[dict[str, Any]] | None = None,
        refresh_interval: float = 60,
    ) -> None:
        self._apiclient = apiclient
        self._static = static_keys is not None
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._refreshed_at: float | None = None
        self._refresh_interval = refresh_interval
        self._lock = threading.Lock()
        if static_keys is not None:
            self._keys = {k.get("kid"): dict(k) for k in static_keys}

    @property
    def keys(self) -> list[dict[str, Any]]:
        return list(self._keys.values())

    def keys_for(self, kid: str | None) -> list[dict[str, Any]]:
        """The keys a token signed with ``kid`` may be checked against.

        :raises FxAUnavailable: if the keys are needed but cannot be fetched.
        """
        if kid is not None and kid in self._keys:
            return [self._keys[kid]]
        if not self._static and (kid is not None or not self._keys):
            self._fetch(kid)
        if kid is None:
            return self.keys
        key = self._keys.get(kid)
        return [key] if key is not None else []

    def _fetch(self, kid: str | None) -> None:
        """Load the keys; once loaded, refetch for an unknown ``kid`` at most once per
        ``refresh_interval`` (tokens with made-up key ids must not hammer FxA)."""
        with self._lock:
            if (kid is not None and kid in self._keys) or (kid is None and self._keys):
                return  # Another thread fetched them meanwhile.
            now = time.monotonic()
            if (
                self._refreshed_at is not None
                and now - self._refreshed_at < self._refresh_interval
            ):
                return
            try:
                body = self._apiclient.get("/jwks")
                keys = body["keys"]
                parsed = {k["kid"]: dict(k) for k in keys if isinstance(k, dict) and "kid" in k}
            except (fxa_errors.Error, requests.RequestException, KeyError, TypeError) as e:
                if not self._keys:
                    raise FxAUnavailable(f"Could not fetch FxA JWKS: {e}") from e
                logger.warning("Could not refresh FxA JWKS (%s); keeping the known keys", e)
                self._refreshed_at = now
                return
            if self._keys:
                self._refreshed_at = now
            self._keys = parsed


class TokenVerifier:
    """Verify FxA OAuth access tokens (JWT locally, opaque through ``/v1/verify``)."""

    def __init__(
        self,
        oauth_uri: str | None,
        timeout: float = 5,
        jwks: Sequence[dict[str, Any]] | None = None,
        jwks_refresh_interval: float = 60,
    ) -> None:
        self.apiclient = build_api_client(oauth_uri or PRODUCTION_OAUTH_URI, timeout)
        self.jwks = JWKSKeySet(self.apiclient, jwks, jwks_refresh_interval)
        # One PyFxA client per key id, so a token is only checked against its own key.
        self._clients: dict[str, OAuthClient] = {}

    def _pyfxa_client(self, keys: list[dict[str, Any]]) -> OAuthClient:
        cache_key = json.dumps([k.get("kid") for k in keys])
        client = self._clients.get(cache_key)
        if client is None or client.jwks != keys:
            client = OAuthClient(server_url=self.apiclient.server_url, cache=None, jwks=keys)
            client.apiclient = self.apiclient
            self._clients[cache_key] = client
        return client

    def verify(self, token: str) -> VerifiedToken:
        """Verify ``token``.

        :raises InvalidToken: FxA does not vouch for it.
        :raises FxAUnavailable: FxA could not be asked or answered nonsense.
        """
        header = unverified_segment(token, 0)
        if header is None:
            return self._verify_remotely(token)
        return self._verify_jwt(token, header)

    def _verify_jwt(self, token: str, header: dict[str, Any]) -> VerifiedToken:
        kid = header.get("kid")
        keys = self.jwks.keys_for(kid if isinstance(kid, str) else None)
        if not keys:
            raise InvalidToken("Token signed with an unknown key")
        client = self._pyfxa_client(keys)
        try:
            profile = client.verify_token(token)
        except fxa_errors.TrustError as e:
            raise InvalidToken(str(e) or "Untrusted token") from e
        except fxa_errors.OutOfProtocolError as e:
            # Checked locally: a JWT lacking ``sub``/``scope``/``client_id`` is a bad token.
            raise InvalidToken(str(e)) from e
        except fxa_errors.InProtocolError as e:
            # The JWT was not decodable with this key type: PyFxA asked ``/verify``.
            return self._classify_remote_error(e)
        except (requests.RequestException, fxa_errors.Error) as e:
            raise FxAUnavailable(str(e)) from e
        # PyFxA drops ``iat``/``exp``: read them from the token it just verified.
        claims = unverified_segment(token, 1) or {}
        generation = claims.get("fxa-generation")
        iat = claims.get("iat")
        issued_at = generation if isinstance(generation, int) else None
        if issued_at is None and isinstance(iat, int | float):
            issued_at = int(iat * 1000)
        exp = claims.get("exp")
        return self._to_verified(
            profile, issued_at, float(exp) if isinstance(exp, int | float) else None
        )

    def _verify_remotely(self, token: str) -> VerifiedToken:
        client = self._pyfxa_client([])
        try:
            profile = client.verify_token(token)
        except fxa_errors.InProtocolError as e:
            return self._classify_remote_error(e)
        except (requests.RequestException, fxa_errors.Error, AttributeError) as e:
            # AttributeError: during a Retry-After backoff PyFxA returns a raw Response.
            raise FxAUnavailable(f"FxA verify failed: {e}") from e
        generation = profile.get("generation")
        return self._to_verified(profile, generation if isinstance(generation, int) else None)

    @staticmethod
    def _classify_remote_error(error: fxa_errors.InProtocolError) -> VerifiedToken:
        if isinstance(error, fxa_errors.ClientError):
            raise InvalidToken(str(error)) from error
        raise FxAUnavailable(f"FxA answered {error.code}: {error}") from error

    @staticmethod
    def _to_verified(
        profile: Any, issued_at_ms: int | None, expires_at: float | None = None
    ) -> VerifiedToken:
        uid, client_id, scopes = profile["user"], profile["client_id"], profile["scope"]
        if not (isinstance(uid, str) and isinstance(client_id, str) and isinstance(scopes, list)):
            raise FxAUnavailable("Unexpected FxA answer: wrong types")
        if not (uid.isascii() and uid.isalnum() and len(uid) <= MAX_UID_LENGTH):
            # FxA uids are 32 hex chars; anything else must not become a Kinto user id.
            raise InvalidToken("Unexpected user id")
        return VerifiedToken(
            uid=uid,
            client_id=client_id,
            scopes=tuple(str(s) for s in scopes),
            issued_at_ms=issued_at_ms,
            expires_at=expires_at,
        )
