"""The Pyramid authentication policy: ``Authorization: Bearer <FxA token>``.

Use it through pyramid_multiauth::

    multiauth.policies = fxa
    multiauth.policy.fxa.use = kinto_fxa.authentication.FxAOAuthAuthenticationPolicy
    multiauth.policy.fxa.realm = My Kinto   # optional

A token is verified at most once per request (and its subrequests: batch, default
bucket), then served from a bounded in-process cache, then from Kinto's shared cache,
and only then verified with FxA (see :mod:`kinto_fxa.verification`).
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from kinto.core import errors
from kinto.core.utils import hmac_digest
from pyramid import authentication as base_auth
from pyramid import httpexceptions
from pyramid.interfaces import IAuthenticationPolicy
from zope.interface import implementer

from kinto_fxa import revocation
from kinto_fxa.cache import LocalCache, SafeCache
from kinto_fxa.settings import ClientConfig, FxASettings
from kinto_fxa.verification import FxAUnavailable, InvalidToken, TokenVerifier, VerifiedToken


logger = logging.getLogger(__name__)

#: ``request.bound_data`` key holding ``{token_digest: Identity | None}``.
BOUND_DATA_KEY = "fxa-oauth.identities"
CACHE_PREFIX = "fxa-oauth.token:"
REQUEST_MEMO = "_fxa_oauth_identity"
#: FxA tokens are about 1 KB; anything far larger is refused without asking FxA.
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True)
class Identity:
    """A verified token, routed to one client config."""

    uid: str
    client: str
    expires_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "client": self.client, "exp": self.expires_at}

    @classmethod
    def from_json(cls, data: Any) -> "Identity | None":
        if not isinstance(data, dict) or not isinstance(data.get("uid"), str):
            return None
        return cls(uid=data["uid"], client=str(data.get("client")), expires_at=data.get("exp"))


class Authenticator:
    """Turns a bearer token into an :class:`Identity`, with caching; no Pyramid request.

    One is built per application by ``includeme`` (``registry.fxa_authenticator``).
    """

    def __init__(self, settings: FxASettings, verifier: TokenVerifier, shared_cache: Any) -> None:
        self.settings = settings
        self.verifier = verifier
        self.shared = SafeCache(shared_cache)
        self.local = LocalCache(settings.local_cache_size)
        self._hmac_secret = settings.userid_hmac_secret

    def digest(self, token: str) -> str:
        # Never keep the raw token: cache keys are HMACs with the server's secret.
        return hmac_digest(self._hmac_secret, token)

    def authenticate(self, token: str, digest: str | None = None) -> Identity | None:
        """The identity of ``token``, or ``None`` if it is refused.

        :raises FxAUnavailable: when FxA cannot tell.
        """
        if len(token) > MAX_TOKEN_LENGTH or not token.isprintable():
            logger.debug("FxA token refused: malformed")
            return None
        digest = digest or self.digest(token)
        local = self.local.get(digest)
        if local is not None:
            return local or None  # ``False`` marks a refused token.

        key = CACHE_PREFIX + digest
        cached = self.shared.get(key)
        now = time.time()
        if cached is False:
            self._remember_locally(digest, None, now)
            return None
        identity = Identity.from_json(cached)
        # Ignore an entry written by a process configured with other clients.
        if identity is not None and identity.client in self.settings.clients_by_name:
            if self._revoked(identity.uid, identity_issued_at(cached)):
                identity = None
            self._remember_locally(digest, identity, now)
            return identity

        try:
            verified = self.verifier.verify(token)
            identity = self._route(verified)
            if identity is not None and self._revoked(verified.uid, verified.issued_at_ms):
                logger.info("FxA token refused: issued before the last password change")
                identity = None
        except InvalidToken as e:
            logger.debug("FxA token refused: %s", e)
            identity = None

        if identity is None:
            self.shared.set(key, False, self.settings.negative_cache_ttl_seconds)
        else:
            ttl = float(self.settings.cache_ttl_seconds)
            if identity.expires_at is not None:
                ttl = min(ttl, identity.expires_at - now)
            value = {**identity.to_json(), "iat": verified.issued_at_ms}
            self.shared.set(key, value, ttl)
        self._remember_locally(digest, identity, now)
        return identity

    def _revoked(self, uid: str, issued_at_ms: int | None) -> bool:
        if issued_at_ms is None:
            return False
        cutoff = self.shared.get(revocation.cutoff_key(uid))
        return revocation.is_revoked(issued_at_ms, cutoff)

    def _remember_locally(self, digest: str, identity: Identity | None, now: float) -> None:
        if identity is None:
            self.local.set(digest, False, now + self.settings.negative_cache_ttl_seconds)
            return
        expires_at = now + self.settings.local_cache_ttl_seconds
        if identity.expires_at is not None:
            expires_at = min(expires_at, identity.expires_at)
        self.local.set(digest, identity, expires_at)

    def _route(self, verified: VerifiedToken) -> Identity | None:
        """Pick the one client config whose required scope the token satisfies."""
        matches: list[ClientConfig] = self.settings.route(list(verified.scopes))
        if len(matches) != 1:
            if matches:
                names = ", ".join(c.name for c in matches)
                logger.warning("FxA token refused: its scopes match several clients (%s)", names)
            else:
                logger.debug(
                    "FxA token refused: scopes %s lack the required ones", verified.scopes
                )
            return None
        return Identity(uid=verified.uid, client=matches[0].name, expires_at=verified.expires_at)


def identity_issued_at(cached: Any) -> int | None:
    value = cached.get("iat") if isinstance(cached, dict) else None
    return value if isinstance(value, int) else None


def _bearer_token(request: Any) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


@implementer(IAuthenticationPolicy)
class FxAOAuthAuthenticationPolicy(base_auth.CallbackAuthenticationPolicy):
    """Authenticate requests bearing a Firefox Accounts OAuth access token.

    The user id is the FxA uid; for a token routed to ``fxa-oauth.clients.<name>`` it is
    ``<uid>-<name>``, and ``<policy>:<uid>`` is added as a principal so that data can still
    be shared with the person across apps.
    """

    def __init__(self, realm: str = "Realm") -> None:
        self.realm = realm

    @property
    def name(self) -> str:
        return getattr(self, "_pyramid_multiauth_name", None) or "fxa"

    def _identity(self, request: Any) -> Identity | None:
        # Pyramid and multiauth ask several times per request: answer from the request.
        authorization = request.headers.get("Authorization")
        memo = getattr(request, REQUEST_MEMO, None)
        if memo is not None and memo[0] == authorization:
            return memo[1]
        identity = self._identity_for_token(request)
        setattr(request, REQUEST_MEMO, (authorization, identity))
        return identity

    def _identity_for_token(self, request: Any) -> Identity | None:
        token = _bearer_token(request)
        if token is None:
            return None
        authenticator: Authenticator | None = getattr(request.registry, "fxa_authenticator", None)
        if authenticator is None:
            raise RuntimeError("kinto_fxa is not included: add it to kinto.includes")
        digest = authenticator.digest(token)
        known: dict[str, Identity | None] = request.bound_data.setdefault(BOUND_DATA_KEY, {})
        if digest in known:
            return known[digest]
        try:
            identity = authenticator.authenticate(token, digest)
        except FxAUnavailable as e:
            logger.error("FxA token verification unavailable: %s", e)
            raise errors.http_error(
                httpexceptions.HTTPServiceUnavailable(),
                errno=errors.ERRORS.BACKEND,
                message="Firefox Accounts could not verify the token; retry later.",
            ) from e
        known[digest] = identity
        return identity

    def unauthenticated_userid(self, request: Any) -> str | None:
        identity = self._identity(request)
        if identity is None:
            return None
        client = request.registry.fxa_settings.clients_by_name[identity.client]
        return client.user_id(identity.uid)

    def callback(self, userid: str, request: Any) -> list[str]:
        identity = self._identity(request)
        if identity is None or identity.client == "default":
            return []
        return [f"{self.name}:{identity.uid}"]

    def remember(self, request: Any, userid: Any, **kw: Any) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Any) -> list[tuple[str, str]]:
        """Credentials are sent on every request: only say how (RFC 6750)."""
        challenge = f'Bearer realm="{self.realm}"'
        memo = getattr(request, REQUEST_MEMO, None)
        if memo is not None and memo[1] is None and _bearer_token(request) is not None:
            challenge += ', error="invalid_token"'  # A token was presented, and refused.
        return [("WWW-Authenticate", challenge)]
