"""The Pyramid authentication policy: ``Authorization: Bearer <FxA token>``.

Use it through pyramid_multiauth::

    multiauth.policies = fxa
    multiauth.policy.fxa.use = kinto_fxa.authentication.FxAOAuthAuthenticationPolicy
    multiauth.policy.fxa.realm = My Kinto   # optional

A token is verified at most once per request (and its subrequests: batch, default
bucket), then served from a bounded in-process cache, then from Kinto's shared cache,
and only then verified with FxA (see :mod:`kinto_fxa.verification`).
"""

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from kinto.core.utils import hmac_digest
from pyramid import authentication as base_auth
from pyramid.interfaces import IAuthenticationPolicy
from zope.interface import implementer

from kinto_fxa import metrics
from kinto_fxa.cache import LocalCache, SafeCache
from kinto_fxa.errors import MALFORMED, UNKNOWN_KEY, FxAUnavailable, InvalidToken
from kinto_fxa.responses import bearer_token, service_unavailable
from kinto_fxa.revocation import Revocations, RevocationUnavailable, is_revoked
from kinto_fxa.settings import DEFAULT_CLIENT, FxASettings
from kinto_fxa.verification import OPAQUE_SHAPE, TokenVerifier, VerifiedToken


logger = logging.getLogger(__name__)

#: ``request.bound_data`` key holding ``{Authorization header: Identity | None}``: Pyramid
#: asks several times per request, and subrequests (batch, default bucket) share it.
BOUND_DATA_KEY = "fxa-oauth.identities"
CACHE_PREFIX = "fxa-oauth.token:"
#: Marks a subrequest answered from its parent's identities (counted once).
SUBREQUEST = "_fxa_oauth_from_parent"
#: FxA tokens are about 1 KB; anything far larger is refused without asking FxA.
MAX_TOKEN_LENGTH = 8192
#: Kinto's process-local cache backend: a second in-process level, and a small one.
MEMORY_CACHE_MODULE = "kinto.core.cache.memory"
#: Distinct ``(scopes, client_id)`` routing decisions remembered.
ROUTING_MEMO_SIZE = 1024
#: Marks a refused token in the caches.
REFUSED = False
#: Refusal reasons decided here (the verifier's are in :mod:`kinto_fxa.errors`; of those,
#: ``UNKNOWN_KEY`` is never remembered, since the next JWKS refresh may know the key).
SCOPE, FOREIGN_CLIENT, AMBIGUOUS, REVOKED = ("scope", "foreign_client", "ambiguous", "revoked")


@dataclass(frozen=True)
class Identity:
    """A verified token, routed to one client config."""

    uid: str
    client: str
    #: The token's expiry (s); ``None`` when FxA did not say (opaque tokens).
    expires_at: float | None = None
    #: When the token or its credentials were issued (ms); ``None`` if unknown.
    issued_at_ms: int | None = None
    #: When FxA (or the JWT check) last vouched for it (ms).
    verified_at_ms: int = 0

    @property
    def known_since_ms(self) -> int:
        """The earliest time the token is known to have been valid: what a revocation
        cutoff compares with."""
        return self.issued_at_ms if self.issued_at_ms is not None else self.verified_at_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "client": self.client,
            "exp": self.expires_at,
            "iat": self.issued_at_ms,
            "verified": self.verified_at_ms,
        }

    @classmethod
    def from_json(cls, data: Any) -> "Identity | None":
        """Rebuild from the shared cache; ``None`` for anything unexpected."""
        if not isinstance(data, dict):
            return None
        uid, client, exp = data.get("uid"), data.get("client"), data.get("exp")
        issued, verified = data.get("iat"), data.get("verified")
        if not (isinstance(uid, str) and isinstance(client, str) and isinstance(verified, int)):
            return None
        if not (exp is None or isinstance(exp, int | float)):
            return None
        return cls(
            uid=uid,
            client=client,
            expires_at=exp,
            issued_at_ms=issued if isinstance(issued, int) else None,
            verified_at_ms=verified,
        )


class Refused(Exception):
    """A token is not accepted: ``reason`` says why, ``source`` who decided (metrics)."""

    def __init__(self, reason: str, source: str = "local") -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source


