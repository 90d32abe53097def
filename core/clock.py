"""The product's only source of `now()` and `sleep()`.

Every wait, backoff and deadline goes through a `Clock`, so tests jump time
instantly with `FakeClock` and the demo travels in time with an offset.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time, plus an optional offset for the demo's time travel."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def travel(self, delta: timedelta) -> None:
        self.offset += delta


class FakeClock:
    """A clock that only moves when told; `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self._now += timedelta(seconds=max(0.0, seconds))
        await asyncio.sleep(0)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def to_iso(moment: datetime) -> str:
    """UTC with microseconds and a `Z` suffix: the one timestamp format in the database and
    API (fixed width, so text comparison in SQL orders them correctly)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str) -> datetime:
    """Parse our own and Paddle's ISO 8601 timestamps (which carry microseconds and `Z`)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 9999 with a negative offset, say
        raise ValueError(f"timestamp out of range: {text[:40]}") from None
