"""Telegram's flood limits, kept on our side so that 429s are the exception.

About one message per second in any chat, and at most 20 per minute in a group
(FIELD-NOTES.md); a 429's retry_after holds the chat for that long. Time is the
product clock's, so tests run the limits in simulated time.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from core.clock import Clock

CHAT_GAP = timedelta(seconds=1)
GROUP_LIMIT = 20
GROUP_WINDOW = timedelta(seconds=60)
# A quarter second more than Telegram's window, so that rounding never makes a 21st.
MARGIN = timedelta(milliseconds=250)


class Pacer:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._sends: dict[int, deque[datetime]] = {}
        self._held: dict[int, datetime] = {}

    def free_at(self, chat_id: int) -> datetime:
        """The earliest moment a message may go to this chat."""
        now = self.clock.now()
        at = max(now, self._held.get(chat_id, now))
        sends = self._sends.get(chat_id)
        if sends:
            while sends and sends[0] <= now - GROUP_WINDOW:
                sends.popleft()
            if sends:
                at = max(at, sends[-1] + CHAT_GAP)
            if chat_id < 0 and len(sends) >= GROUP_LIMIT:
                at = max(at, sends[-GROUP_LIMIT] + GROUP_WINDOW + MARGIN)
        return at

    def wait_s(self, chat_id: int) -> float:
        return max(0.0, (self.free_at(chat_id) - self.clock.now()).total_seconds())

    def sent(self, chat_id: int) -> None:
        self._sends.setdefault(chat_id, deque()).append(self.clock.now())

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram said 429: nothing goes to this chat for `seconds`."""
        until = self.clock.now() + timedelta(seconds=seconds)
        self._held[chat_id] = max(until, self._held.get(chat_id, until))
