"""Verify FxA access tokens, with no Pyramid in sight: JWTs locally with PyJWT, opaque
tokens through PyFxA's client of FxA's ``/v1/verify``.

What a token may be, decided before anything is asked:

- a JWT (three base64url segments, a JSON object header and payload): checked locally
  against FxA's JWKS (RS256, ``exp`` required, a clock skew of :data:`CLOCK_SKEW_SECONDS`
  tolerated), never sent to FxA. The token is decoded once (:func:`parse_jws`): the claims
  checked are those of the signing input. They are type-checked before the signature is
  checked: ``sub`` is an FxA uid (32 lowercase hex digits), ``client_id`` and ``scope``
  strings, ``exp`` (required), ``iat`` and ``nbf`` finite numbers, ``iss`` the expected
  issuer (ignoring one trailing slash). A bad claim is :class:`InvalidToken`, whatever it is.
- an opaque token (exactly 64 hex digits): checked by FxA's ``/v1/verify``. Only FxA's
  invalid-token errno (108) means :class:`InvalidToken`; a 429, any other 4xx, a 5xx or an
  answer with wrong types means :class:`FxAUnavailable` (FxA could not tell us).
- anything else: :class:`InvalidToken` (``malformed``) without calling FxA.

Keys (:class:`JWKSKeySet`): fetched on first use, refreshed in the background once they are
``max_age`` old (FxA publishes its next key before signing with it, so a schedule picks it
up in time), and refetched at once for a token naming an unknown ``kid``. After the first
load, at most one fetch per ``refresh_interval``, whatever the traffic (made-up kids
included); a failed refresh keeps the known keys.

Outbound calls go through an ``APIClient`` with a timeout and no urllib3 retries: a failing
FxA must fail fast (PyFxA's default session retries POSTs 3 times with backoff). After a
429/500/503 with ``Retry-After`` PyFxA's client "backs off": it answers without calling FxA
until then; that is :class:`FxAUnavailable` too.

Outcomes are two exceptions: :class:`InvalidToken` (FxA says no: not authenticated; its
``reason`` says why, one of :data:`REASONS`) and :class:`FxAUnavailable` (we cannot know:
the caller answers 503).
"""

import base64
import binascii
import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt
import requests
from fxa import errors as fxa_errors
from fxa._utils import APIClient
from fxa.oauth import Client as OAuthClient
from jwt.algorithms import RSAAlgorithm

from kinto_fxa import metrics
from kinto_fxa.uids import is_fxa_uid


logger = logging.getLogger(__name__)

# Used when ``fxa-oauth.oauth_uri`` is not set (PyFxA's default, FxA production).
PRODUCTION_OAUTH_URI = "https://oauth.accounts.firefox.com/v1"
#: The ``iss`` of FxA production's access tokens.
PRODUCTION_ISSUER = "https://accounts.firefox.com"
#: Default of ``jwks_max_age``: keys older than this are refreshed in the background.
DEFAULT_JWKS_MAX_AGE = 300
#: FxA's errno for an invalid (unknown, expired, destroyed) token.
ERRNO_INVALID_TOKEN = 108

# Why a token is refused (``InvalidToken.reason``, the ``reason`` label of the
# ``fxa_verifications`` metric).
#: The JWT has expired (``exp``).
EXPIRED = "expired"
#: The JWT is not valid yet (``iat`` or ``nbf`` in the future).
NOT_YET_VALID = "not_yet_valid"
#: The JWT names a key FxA does not publish (never negatively cached: the next JWKS refresh
#: may know it).
UNKNOWN_KEY = "unknown_key"
#: Not a JWT nor an opaque token, or a JWT with a missing or mistyped claim or header.
MALFORMED = "malformed"
#: The JWT's signature does not match its key.
SIGNATURE = "signature"
#: The JWT's ``iss`` is missing or not the FxA issuer expected.
ISSUER = "issuer"
#: The JWT's ``typ`` is not ``at+JWT``: another kind of token (ID token, event...).
TOKEN_TYPE = "token_type"
#: FxA's ``/v1/verify`` says the token is invalid.
INVALID = "invalid"
REASONS = (EXPIRED, NOT_YET_VALID, UNKNOWN_KEY, MALFORMED, SIGNATURE, ISSUER, TOKEN_TYPE, INVALID)

