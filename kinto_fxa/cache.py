"""Caches for token verifications.

Two levels: a bounded in-process cache (no I/O on a warm request) in front of Kinto's
shared cache backend (so every process benefits from one call to FxA). A failing shared
backend is logged and treated as a miss: it never blocks authentication, and a miss only
means asking FxA again.
"""

import logging
import math
import threading
import time
from typing import Any

from cachetools import LRUCache


logger = logging.getLogger(__name__)


class LocalCache:
    """A thread-safe bounded mapping whose entries expire at their own wall-clock time.

    When full, the least recently used entry goes first. ``max_size = 0`` disables it.
    Expiry is checked when an entry is read: an LRU with a comparison costs a cold request
    a fraction of what cachetools' ``TLRUCache`` does (a heap and a sweep on every write),
    and expired entries still count against ``max_size``, so memory stays bounded.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._entries: LRUCache[str, tuple[float, Any]] = LRUCache(maxsize=max(max_size, 1))
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.time():
                del self._entries[key]
                return None
        return entry[1]

    def set(self, key: str, value: Any, expires_at: float) -> None:
        if self.max_size <= 0 or expires_at <= time.time():
            return
        with self._lock:
            self._entries[key] = (expires_at, value)

    def pop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def whole_seconds(ttl: float) -> int:
    """``ttl`` rounded up: Kinto's memcached backend truncates TTLs with ``int()``, and a
    TTL of 0 means "never expires" to memcached."""
    return math.ceil(ttl)


class SafeCache:
    """Kinto's cache backend, where an error is logged and reads as a miss."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def get(self, key: str) -> Any:
        try:
            return self.backend.get(key)
        except Exception:
            logger.exception("FxA verification cache: read failed")
            return None

    def set(self, key: str, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        try:
            self.backend.set(key, value, whole_seconds(ttl))
        except Exception:
            logger.exception("FxA verification cache: write failed")
