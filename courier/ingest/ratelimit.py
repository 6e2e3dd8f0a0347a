"""A token bucket per stream: `rate` payloads per second, bursts up to one second's worth."""

from __future__ import annotations

import math
import time


class TokenBucket:
    """Not thread-safe: one per stream per event loop (each server process has its own)."""

    def __init__(self, rate: float, burst: float | None = None):
        if rate <= 0:
            raise ValueError(f"rate must be above zero, got {rate}")
        self.rate = float(rate)
        self.capacity = max(float(burst if burst is not None else rate), 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self, now: float | None = None) -> float:
        """0.0 when one payload may pass now; otherwise the seconds until it could."""
        current = time.monotonic() if now is None else now
        elapsed = current - self.updated
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = current
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