class Authenticator:
    """Turns a bearer token into an :class:`Identity`, with caching; no Pyramid request.

    One is built per application by ``includeme`` (``registry.fxa_authenticator``).

    - In-process, every verification is kept up to ``min(local_cache_ttl_seconds,
      cache_ttl_seconds)`` and never past the token's expiry; refusals for
      ``negative_cache_ttl_seconds``. With Kinto's memory cache backend (one process) the
      in-process level is the only one and keeps verifications ``cache_ttl_seconds``.
    - In Kinto's cache, only opaque tokens: they cost a call to FxA, while a JWT is
      checked locally faster than one round trip to a cache server.
    - Every answer is checked against the user's revocation cutoff.
    """

    def __init__(
        self,
        settings: FxASettings,
        verifier: TokenVerifier,
        shared_cache: Any,
        revocations: Revocations,
        metrics_: metrics.Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.revocations = revocations
        self.metrics = metrics_ or metrics.Metrics()
        self.local = LocalCache(settings.local_cache_size)
        backend_module = type(shared_cache).__module__ if shared_cache is not None else ""
        self.shared: SafeCache | None = None
        self.local_ttl = float(settings.cache_ttl_seconds)
        if shared_cache is not None and backend_module != MEMORY_CACHE_MODULE:
            self.shared = SafeCache(shared_cache)
            self.local_ttl = float(settings.revocation_bound_seconds)
        self._hmac_secret = settings.userid_hmac_secret
        # Only signed tokens get here, so the distinct keys are the scopes FxA granted.
        self._decide = functools.lru_cache(maxsize=ROUTING_MEMO_SIZE)(self._decide_uncached)

    def digest(self, token: str) -> str:
        # Never keep the raw token: cache keys are HMACs with the server's secret.
        return hmac_digest(self._hmac_secret, token)

    def count(self, outcome: str, source: str, reason: str = "none") -> None:
        self.metrics.count(metrics.VERIFICATIONS, outcome=outcome, reason=reason, source=source)

    def authenticate(self, token: str, digest: str | None = None) -> Identity | None:
        """The identity of ``token``, or ``None`` if it is refused.

        :raises FxAUnavailable: when FxA cannot tell.
        :raises RevocationUnavailable: when the storage backend cannot tell.
        """
        if len(token) > MAX_TOKEN_LENGTH or not token.isprintable():
            logger.debug("FxA token refused: malformed")
            self.count("refused", "local", MALFORMED)
            return None
        digest = digest or self.digest(token)
        try:
            identity, source = self._lookup(token, digest)
        except Refused as e:
            logger.debug("FxA token refused: %s", e.reason)
            self.count("refused", e.source, e.reason)
            return None
        except (FxAUnavailable, RevocationUnavailable):
            self.count("unavailable", "verify")
            raise
        self.count("accepted", source)
        return identity

    def _lookup(self, token: str, digest: str) -> tuple[Identity, str]:
        local = self.local.get(digest)
        if local is REFUSED:
            raise Refused("cached")
        if local is not None:
            if not self._revoked(local):
                return local, "local"
            self.local.pop(digest)
            if local.issued_at_ms is not None:
                raise Refused(REVOKED)
            # An opaque token of unknown age verified before the cutoff: ask FxA again.

        # Only opaque tokens need FxA's ``/v1/verify``, hence the shared cache.
        is_opaque = OPAQUE_SHAPE.fullmatch(token) is not None
        key = CACHE_PREFIX + digest if is_opaque and self.shared is not None else None
        if key is not None:
            identity = self._from_shared(key)
            if identity is not None:
                self._remember(digest, identity)
                return identity, "shared"

        source = "verify" if is_opaque else "jwt"
        now = time.time()
        try:
            identity = self._route(self.verifier.verify(token), int(now * 1000))
            if self._revoked(identity):
                raise Refused(REVOKED)
        except InvalidToken as e:
            reason = getattr(e, "reason", "invalid")
            self._refuse(digest, key, reason)
            raise Refused(reason, source) from e
        except Refused as e:
            self._refuse(digest, key, e.reason)
            raise Refused(e.reason, source) from e

        if key is not None:  # FxA's /v1/verify gives no expiry: kept cache_ttl_seconds.
            ttl = float(self.settings.cache_ttl_seconds)
            self.shared.set(key, identity.to_json(), ttl)  # type: ignore[union-attr]
        self._remember(digest, identity)
        return identity, source

    def _from_shared(self, key: str) -> Identity | None:
        """A usable verification from the shared cache, or ``None`` to verify again.

        :raises Refused: for a refusal cached by any process.
        """
        cached = self.shared.get(key)  # type: ignore[union-attr]
        if cached is REFUSED:
            raise Refused("cached", "shared")
        identity = Identity.from_json(cached)
        # Ignore an entry written by a process configured with other clients, one past its
        # token's expiry (a backend's TTL may be coarser), or one older than a cutoff.
        if identity is None or identity.client not in self.settings.clients_by_name:
            return None
        if identity.expires_at is not None and identity.expires_at <= time.time():
            return None
        if self._revoked(identity):
            return None
        return identity

    def _revoked(self, identity: Identity) -> bool:
        cutoff = self.revocations.cutoff(identity.uid)
        return cutoff is not None and is_revoked(identity.known_since_ms, cutoff)

    def _refuse(self, digest: str, shared_key: str | None, reason: str) -> None:
        if reason == UNKNOWN_KEY:
            return
        ttl = self.settings.negative_cache_ttl_seconds
        self.local.set(digest, REFUSED, time.time() + ttl)
        if shared_key is not None:
            self.shared.set(shared_key, REFUSED, ttl)  # type: ignore[union-attr]

    def _remember(self, digest: str, identity: Identity) -> None:
        expires_at = time.time() + self.local_ttl
        if identity.expires_at is not None:
            expires_at = min(expires_at, identity.expires_at)
        self.local.set(digest, identity, expires_at)

    def _route(self, verified: VerifiedToken, now_ms: int) -> Identity:
        """The one client config the token is for.

        :raises Refused: when no config, or several, accept the token.
        """
        client, refusal = self._decide(verified.scopes, verified.client_id)
        if refusal == SCOPE:
            logger.debug("FxA token refused: scopes %s lack the required ones", verified.scopes)
        elif refusal == FOREIGN_CLIENT:
            logger.info("FxA token refused: issued to client %r", verified.client_id)
        elif refusal == AMBIGUOUS:
            logger.warning("FxA token refused: its scopes match several clients (%s)", client)
        if refusal is not None:
            raise Refused(refusal)
        return Identity(
            uid=verified.uid,
            client=client,
            expires_at=verified.expires_at,
            issued_at_ms=verified.issued_at_ms,
            verified_at_ms=now_ms,
        )

    def _decide_uncached(self, scopes: tuple[str, ...], client_id: str) -> tuple[str, str | None]:
        """``(client name, None)``, or ``(names, refusal reason)``: a pure function of the
        settings, memoized per ``(scopes, client_id)`` (apps send few distinct ones)."""
        matches = self.settings.route(list(scopes))
        if not matches:
            return "", SCOPE
        admitted = [c for c in matches if c.admits(client_id)]
        if not admitted:
            return "", FOREIGN_CLIENT
        if len(admitted) > 1:
            return ", ".join(c.name for c in admitted), AMBIGUOUS
        return admitted[0].name, None


@implementer(IAuthenticationPolicy)
class FxAOAuthAuthenticationPolicy(base_auth.CallbackAuthenticationPolicy):
    """Authenticate requests bearing a Firefox Accounts OAuth access token.

    The user id is the FxA uid; for a token routed to ``fxa-oauth.clients.<name>`` it is
    ``<uid>-<name>``, and ``<policy>:<uid>`` is added as a principal so that data can still
    be shared with the person across apps (unless ``fxa-oauth.accept_top_level_tokens``
    makes ``<policy>:<uid>`` the user id of top-level tokens).
    """

    def __init__(self, realm: str = "Realm") -> None:
        self.realm = realm

    @property
    def name(self) -> str:
        return getattr(self, "_pyramid_multiauth_name", None) or "fxa"

    def _identity(self, request: Any) -> Identity | None:
        authorization = request.headers.get("Authorization")
        if not authorization:
            return None
        known: dict[str, Identity | None] = request.bound_data.setdefault(BOUND_DATA_KEY, {})
        if authorization in known:
            identity = known[authorization]
            if getattr(request, "parent", None) is not None and not hasattr(request, SUBREQUEST):
                setattr(request, SUBREQUEST, True)  # Counted once per subrequest.
                outcome = "refused" if identity is None else "accepted"
                request.registry.fxa_authenticator.count(outcome, "memo")
            return identity
        identity = self._authenticate(request, bearer_token(authorization))
        known[authorization] = identity
        return identity

    def _authenticate(self, request: Any, token: str | None) -> Identity | None:
        if token is None:
            return None
        authenticator: Authenticator | None = getattr(request.registry, "fxa_authenticator", None)
        if authenticator is None:
            raise RuntimeError("kinto_fxa is not included: add it to kinto.includes")
        try:
            return authenticator.authenticate(token)
        except FxAUnavailable as e:
            logger.error("FxA token verification unavailable: %s", e)
            raise service_unavailable(
                "Firefox Accounts could not verify the token; retry later."
            ) from e
        except RevocationUnavailable as e:
            raise service_unavailable(
                "The token's revocation status could not be read; retry later."
            ) from e

    def unauthenticated_userid(self, request: Any) -> str | None:
        identity = self._identity(request)
        if identity is None:
            return None
        client = request.registry.fxa_settings.clients_by_name[identity.client]
        return client.user_id(identity.uid)

    def callback(self, userid: str, request: Any) -> list[str]:
        identity = self._identity(request)
        settings: FxASettings = request.registry.fxa_settings
        if identity is None or identity.client == DEFAULT_CLIENT:
            return []
        if not settings.shares_person_principal:
            return []
        return [f"{self.name}:{identity.uid}"]

    def remember(self, request: Any, userid: Any, **kw: Any) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Any) -> list[tuple[str, str]]:
        """Credentials are sent on every request: only say how (RFC 6750)."""
        challenge = f'Bearer realm="{self.realm}"'
        authorization = request.headers.get("Authorization", "")
        known = request.bound_data.get(BOUND_DATA_KEY, {})
        if known.get(authorization, True) is None and bearer_token(authorization) is not None:
            challenge += ', error="invalid_token"'  # A token was presented, and refused.
        return [("WWW-Authenticate", challenge)]
