"""The one request budget for Hetzner's API, shared by every call in the process.

Hetzner allows 3600 requests an hour per project, refilling one a second. hcloud
neither reads the `RateLimit-*` headers nor paces itself, and its transport retries
happen inside its own thread. So the budget sits in the HTTP session itself: every
request hcloud sends (its retries and our action polls included) first takes a token,
and every response re-synchronises the bucket with what Hetzner says is left.

Requests run in worker threads, so `acquire` blocks its thread, never the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

LONG_HORIZON_S = 10.0


class RequestBudget:
    """A thread-safe token bucket that learns Hetzner's real state from its headers."""

    def __init__(
        self,
        capacity: float = 3600,
        refill_per_s: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.capacity = capacity
        self.refill_per_s = refill_per_s
        self._tokens = capacity
        self._updated = monotonic()
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests = 0  # how many requests were sent through the budget
        self.in_flight = 0  # sent, answer not yet seen
        self.waited_s = 0.0  # total time threads waited for a token

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.refill_per_s)
        self._updated = now

    def acquire(self) -> None:
        """Take one token, waiting in this (worker) thread until one is there."""
        while True:
            with self._lock:
                now = self._monotonic()
                self._refill(now)
                if self._tokens >= 1:
                    self._tokens -= 1
                    self.requests += 1
                    self.in_flight += 1
                    return
                wait = (1 - self._tokens) / self.refill_per_s
            self.waited_s += wait
            self._sleep(wait)

    def done(self) -> None:
        """A request ended without an answer to learn from (a network error)."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Believe Hetzner: `RateLimit-Remaining` caps our count, and the time to a full
        bucket (`RateLimit-Reset`, a Unix time) tells the real refill rate."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
            try:
                limit = float(headers["RateLimit-Limit"])
                remaining = float(headers["RateLimit-Remaining"])
            except (KeyError, ValueError):
                return
            self._refill(self._monotonic())
            self.capacity = limit
            # Requests still in flight may not be counted in `remaining` yet: assume not.
            self._tokens = min(self._tokens, remaining - self.in_flight)
            reset = headers.get("RateLimit-Reset")
            if reset is not None and remaining < limit:
                try:
                    seconds_to_full = float(reset) - time.time()
                except ValueError:
                    return
                # Reset is a whole second: a second more than it says makes every
                # estimate err slow. Over a long horizon that rounding hardly matters,
                # so believe the estimate either way (a slower bucket than we assumed);
                # over a short one it is noisy, so let it only speed us up.
                if seconds_to_full > 0:
                    estimate = (limit - remaining) / (seconds_to_full + 1)
                    if seconds_to_full >= LONG_HORIZON_S:
                        self.refill_per_s = estimate
                    else:
                        self.refill_per_s = max(self.refill_per_s, estimate)

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill(self._monotonic())
            return self._tokens


class BudgetedSession(requests.Session):
    """The `requests.Session` hcloud uses, with every request paid for from the budget."""

    def __init__(self, budget: RequestBudget) -> None:
        super().__init__()
        self.budget = budget
        self.rate_limited = 0  # 429s seen: with a working budget, none

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.budget.acquire()
        try:
            response = super().request(method, url, *args, **kwargs)
        except BaseException:
            self.budget.done()
            raise
        if response.status_code == 429:
            self.rate_limited += 1
        self.budget.observe(response.headers)
        return response
