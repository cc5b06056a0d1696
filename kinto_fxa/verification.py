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

Keys come from :mod:`kinto_fxa.jwks`, calls to FxA go through :mod:`kinto_fxa.fxa_api`, and
the outcomes are the exceptions of :mod:`kinto_fxa.errors`: :class:`InvalidToken` (not
authenticated) and :class:`FxAUnavailable` (we cannot know: the caller answers 503).
"""

import base64
import binascii
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import requests
from fxa import errors as fxa_errors
from jwt.algorithms import RSAAlgorithm

from kinto_fxa import metrics
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
from kinto_fxa.fxa_api import (
    ERRNO_INVALID_TOKEN,
    PRODUCTION_ISSUER,
    PRODUCTION_OAUTH_URI,
    BackingOff,
    build_api_client,
    call,
)
from kinto_fxa.jwks import DEFAULT_JWKS_MAX_AGE, JWKSKeySet, PublicKeys
from kinto_fxa.uids import is_fxa_uid


logger = logging.getLogger(__name__)

#: A compact JWS: three base64url segments (the signature may not be empty for RS256, but
#: PyJWT says so itself).
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
#: FxA's opaque access tokens.
OPAQUE_SHAPE = re.compile(r"[0-9a-fA-F]{64}")
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
#: Distinct JOSE headers kept decoded (FxA uses one per signing key).
HEADER_MEMO_SIZE = 64


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
        self._public_keys = PublicKeys()

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
            answer = call(
                self.apiclient, self.metrics, "verify", "post", "/verify", {"token": token}
            )
        except fxa_errors.InProtocolError as e:
            return classify_verify_error(e)
        except BackingOff as e:
            raise FxAUnavailable(f"FxA verify: {e}") from e
        except (requests.RequestException, fxa_errors.Error) as e:
            raise FxAUnavailable(f"FxA verify failed: {e}") from e
        try:
            return verified_from_answer(answer)
        except FxAUnavailable:
            self.metrics.count(metrics.FXA_CALL_FAILURES, endpoint="verify", kind="malformed")
            raise
