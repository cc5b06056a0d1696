"""Refuse tokens issued before a password change or reset.

FxA says "tokens issued before time T are no longer valid" (SQS ``passwordChange``/``reset``,
webhook ``password-change``). The cutoff is kept per user in Kinto's shared cache, where
every Kinto process sees it, and checked whenever a verification is not served from the
in-process cache.
"""

from typing import Any


def cutoff_key(uid: str) -> str:
    return f"fxa-oauth.revoked-before:{uid}"


def record_cutoff(cache: Any, uid: str, changed_at_ms: int, ttl: int) -> int:
    """Refuse ``uid``'s tokens issued before ``changed_at_ms``; returns the cutoff in force.

    Events may arrive out of order: an older change never lowers the cutoff.
    """
    key = cutoff_key(uid)
    current = cache.get(key)
    if isinstance(current, int) and current >= changed_at_ms:
        return current
    cache.set(key, int(changed_at_ms), ttl)
    return int(changed_at_ms)


def is_revoked(issued_at_ms: int | None, cutoff_ms: Any) -> bool:
    """A token stamped at or after the cutoff stays valid; one of unknown age does too
    (FxA itself refuses such opaque tokens once the password changed)."""
    if not isinstance(cutoff_ms, int) or issued_at_ms is None:
        return False
    return issued_at_ms < cutoff_ms
