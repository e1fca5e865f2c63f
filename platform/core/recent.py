"""What a process found out recently and may trust for a few seconds without asking the database again:
a dictionary whose entries expire (cachetools' TTLCache), safe for daphne's threads."""
from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from cachetools import TTLCache

MISSING = object()


class Recent:
    def __init__(self, ttl_s: float, maxsize: int = 10_000):
        self._entries: TTLCache[Hashable, Any] | None = TTLCache(maxsize=maxsize, ttl=ttl_s) if ttl_s > 0 else None
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def recall(self, key: Hashable) -> Any:
        """What was remembered under ``key`` less than ttl_s ago, or MISSING."""
        if self._entries is None:
            return MISSING
        with self._lock:
            return self._entries.get(key, MISSING)

    def remember(self, key: Hashable, value: Any) -> None:
        if self._entries is not None:
            with self._lock:
                self._entries[key] = value

    def forget_all(self) -> None:
        if self._entries is not None:
            with self._lock:
                self._entries.clear()
