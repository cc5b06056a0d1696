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

from cachetools import TLRUCache


logger = logging.getLogger(__name__)


def _expiry(_key: str, entry: tuple[float, Any], _now: float) -> float:
    return entry[0]


class LocalCache:
    """A thread-safe bounded mapping whose entries expire at their own wall-clock time.

    When full, the least recently used entry goes first. ``max_size = 0`` disables it.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._entries: TLRUCache[str, tuple[float, Any]] = TLRUCache(
            maxsize=max(max_size, 1), ttu=_expiry, timer=time.time
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry[1]

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
