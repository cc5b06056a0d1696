"""Pending logins: what the relier's token step needs from its login step, kept in Kinto's
cache under a single-use ``state`` and bound to the browser that started it by a cookie.

Kinto's cache is shared by every process, so the two steps may be served by different
ones. The cache holds a SHA-256 of the cookie value, never the value itself.
"""

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from typing import Any, cast


CACHE_PREFIX = "fxa-oauth.state:"
#: Random bytes in a state and in a cookie value (256 bits).
SECRET_BYTES = 32


class LoginExpired(Exception):
    """No such pending login: unknown, expired or already completed."""


class OtherBrowser(Exception):
    """The pending login was started by another browser (cookie missing or different)."""


@dataclass(frozen=True)
class PendingLogin:
    redirect: str
    code_verifier: str
    client: str
    #: SHA-256 of the browser's cookie value.
    binding: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "PendingLogin | None":
        """Rebuild from the cache; ``None`` for anything unexpected."""
        if not isinstance(data, dict):
            return None
        values = [data.get(key) for key in cls.__dataclass_fields__]
        if not all(isinstance(value, str) for value in values):
            return None
        return cls(*cast(list[str], values))


def _binding(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


class PendingLogins:
    """The pending logins in Kinto's ``cache``, each living ``ttl_seconds``."""

    def __init__(self, cache: Any, ttl_seconds: int) -> None:
        self.cache = cache
        self.ttl_seconds = ttl_seconds

    def start(self, redirect: str, code_verifier: str, client: str) -> tuple[str, str]:
        """Remember a new login; returns its ``state`` (for FxA) and the value of the
        cookie to give the browser."""
        state = secrets.token_urlsafe(SECRET_BYTES)
        cookie_value = secrets.token_urlsafe(SECRET_BYTES)
        pending = PendingLogin(redirect, code_verifier, client, _binding(cookie_value))
        self.cache.set(CACHE_PREFIX + state, pending.to_json(), ttl=self.ttl_seconds)
        return state, cookie_value

    def consume(self, state: str, cookie_value: str | None) -> PendingLogin:
        """The pending login of ``state``, if this browser started it; it is then forgotten.

        The state is looked up first, so that a reload of the callback after success (the
        cookie was just deleted) or a login whose state and cookie expired together is
        :class:`LoginExpired`, not :class:`OtherBrowser`. A missing or mismatching cookie
        does not consume the state: someone replaying a stolen callback URL cannot spoil
        the genuine user's login. The deletion decides who consumed it.

        :raises LoginExpired: unknown, expired, or consumed meanwhile.
        :raises OtherBrowser: the cookie is missing or not this login's.
        """
        key = CACHE_PREFIX + state
        pending = PendingLogin.from_json(self.cache.get(key))
        if pending is None:
            raise LoginExpired(state)
        if not cookie_value or not hmac.compare_digest(pending.binding, _binding(cookie_value)):
            raise OtherBrowser(state)
        if PendingLogin.from_json(self.cache.delete(key)) is None:
            raise LoginExpired(state)  # Another request consumed it meanwhile.
        return pending