#: A compact JWS: three base64url segments (the signature may not be empty for RS256, but
#: PyJWT says so itself).
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
#: FxA's opaque access tokens.
OPAQUE_SHAPE = re.compile(r"[0-9a-fA-F]{64}")
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
#: Distinct JOSE headers kept decoded (FxA uses one per signing key).
HEADER_MEMO_SIZE = 64


class VerificationError(Exception):
    """Base class of the outcomes of a failed verification."""


class InvalidToken(VerificationError):
    """The token is not valid: unknown, expired, forged, revoked or lacking scope.

    ``reason`` is one of :data:`REASONS`, for metrics and for the caller's caching.
    """

    def __init__(self, message: str = "Invalid token", reason: str = INVALID) -> None:
        super().__init__(message)
        self.reason = reason


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


def build_api_client(
    server_url: str, timeout: float, session: requests.Session | None = None
) -> APIClient:
    """A PyFxA API client with a bounded timeout and no automatic retries (PyFxA's own
    session retries POSTs 3 times with backoff)."""
    server_url = server_url.rstrip("/")
    if not server_url.endswith("/v1"):
        server_url += "/v1"
    apiclient = APIClient(server_url, session=session or requests.Session())
    apiclient.timeout = timeout
    return apiclient


def oauth_client(
    server_url: str,
    timeout: float,
    client_id: str | None,
    client_secret: str | None,
    session: requests.Session,
) -> OAuthClient:
    """PyFxA's OAuth client of one relier client, talking through :func:`build_api_client`
    over ``session`` (the caller closes it)."""
    client = OAuthClient(
        client_id=client_id, client_secret=client_secret, server_url=server_url, cache=None
    )
    client.apiclient = build_api_client(server_url, timeout, session)
    return client


def heartbeat_url(oauth_uri: str) -> str:
    """FxA's ``/__heartbeat__`` lives at the server root, not under ``/v1``."""
    root = oauth_uri.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/__heartbeat__"


def same_issuer(actual: Any, expected: str) -> bool:
    """Whether ``actual`` is the issuer ``expected``, ignoring one trailing slash."""
    return isinstance(actual, str) and actual.removesuffix("/") == expected.removesuffix("/")


def _b64decode(segment: str) -> bytes:
    """A base64url segment without padding (its alphabet checked by :data:`JWT_SHAPE`)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(segment: str) -> dict[str, Any] | None:
    value = json.loads(_b64decode(segment).decode("utf-8"))  # RFC 7515: UTF-8 JSON.
    return value if isinstance(value, dict) else None


@functools.lru_cache(maxsize=HEADER_MEMO_SIZE)
def _header_object(segment: str) -> Mapping[str, Any] | None:
    """A JOSE header, read-only: FxA's tokens share a few headers (one per signing key), so
    they are decoded once (a failure is not remembered, and raises again)."""
    value = _json_object(segment)
    return None if value is None else MappingProxyType(value)


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A compact JWS, decoded but not verified."""

    header: Mapping[str, Any]
    claims: dict[str, Any]
    #: What the signature is over: the token's own first two segments.
    signing_input: bytes
    signature: bytes


def parse_jws(token: str) -> CompactJWS | None:
    """``token`` as a compact JWS with JSON object header and payload, or ``None``.

    One pass: PyJWT's own parsing checks every base64 character in a Python loop (about
    50 us a token, paid twice by an unverified read then a decode); :data:`JWT_SHAPE`
    checks the alphabet in C.
    """
    if JWT_SHAPE.fullmatch(token) is None:
        return None
    header_segment, claims_segment, signature_segment = token.split(".")
    try:
        header, claims = _header_object(header_segment), _json_object(claims_segment)
        signature = _b64decode(signature_segment)
    except (ValueError, binascii.Error):  # UnicodeDecodeError and JSONDecodeError included.
        return None
    if header is None or claims is None:
        return None
    signing_input = token[: len(header_segment) + 1 + len(claims_segment)].encode("ascii")
    return CompactJWS(header, claims, signing_input, signature)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _claims_problem(claims: dict[str, Any]) -> str | None:
    """What is wrong with the types of an access token's claims, if anything."""
    if not is_fxa_uid(claims.get("sub")):
        return "sub is not an FxA uid"
    for name in ("client_id", "scope"):
        if not isinstance(claims.get(name), str):
            return f"{name} is not a string"
    if not _is_number(claims.get("exp")):
        return "exp is missing or not a number"
    for name in ("iat", "nbf"):
        if name in claims and not _is_number(claims[name]):
            return f"{name} is not a number"
    generation = claims.get("fxa-generation")
    if generation is not None and (
        isinstance(generation, bool) or not isinstance(generation, int)
    ):
        return "fxa-generation is not an integer"
    if "iss" in claims and not isinstance(claims["iss"], str):
        return "iss is not a string"
    return None


