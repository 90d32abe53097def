"""What the demo shows in the terminal: the ops group's and the customer's Telegram
chats as they happen, with timestamps, and a one-line status bar of the instance.

It reads the Telegram simulator's chats (the same messages a phone would show) and
the admin API (what an operator's dashboard would show); it changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sim.telegram import TelegramSim

POLL_S = 0.1
STATUS_EVERY = 5  # polls: the status bar asks the admin API twice a second
INDENT = " " * 22


@dataclass
class ChatLine:
    at: float  # seconds since the demo began
    chat: str  # "ops" | "customer"
    sender: str
    text: str


@dataclass
class DemoView:
    telegram: TelegramSim
    say: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)
    lines: list[ChatLine] = field(default_factory=list)
    _chats: dict[str, int] = field(default_factory=dict)
    _seen: dict[int, int] = field(default_factory=dict)
    _status: str = ""
    _task: asyncio.Task[None] | None = None

    def watch(self, label: str, chat_id: int) -> None:
        self._chats[label] = chat_id
        self._seen.setdefault(chat_id, 0)

    def clock(self) -> str:
        elapsed = time.monotonic() - self.started
        return f"{int(elapsed // 60):02d}:{elapsed % 60:04.1f}"

    def note(self, text: str) -> None:
        """A line of narration: what the demo does next (after what already happened)."""
        self.flush()
        self.say(f"[{self.clock()}] ── {text}")

    def start(self, status: Callable[[], Any] | None = None) -> None:
        self._task = asyncio.create_task(self._run(status), name="demo view")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()

    def flush(self) -> None:
        """Print every chat message not printed yet, in the order they were sent."""
        fresh: list[tuple[int, str, Any]] = []
        for label, chat_id in self._chats.items():
            messages = self.telegram.transcript(chat_id)
            for message in messages[self._seen[chat_id] :]:
                fresh.append((message.date, label, message))
            self._seen[chat_id] = len(messages)
        for _, label, message in sorted(fresh, key=lambda item: (item[0], item[2].message_id)):
            if message.service or not (message.text or message.caption):
                continue
            sender = self.telegram.users[message.sender_id]
            name = "🤖 bot" if message.from_bot else sender.first_name
            text = (message.text or message.caption or "").strip()
            self.lines.append(ChatLine(time.monotonic() - self.started, label, name, text))
            first, *rest = text.splitlines() or [""]
            self.say(f"[{self.clock()}] {label:>8} │ {name}: {first}")
            for line in rest:
                if line.strip():
                    self.say(f"{INDENT}{line}")

    def show_status(self, status: str) -> None:
        if status and status != self._status:
            self._status = status
            self.say(f"[{self.clock()}] {'status':>8} ▌ {status}")

    async def _run(self, status: Callable[[], Any] | None) -> None:
        for tick in itertools.count():
            self.flush()
            if status is not None and tick % STATUS_EVERY == 0:
                with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                    self.show_status(await status())
            await asyncio.sleep(POLL_S)

    def texts(self, chat: str) -> list[str]:
        return [line.text for line in self.lines if line.chat == chat]


def status_line(instance: dict[str, Any]) -> str:
    """The one-line status bar: who, what state, what health, where."""
    if not instance:
        return "no instance yet"
    parts = [
        instance["instance_id"],
        f"{instance['status']}" + (f" ({instance['step']})" if instance.get("step") else ""),
        f"desired {instance['desired_state']}",
        f"health {instance.get('health_status') or 'unknown'}",
    ]
    if instance.get("server_ip"):
        parts.append(f"server {instance['server_name']} {instance['server_ip']}")
    return " · ".join(parts)
