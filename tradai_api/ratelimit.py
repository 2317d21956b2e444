"""In-process token buckets per client (the token's subject, else the client's address).

Each API process counts on its own: with N replicas behind a load balancer a client gets up to N
times the limit, which is acceptable for a guard against runaway scripts (it is not billing).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from tradai_api.settings import RateLimit

# How often idle buckets are forgotten (a bucket idle for its whole period is full again, the same
# as a new one), which bounds memory under many distinct clients.
EVICTION_INTERVAL_SECONDS = 60.0


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        # (bucket, client) -> (tokens, last update, refill period)
        self._buckets: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._lock = threading.Lock()
        self._last_eviction = clock()

    def acquire(self, client: str, limits: dict[str, RateLimit]) -> float | None:
        """Take one token from each named bucket of the client; None when granted, else the seconds
        until every bucket has a token again (nothing is taken then)."""
        with self._lock:
            now = self._clock()
            self._evict_idle(now)
            levels = {}
            wait = 0.0
            for name, limit in limits.items():
                rate = limit.requests / limit.seconds
                tokens, at, _ = self._buckets.get((name, client), (float(limit.requests), now, limit.seconds))
                tokens = min(float(limit.requests), tokens + (now - at) * rate)
                levels[name] = tokens
                if tokens < 1.0:
                    wait = max(wait, (1.0 - tokens) / rate)
            if wait > 0:
                return wait
            for name, tokens in levels.items():
                self._buckets[(name, client)] = (tokens - 1.0, now, limits[name].seconds)
            return None

    def _evict_idle(self, now: float) -> None:
        if now - self._last_eviction < EVICTION_INTERVAL_SECONDS:
            return
        self._last_eviction = now
        for key in [k for k, (_, at, period) in self._buckets.items() if now - at >= period]:
            del self._buckets[key]


def retry_after_header(wait_seconds: float) -> str:
    """Retry-After takes whole seconds; rounding down would invite a retry that fails again."""
    return str(max(1, math.ceil(wait_seconds)))