def verified_from_answer(answer: Any) -> VerifiedToken:
    """The :class:`VerifiedToken` of a ``/v1/verify`` answer.

    :raises FxAUnavailable: if the answer does not have the types FxA documents.
    """
    if not isinstance(answer, dict):
        raise FxAUnavailable("Unexpected FxA answer: wrong types")
    uid, client_id, scopes = answer.get("user"), answer.get("client_id"), answer.get("scope")
    generation = answer.get("generation")
    if not (
        isinstance(uid, str)
        and isinstance(client_id, str)
        and isinstance(scopes, list)
        and all(isinstance(s, str) for s in scopes)
        and (
            generation is None
            or (isinstance(generation, int) and not isinstance(generation, bool))
        )
    ):
        raise FxAUnavailable("Unexpected FxA answer: wrong types")
    if not is_fxa_uid(uid):
        # FxA uids are 32 hex digits; anything else must not become a Kinto user id.
        raise InvalidToken("Unexpected user id", MALFORMED)
    return VerifiedToken(
        uid=uid, client_id=client_id, scopes=tuple(scopes), issued_at_ms=generation
    )


def classify_verify_error(error: fxa_errors.InProtocolError) -> VerifiedToken:
    """Raise what an FxA error answer to ``/v1/verify`` means.

    :raises InvalidToken: FxA's invalid-token errno (108) on a 4xx other than 429.
    :raises FxAUnavailable: anything else (rate limited, our request refused, 5xx).
    """
    code, errno = getattr(error, "code", None), getattr(error, "errno", None)
    if isinstance(error, fxa_errors.ClientError) and code != 429 and errno == ERRNO_INVALID_TOKEN:
        raise InvalidToken(str(error) or "Invalid token", INVALID) from error
    raise FxAUnavailable(f"FxA answered {code} (errno {errno!r}): {error}") from error


def failure_kind(error: BaseException) -> str:
    """The ``kind`` label of :data:`metrics.FXA_CALL_FAILURES` for ``error``."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.RequestException):
        return "refused"
    if isinstance(error, fxa_errors.ServerError):
        return "5xx"
    if isinstance(error, fxa_errors.ClientError):
        return "rate_limited" if getattr(error, "code", None) == 429 else "4xx"
    return "malformed"


class _BackingOff(Exception):
    """PyFxA's client is in backoff after a ``Retry-After``: it asked nobody."""


def _call(
    apiclient: APIClient, metrics_: metrics.Metrics, endpoint: str, method: str, *args: Any
) -> Any:
    """``apiclient.<method>(*args)``, timed and with failures counted.

    :raises _BackingOff: when PyFxA answered from its backoff state without calling FxA.
    """
    started = time.monotonic()
    try:
        try:
            body = getattr(apiclient, method)(*args)
        except (AttributeError, TypeError) as e:
            # PyFxA builds its errors with ``body.get``: a JSON error body that is not an
            # object breaks it.
            raise fxa_errors.OutOfProtocolError(f"Unexpected FxA error answer ({e})") from e
    except (requests.RequestException, fxa_errors.Error) as e:
        metrics_.observe_seconds(
            metrics.FXA_CALL_DURATION, time.monotonic() - started, endpoint=endpoint
        )
        if not isinstance(e, fxa_errors.ClientError) or e.errno != ERRNO_INVALID_TOKEN:
            metrics_.count(metrics.FXA_CALL_FAILURES, endpoint=endpoint, kind=failure_kind(e))
        raise
    if isinstance(body, requests.Response):
        metrics_.count(metrics.FXA_CALL_FAILURES, endpoint=endpoint, kind="rate_limited")
        raise _BackingOff(f"backing off after FxA answered {body.status_code} with Retry-After")
    metrics_.observe_seconds(
        metrics.FXA_CALL_DURATION, time.monotonic() - started, endpoint=endpoint
    )
    return body


