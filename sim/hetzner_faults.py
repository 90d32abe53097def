"""Request-level behaviour of the simulated API: the rate limit and scripted faults.

Paths are matched without the `/v1` prefix, with shell-style wildcards (`*` also
crosses `/`), e.g. `/servers`, `/servers/*/actions/poweroff`, `/actions/*`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sim.hetzner_rules import ApiError


class TokenBucket:
    """Hetzner's limit: `capacity` requests, refilled at `refill_per_s` (3600, 1/s by
    default). Refill runs `1 / time_scale` times faster, like every simulated delay."""

    def __init__(
        self,
        capacity: int = 3600,
        refill_per_s: float = 1.0,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.configure(capacity, refill_per_s, time_scale)

    def configure(self, capacity: int, refill_per_s: float, time_scale: float) -> None:
        self.capacity = capacity
        self.rate = refill_per_s / time_scale if time_scale > 0 else math.inf
        self._tokens = float(capacity)
        self._at = self._clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.capacity), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> bool:
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    @property
    def remaining(self) -> int:
        self._refill()
        return int(self._tokens)

    def headers(self) -> dict[str, str]:
        """`RateLimit-Reset` is the UNIX time at which the bucket is full again."""
        missing = self.capacity - self.remaining
        if self.rate == math.inf or missing <= 0:
            seconds = 0.0
        else:  # a bucket that never refills (tests) resets "in a year"
            seconds = missing / self.rate if self.rate > 0 else 365 * 86400.0
        return {
            "RateLimit-Limit": str(self.capacity),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(time.time() + seconds)),
        }


@dataclass
class RouteFault:
    method: str
    path: str
    error: ApiError
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and fnmatchcase(path, self.path)


@dataclass
class Latency:
    method: str
    path: str
    seconds: float
    after: bool  # delay the answer after the request took effect (client timeouts)
    remaining: int | None = None  # None: every matching call

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and fnmatchcase(path, self.path)


# Chaos: what a random failure may be, and where it makes sense.
CHAOS_ANYWHERE = ("server_error", "rate_limit_exceeded", "timeout", "unavailable")


class RouteFaults:
    def __init__(self) -> None:
        self.failures: list[RouteFault] = []
        self.latencies: list[Latency] = []
        self.chaos_rate = 0.0
        self.chaos_rng = random.Random()
        self.chaos_injected = 0

    def set_chaos(self, rate: float, *, seed: int | None = None) -> None:
        """Fail this fraction of requests at random: 5xx, 429, 504, and where they make
        sense `resource_unavailable` (creating a server) and `locked` (server actions)."""
        self.chaos_rate = rate
        if seed is not None:
            self.chaos_rng.seed(seed)

    def _chaos(self, method: str, path: str) -> ApiError | None:
        if not self.chaos_rate or self.chaos_rng.random() >= self.chaos_rate:
            return None
        codes = list(CHAOS_ANYWHERE)
        if method == "POST" and path == "/servers":
            codes.append("resource_unavailable")
        if method == "POST" and fnmatchcase(path, "/servers/*/actions/*"):
            codes.append("locked")
        self.chaos_injected += 1
        code = self.chaos_rng.choice(codes)
        return ApiError(code, f"simulated chaos: {code}")

    def fail_next(
        self,
        method: str,
        path: str,
        code: str,
        *,
        status: int | None = None,
        message: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method path` answer with this error instead."""
        error = ApiError(code, message or f"simulated {code}", status=status)
        self.failures.append(RouteFault(method.upper(), path, error, times))

    def take_failure(self, method: str, path: str) -> ApiError | None:
        for fault in self.failures:
            if fault.remaining > 0 and fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.failures.remove(fault)
                return fault.error
        return self._chaos(method, path)

    def add_latency(
        self,
        seconds: float,
        method: str = "*",
        path: str = "*",
        *,
        after: bool = False,
        times: int | None = None,
    ) -> None:
        """Delay matching calls by `seconds` of wall time (not scaled: it exists to
        exercise client timeouts, which are wall time too)."""
        self.latencies.append(Latency(method.upper(), path, seconds, after, times))

    def delay(self, method: str, path: str, *, after: bool) -> float:
        total = 0.0
        for rule in list(self.latencies):
            if rule.after == after and rule.matches(method, path):
                total += rule.seconds
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.latencies.remove(rule)
        return total

    def clear(self) -> None:
        self.failures.clear()
        self.latencies.clear()
