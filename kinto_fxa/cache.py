"""Caches for token verifications.

Two levels: a small bounded in-process cache (no I/O on a warm request) in front of Kinto's
shared cache backend (so every process benefits from one FxA verification). A failing shared
backend is logged and treated as a miss: it must never block authentication.
"""

import logging
import threading
import time
from collections import OrderedDict
from typing import Any


logger = logging.getLogger(__name__)


class LocalCache:
    """A thread-safe bounded mapping whose entries expire at a wall-clock time.

    When full, the oldest written entry goes first (reads do not reorder: a read takes no lock).
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= time.time():
            with self._lock:
                self._entries.pop(key, None)
            return None
        return value

    def set(self, key: str, value: Any, expires_at: float) -> None:
        if self.max_size <= 0 or expires_at <= time.time():
            return
        with self._lock:
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


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
            self.backend.set(key, value, ttl)
        except Exception:
            logger.exception("FxA verification cache: write failed")