def _usable_keys(body: Any) -> dict[str | None, dict[str, Any]]:
    """The usable RSA keys of a ``/jwks`` answer, by kid."""
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        return {}
    usable: dict[str | None, dict[str, Any]] = {}
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kid"), str):
            continue
        try:
            RSAAlgorithm.from_jwk(json.dumps(key))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            logger.warning("Skipping an unusable FxA key %r", key.get("kid"))
            continue
        usable[key["kid"]] = dict(key)
    return usable


class JWKSKeySet:
    """FxA's public signing keys: fetched lazily, refreshed on a schedule and on unknown
    key ids, at most once per ``refresh_interval`` after the first load.

    ``max_age``: keys fetched that long ago are refreshed by a background thread, started by
    the request that finds them stale (the request does not wait; one thread at most).
    ``None`` disables the schedule. ``clock`` is a monotonic clock (for tests).
    """

    def __init__(
        self,
        apiclient: APIClient,
        static_keys: Sequence[dict[str, Any]] | None = None,
        refresh_interval: float = 60,
        max_age: float | None = DEFAULT_JWKS_MAX_AGE,
        metrics_: metrics.Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._apiclient = apiclient
        self._static = static_keys is not None
        self._keys: dict[str | None, dict[str, Any]] = {}
        #: When the keys were last fetched successfully.
        self._loaded_at: float | None = None
        #: When a fetch was last attempted once keys were known: the bound.
        self._attempted_at: float | None = None
        #: Whether the last fetch failed: an unknown key id may then be FxA's new key.
        self._last_fetch_failed = False
        self._refresh_interval = refresh_interval
        self._max_age = None if self._static else max_age
        self._metrics = metrics_ or metrics.Metrics()
        self._clock = clock
        self._lock = threading.Lock()  # Held while fetching: one fetch at a time.
        self._refreshing_lock = threading.Lock()  # Never held while fetching.
        self._refreshing = False
        if static_keys is not None:
            self._keys = {k.get("kid"): dict(k) for k in static_keys}

    @property
    def keys(self) -> list[dict[str, Any]]:
        return list(self._keys.values())

    @property
    def kids(self) -> list[str | None]:
        return list(self._keys)

    @property
    def refreshing(self) -> bool:
        """Whether a background refresh is in flight."""
        return self._refreshing

    def keys_for(self, kid: str | None) -> list[dict[str, Any]]:
        """The keys a token signed with ``kid`` may be checked against (none: ``kid`` is
        not FxA's, as of the last successful fetch).

        :raises FxAUnavailable: if the keys are needed but cannot be fetched, or ``kid`` is
            unknown and the last fetch failed.
        """
        known = self._keys.get(kid) if kid is not None else None  # One read: a refresh
        if known is not None:  # may replace the keys meanwhile.
            self._refresh_if_stale()
            return [known]
        if not self._static and (kid is not None or not self._keys):
            self._fetch(kid)
        else:
            self._refresh_if_stale()
        if kid is None:
            return self.keys
        key = self._keys.get(kid)
        if key is None and self._last_fetch_failed:
            # FxA may have started signing with a key we could not fetch: we cannot tell.
            raise FxAUnavailable(f"FxA JWKS unavailable: cannot tell whether {kid!r} is FxA's")
        return [key] if key is not None else []

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._refresh_interval

    def _refresh_if_stale(self) -> None:
        if self._max_age is None or self._loaded_at is None or self._refreshing:
            return
        now = self._clock()
        if now - self._loaded_at < self._max_age or not self._may_fetch(now):
            return
        with self._refreshing_lock:
            if self._refreshing:
                return  # pragma: no cover  (another request started it meanwhile)
            self._refreshing = True
        threading.Thread(target=self._refresh, name="kinto-fxa-jwks", daemon=True).start()

    def _refresh(self) -> None:
        """The background refresh: keeps the known keys when it fails."""
        try:
            with self._lock:
                now = self._clock()
                # Keys are known here: a failure keeps them (never FxAUnavailable).
                if self._may_fetch(now):
                    self._load(now, "scheduled")
        finally:
            self._refreshing = False

    def _fetch(self, kid: str | None) -> None:
        """Load the keys; once loaded, refetch for an unknown ``kid`` at most once per
        ``refresh_interval`` (tokens with made-up key ids must not hammer FxA)."""
        with self._lock:
            if (kid is not None and kid in self._keys) or (kid is None and self._keys):
                return  # Another thread fetched them meanwhile.
            now = self._clock()
            if self._keys and not self._may_fetch(now):
                return
            self._load(now, "unknown_kid" if self._keys else "initial")

    def _load(self, now: float, trigger: str) -> None:
        """Fetch the keys (the lock is held).

        :raises FxAUnavailable: if no keys are known and none could be fetched.
        """
        if self._keys:
            self._attempted_at = now
        try:
            body = _call(self._apiclient, self._metrics, "jwks", "get", "/jwks")
            error = None if self._apply(body, now) else "no usable key in the answer"
            if error is not None:
                self._metrics.count(metrics.FXA_CALL_FAILURES, endpoint="jwks", kind="malformed")
        except (fxa_errors.Error, requests.RequestException, _BackingOff) as e:
            error = str(e) or e.__class__.__name__
        self._last_fetch_failed = error is not None
        outcome = "ok" if error is None else "failed"
        self._metrics.count(metrics.JWKS_REFRESHES, trigger=trigger, outcome=outcome)
        if error is None:
            return
        if not self._keys:
            raise FxAUnavailable(f"Could not fetch FxA JWKS: {error}")
        logger.warning("Could not refresh FxA JWKS (%s); keeping the known keys", error)

    def _apply(self, body: Any, now: float) -> bool:
        """Use the keys of a ``/jwks`` answer; ``False`` (known keys kept) if it has none."""
        parsed = _usable_keys(body)
        if not parsed:
            return False
        self._keys = parsed
        self._loaded_at = now
        return True


#: Tolerated difference between FxA's clock and ours when checking ``exp``, ``iat`` and
#: ``nbf``: without it a token FxA issued a moment ago is "not yet valid" here.
CLOCK_SKEW_SECONDS = 30


RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)


