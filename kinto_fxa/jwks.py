"""FxA's public signing keys (its ``/v1/jwks``), fetched and refreshed for the verifier.

Keys (:class:`JWKSKeySet`): fetched on first use, refreshed in the background once they are
``max_age`` old (FxA publishes its next key before signing with it, so a schedule picks it
up in time), and refetched at once for a token naming an unknown ``kid``. After the first
load, at most one fetch per ``refresh_interval``, whatever the traffic (made-up kids
included); a failed refresh keeps the known keys.
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jwt
import requests
from fxa import errors as fxa_errors
from fxa._utils import APIClient
from jwt.algorithms import RSAAlgorithm

from kinto_fxa import metrics
from kinto_fxa.errors import UNKNOWN_KEY, FxAUnavailable, InvalidToken
from kinto_fxa.fxa_api import BackingOff, call


logger = logging.getLogger(__name__)

#: Default of ``jwks_max_age``: keys older than this are refreshed in the background.
DEFAULT_JWKS_MAX_AGE = 300


def usable_keys(body: Any) -> dict[str | None, dict[str, Any]]:
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
            body = call(self._apiclient, self._metrics, "jwks", "get", "/jwks")
            error = None if self._apply(body, now) else "no usable key in the answer"
            if error is not None:
                self._metrics.count(metrics.FXA_CALL_FAILURES, endpoint="jwks", kind="malformed")
        except (fxa_errors.Error, requests.RequestException, BackingOff) as e:
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
        parsed = usable_keys(body)
        if not parsed:
            return False
        self._keys = parsed
        self._loaded_at = now
        return True


class PublicKeys:
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
