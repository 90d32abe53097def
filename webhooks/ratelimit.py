"""Per-client-IP token buckets for the admin API and the storefront.

X-Forwarded-For is believed only when the connection comes from a trusted proxy,
and then only up to the first address that is not a trusted proxy itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from core.clock import Clock

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_TRACKED_CLIENTS = 10_000


def client_ip(remote: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    peer = remote or "unknown"
    if not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return hops[0] if hops and _is_ip(hops[0]) else peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` requests per second per key, with a burst of the same size."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, client: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token) for one request from `client`."""
        key = _bucket_key(client)
        now = self.clock.now().timestamp()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_CLIENTS:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, 0.0
        return False, (1 - bucket.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no information."""
        full_after = self.capacity / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED_CLIENTS:  # a flood of distinct clients
            # Forget the longest idle half, never everyone: a reset must not be a way in.
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for stale in by_age[: len(by_age) // 2]:
                del self._buckets[stale]


def _bucket_key(client: str) -> str:
    """IPv6 clients are limited per /64: one host can hold a whole /64 of addresses."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return client