def _check_times(claims: dict[str, Any], now: float) -> None:
    """``exp``, ``iat`` and ``nbf`` (numbers, checked before) against ``now``, tolerating
    :data:`CLOCK_SKEW_SECONDS` either way.

    :raises InvalidToken: expired, or not valid yet.
    """
    if claims["exp"] <= now - CLOCK_SKEW_SECONDS:
        raise InvalidToken("JWT expired", EXPIRED)
    for name in ("iat", "nbf"):
        if name in claims and claims[name] > now + CLOCK_SKEW_SECONDS:
            raise InvalidToken(f"JWT not valid yet ({name})", NOT_YET_VALID)


class _PublicKeys:
    """RSA public keys built from JWKs once per key (not once per token)."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[dict[str, Any], Any]] = {}

    def get(self, jwk: dict[str, Any]) -> Any:
        cache_key = str(jwk.get("kid"))
        known = self._built.get(cache_key)
        if known is not None and known[0] == jwk:
            return known[1]
        try:
            key = RSAAlgorithm.from_jwk(jwk)
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as e:
            raise InvalidToken(f"Unusable FxA key: {e}", UNKNOWN_KEY) from e
        self._built[cache_key] = (dict(jwk), key)
        return key


class TokenVerifier:
    """Verify FxA OAuth access tokens (JWT locally, opaque through ``/v1/verify``).

    ``issuer``: the ``iss`` JWTs must carry (ignoring one trailing slash).
    ``jwks_refresh_interval``: the least time between two JWKS fetches after the first.
    ``jwks_max_age``: keys that old are refreshed in the background (``None``: never).
    """

    def __init__(
        self,
        oauth_uri: str | None,
        timeout: float = 5,
        jwks: Sequence[dict[str, Any]] | None = None,
        jwks_refresh_interval: float = 60,
        issuer: str = PRODUCTION_ISSUER,
        jwks_max_age: float | None = DEFAULT_JWKS_MAX_AGE,
        metrics_: metrics.Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        server_url = oauth_uri or PRODUCTION_OAUTH_URI
        self.metrics = metrics_ or metrics.Metrics()
        self.issuer = issuer
        #: For ``/v1/verify``; the keys have their own, so a backoff does not stop refreshes.
        self.apiclient = build_api_client(server_url, timeout)
        self.jwks = JWKSKeySet(
            build_api_client(server_url, timeout),
            jwks,
            jwks_refresh_interval,
            max_age=jwks_max_age,
            metrics_=self.metrics,
            clock=clock,
        )
        self._public_keys = _PublicKeys()

    def verify(self, token: str) -> VerifiedToken:
        """Verify ``token``.

        :raises InvalidToken: FxA does not vouch for it.
        :raises FxAUnavailable: FxA could not be asked or answered nonsense.
        """
        if OPAQUE_SHAPE.fullmatch(token):
            return self._verify_remotely(token)
        jws = parse_jws(token)
        if jws is None:
            raise InvalidToken("Neither a JWT nor an FxA opaque token", MALFORMED)
        return self._verify_jwt(jws)

    def _verify_jwt(self, jws: CompactJWS) -> VerifiedToken:
        header, claims = jws.header, jws.claims
        if header.get("alg") != "RS256":
            raise InvalidToken("JWT not signed with RS256", MALFORMED)
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("Not an access token (typ)", TOKEN_TYPE)
        if "crit" in header:  # RFC 7515 4.1.11: we understand no extension (``b64``...).
            raise InvalidToken("JWT with critical header extensions", MALFORMED)
        problem = _claims_problem(claims)
        if problem is not None:
            raise InvalidToken(f"Malformed JWT: {problem}", MALFORMED)
        kid = header.get("kid")
        keys = self.jwks.keys_for(kid if isinstance(kid, str) else None)
        if not keys:
            raise InvalidToken("Token signed with an unknown key", UNKNOWN_KEY)
        self._check_signature(jws, keys)
        _check_times(claims, time.time())
        if not same_issuer(claims.get("iss"), self.issuer):
            raise InvalidToken("JWT from an unexpected issuer", ISSUER)
        generation, iat = claims.get("fxa-generation"), claims.get("iat")
        issued_at = generation if isinstance(generation, int) else None
        if issued_at is None and iat is not None:
            issued_at = int(iat * 1000)
        return VerifiedToken(
            uid=claims["sub"],
            client_id=claims["client_id"],
            scopes=tuple(claims["scope"].split()),
            issued_at_ms=issued_at,
            expires_at=float(claims["exp"]),
        )

    def _check_signature(self, jws: CompactJWS, keys: list[dict[str, Any]]) -> None:
        """Check the RS256 signature of ``jws`` (one of ``keys`` made it) with PyJWT's RS256
        algorithm. Not PyJWT's ``decode``: it would parse the token again (see
        :func:`parse_jws`); the claims already read are those of the signing input."""
        for jwk in keys:  # Normally one: the key named by ``kid``.
            if RS256.verify(jws.signing_input, self._public_keys.get(jwk), jws.signature):
                return
        raise InvalidToken("Invalid JWT signature", SIGNATURE)

    def _verify_remotely(self, token: str) -> VerifiedToken:
        try:
            answer = _call(
                self.apiclient, self.metrics, "verify", "post", "/verify", {"token": token}
            )
        except fxa_errors.InProtocolError as e:
            return classify_verify_error(e)
        except _BackingOff as e:
            raise FxAUnavailable(f"FxA verify: {e}") from e
        except (requests.RequestException, fxa_errors.Error) as e:
            raise FxAUnavailable(f"FxA verify failed: {e}") from e
        try:
            return verified_from_answer(answer)
        except FxAUnavailable:
            self.metrics.count(metrics.FXA_CALL_FAILURES, endpoint="verify", kind="malformed")
            raise
