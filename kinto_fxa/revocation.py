"""Refuse tokens issued before an account event: password change, reset or deletion.

FxA says "tokens issued before time T are no longer valid" (SQS ``passwordChange``/``reset``,
webhook ``password-change``; a deletion is the same with T = now). The cutoff is kept per
user in Kinto's *storage* backend: unlike its cache, nothing evicts it (a flood of junk
tokens filling the memory cache, memcached's LRU), and it is written in the same transaction
as the deletion it goes with. Every Kinto process sharing the storage sees it.

Reads go through a per-process memo kept ``bound`` seconds, so a process learns of a cutoff
recorded elsewhere within ``bound`` seconds, and of one recorded by itself at once. A
cutoff that cannot be read is an error (the request gets a 503), never "no cutoff".
"""

import logging
import threading
import time
from typing import Any

from cachetools import TTLCache
from kinto.core.storage.exceptions import ObjectNotFoundError


logger = logging.getLogger(__name__)

#: Where cutoffs live in Kinto's storage: a resource no Kinto URL exposes.
RESOURCE_NAME = "fxa-oauth-revocation"
PARENT_ID = "/fxa-oauth"
_NOT_READ = object()


class RevocationUnavailable(Exception):
    """The storage backend could not tell whether a user's tokens were revoked."""


class Revocations:
    """Per-user revocation cutoffs (ms timestamps) in Kinto's storage, with a memo."""

    def __init__(self, storage: Any, bound_seconds: float, max_users: int = 10000) -> None:
        self._storage = storage
        self._memo: TTLCache[str, int | None] = TTLCache(
            maxsize=max(max_users, 1), ttl=max(bound_seconds, 0.001), timer=time.monotonic
        )
        self._lock = threading.Lock()

    def cutoff(self, uid: str) -> int | None:
        """Tokens of ``uid`` issued before this time (ms) are refused; ``None``: none are.

        :raises RevocationUnavailable: when the storage backend fails.
        """
        with self._lock:
            known = self._memo.get(uid, _NOT_READ)
        if known is not _NOT_READ:
            return known  # type: ignore[return-value]
        value = self._read(uid)
        with self._lock:
            self._memo[uid] = value
        return value

    def _read(self, uid: str) -> int | None:
        try:
            stored = self._storage.get(
                resource_name=RESOURCE_NAME, parent_id=PARENT_ID, object_id=uid
            )
        except ObjectNotFoundError:
            return None
        except Exception as e:
            logger.exception("Could not read the revocation cutoff of FxA user %s", uid)
            raise RevocationUnavailable(str(e)) from e
        value = stored.get("cutoff")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def record(self, uid: str, changed_at_ms: int) -> int:
        """Refuse ``uid``'s tokens issued before ``changed_at_ms``; returns the cutoff in force.

        Events may arrive out of order: an older change never lowers the cutoff. The write
        joins the caller's transaction (pyramid_tm, or the ``kinto-fxa`` script's).
        """
        current = self._read(uid)
        cutoff = int(changed_at_ms)
        if current is not None and current >= cutoff:
            cutoff = current
        else:
            self._storage.update(
                resource_name=RESOURCE_NAME,
                parent_id=PARENT_ID,
                object_id=uid,
                obj={"cutoff": cutoff},
            )
        with self._lock:
            self._memo[uid] = cutoff
        return cutoff


def is_revoked(issued_at_ms: int | None, cutoff_ms: int | None) -> bool:
    """Whether a token stamped ``issued_at_ms`` falls before the cutoff (one stamped at or
    after it stays valid). A token of unknown age counts as revoked: it must be checked
    with FxA again."""
    if cutoff_ms is None:
        return False
    return issued_at_ms is None or issued_at_ms < cutoff_ms
