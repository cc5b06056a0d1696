"""``POST /v1/fxa-oauth/events``: FxA's event broker webhook.

Enabled by ``fxa-oauth.webhook.enabled = true``. FxA POSTs each account event as a Security
Event Token (RFC 8417) in ``Authorization: Bearer <SET>``, signed with its OAuth key (the
JWKS access tokens are checked against). The SET is accepted when its signature is good,
its ``aud`` is one of our client ids and its ``iss`` is ``fxa-oauth.webhook.issuer``.

The events are applied before answering, inside the request's transaction: a 200 means
done; on any failure the broker retries, and handling again is harmless.

Replays: a SET issued (``iat``) more than :data:`MAX_AGE_SECONDS` ago is refused (401), so a
captured SET cannot be replayed forever. Within that window a replay is harmless: every
event is idempotent (the data of a deleted account is deleted again, FxA never reuses a
uid; a password-change cutoff never goes back), so no ``jti`` is remembered.

The route does not go through Kinto's authentication: the SET is the credential.
"""

import json
import logging
import math
import time
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm
from kinto.core import Service, errors
from pyramid import httpexceptions
from pyramid.security import NO_PERMISSION_REQUIRED

from kinto_fxa import events
from kinto_fxa.errors import FxAUnavailable
from kinto_fxa.responses import bearer_token, service_unavailable
from kinto_fxa.settings import FxASettings


logger = logging.getLogger(__name__)

SOURCE = "webhook"
#: Tolerated clock difference with FxA when checking ``iat``/``exp``/``nbf``, in seconds.
LEEWAY_SECONDS = 60
#: A SET issued longer ago than this is refused: FxA's event broker delivers within
#: minutes and retries for hours, not days.
MAX_AGE_SECONDS = 24 * 3600
#: Claims a SET must carry.
REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "events")
#: An access token is not an event, even though FxA signs both with the same key.
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")

webhook = Service(
    name="fxa-oauth-events",
    path="/fxa-oauth/events",
    description="Firefox Accounts event broker webhook (Security Event Tokens)",
)


class UnauthorizedSET(Exception):
    """The SET is missing, unsigned, forged, or meant for someone else."""


def _unauthorized(message: str) -> httpexceptions.HTTPException:
    response = errors.http_error(
        httpexceptions.HTTPUnauthorized(),
        errno=errors.ERRORS.INVALID_AUTH_TOKEN,
        message=message,
    )
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def _bearer(request: Any) -> str:
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        raise UnauthorizedSET("Missing Authorization: Bearer <Security Event Token>")
    return token


def _same_issuer(actual: Any, expected: str) -> bool:
    """Equal, ignoring one trailing slash on either side."""
    if not isinstance(actual, str):
        return False
    return actual.removesuffix("/") == expected.removesuffix("/")


def _audience_ok(aud: Any, client_ids: set[str]) -> bool:
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list):
        return False
    return any(isinstance(a, str) and a in client_ids for a in audiences)


def _fresh(iat: Any, now: float) -> bool:
    """Whether ``iat`` is a number of seconds at most :data:`MAX_AGE_SECONDS` ago (PyJWT
    already refused one in the future)."""
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        return False
    return now - iat <= MAX_AGE_SECONDS + LEEWAY_SECONDS


def verify_set(
    token: str, keyset: Any, settings: FxASettings, now: float | None = None
) -> dict[str, Any]:
    """The claims of ``token`` once its signature, issuer, audience and age are checked.

    :raises UnauthorizedSET: when they are not good.
    :raises FxAUnavailable: when FxA's keys cannot be fetched.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise UnauthorizedSET("The Security Event Token is not a JWT") from None
    if str(header.get("typ", "")).lower() in ACCESS_TOKEN_TYPES:
        raise UnauthorizedSET("An access token is not a Security Event Token")
    if header.get("alg") != "RS256":
        raise UnauthorizedSET("The Security Event Token must be signed with RS256")
    kid = header.get("kid")
    keys = keyset.keys_for(kid if isinstance(kid, str) else None)

    claims: dict[str, Any] | None = None
    for jwk in keys:
        try:
            public_key = RSAAlgorithm.from_jwk(json.dumps(jwk))
        except (jwt.PyJWTError, ValueError, TypeError):
            logger.warning("FxA webhook: skipping an unusable FxA key %r", jwk.get("kid"))
            continue
        try:
            claims = jwt.decode(
                token,
                key=public_key,  # type: ignore[arg-type]
                algorithms=["RS256"],
                leeway=LEEWAY_SECONDS,
                options={"verify_aud": False, "require": list(REQUIRED_CLAIMS)},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as e:
            raise UnauthorizedSET(f"Invalid Security Event Token: {e}") from None
    if claims is None:
        raise UnauthorizedSET("The Security Event Token is not signed by Firefox Accounts")
    if not _same_issuer(claims.get("iss"), settings.webhook_issuer):
        raise UnauthorizedSET("The Security Event Token comes from an unexpected issuer")
    if not _audience_ok(claims.get("aud"), settings.client_ids):
        raise UnauthorizedSET("The Security Event Token is meant for another client")
    if not _fresh(claims.get("iat"), time.time() if now is None else now):
        raise UnauthorizedSET("The Security Event Token is too old (iat)")
    return claims


@webhook.post(permission=NO_PERMISSION_REQUIRED)
def receive_events(request: Any) -> dict[str, Any]:
    """Verify the SET in ``Authorization``, apply its events, answer 200 once done."""
    registry = request.registry
    settings: FxASettings = registry.fxa_settings
    try:
        claims = verify_set(_bearer(request), registry.fxa_verifier.jwks, settings)
    except UnauthorizedSET as e:
        logger.warning("FxA webhook: refused a request: %s", e)
        events.count(registry, SOURCE, "invalid", "unauthorized")
        raise _unauthorized(str(e)) from None
    except FxAUnavailable as e:
        logger.error("FxA webhook: cannot fetch FxA's keys: %s", e)
        events.count(registry, SOURCE, "invalid", "unavailable")
        raise service_unavailable("Firefox Accounts keys are unavailable; retry later.") from e

    try:
        parsed = events.parse_security_event(claims)
    except events.InvalidEvent as e:
        logger.warning("FxA webhook: invalid Security Event Token: %s", e)
        events.count(registry, SOURCE, "invalid", "invalid")
        raise errors.http_error(
            httpexceptions.HTTPBadRequest(),
            errno=errors.ERRORS.INVALID_PARAMETERS,
            message=f"Invalid Security Event Token: {e}",
        ) from None

    outcomes: dict[str, str] = {}
    for event in parsed:  # Within the request's transaction (pyramid_tm).
        outcomes[event.name] = events.process(registry, SOURCE, event).status
    return {"events": outcomes}
