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
    """A clock that only moves when told.

    By default `sleep` advances it instead of waiting (every wait is instant). With
    `autoadvance=False` a sleeper waits until `advance` moves the clock past its wake
    time, so a test decides exactly when a timeout fires while real I/O goes on.
    """

    def __init__(self, start: datetime | None = None, *, autoadvance: bool = True) -> None:
        self._now = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
        self.autoadvance = autoadvance
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if self.autoadvance:
            self._now += timedelta(seconds=max(0.0, seconds))
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + timedelta(seconds=max(0.0, seconds)), wake))
        await wake

    def advance(self, delta: timedelta) -> None:
        self._now += delta
        due = [(at, wake) for at, wake in self._sleepers if at <= self._now]
        self._sleepers = [(at, wake) for at, wake in self._sleepers if at > self._now]
        for _, wake in due:
            if not wake.done():
                wake.set_result(None)

    @property
    def sleepers(self) -> int:
        """Sleepers still waiting (cancelled ones included until the clock passes them)."""
        return sum(1 for _, wake in self._sleepers if not wake.done())


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
