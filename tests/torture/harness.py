"""What the torture tests share: the scale (quick in the normal suite, full under
`make torture`), the service as a real process that can be SIGKILLed and restarted,
signups as the outside world makes them, and the report each torture prints.

`TORTURE=full` (set by `make torture`) selects the full versions. The quick versions
assert outcomes only, never timings.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from app.demo import DEMO_SETTINGS
from app.simulators import MONTHLY_PRICE, Simulators
from sim.loopback import unique_pool
from sim.paddle import envelope, paddle_id, signature_header, subscription_data

ROOT = Path(__file__).parents[2]
FULL = os.environ.get("TORTURE", "") == "full"
T = TypeVar("T")
REPORTED: dict[str, str] = {}  # each torture's last line, for the run's summary

needs_root = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="simulated servers need root"
)


def scale(quick: T, full: T) -> T:
    return full if FULL else quick


def address_pool() -> str:
    """A /16 of loopback of its own (sim/loopback.py): parallel worlds never share one."""
    return unique_pool()


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    return {**env, "PYTHONPATH": str(ROOT)}


@dataclass
class Report:
    """What a torture tried and what it lost; printed, last line `NAME lost=N PASS|FAIL`."""

    name: str
    tried: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # targets missed with nothing lost

    @property
    def ok(self) -> bool:
        return not self.lost and not self.missed

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return f"{self.name} lost={len(self.lost)} {verdict}"

    def print(self) -> None:
        out = [f"== {self.name}", *(f"  tried: {t}" for t in self.tried)]
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  LOST: {item}" for item in self.lost[:50]]
        out += [f"  MISSED: {item}" for item in self.missed]
        out.append(self.line())
        REPORTED[self.name] = self.line()
        print("\n" + "\n".join(out), flush=True)


class ServiceProcess:
    """`openclaw-hosted run` on the simulators' settings; every lifetime's log kept."""

    def __init__(self, sims: Simulators, workdir: Path, **overrides: str) -> None:
        self.sims = sims
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{sims.http_port}"
        self.log = workdir / "service.log"
        settings = sims.env() | {k.upper(): v for k, v in DEMO_SETTINGS.items()}
        settings |= {"ADMIN_RATE_LIMIT_PER_S": "100000"} | overrides
        self.env_file = workdir / "service.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self, timeout_s: float = 60) -> None:
        with self.log.open("a") as log:
            log.write(f"--- start {self.starts}\n")
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app.cli", "--env-file", str(self.env_file), "run",
                cwd=self.workdir, env=clean_env(), stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise AssertionError(f"the service exited: {self.log.read_text()[-2000:]}")
                try:
                    async with session.get(f"{self.url}/healthz") as answer:
                        if answer.status in (200, 503):  # serving (503: a part still starting)
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the service did not start")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        if self.process is None or self.process.returncode is not None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=30)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


def query(database: Path, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


async def until(probe: Callable[[], Awaitable[bool] | bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if not isinstance(result, bool):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.2)
    return False


@dataclass
class Signup:
    """One customer's purchase: a storefront visit, a signed webhook Paddle retries until
    it is acknowledged, and the customer opening the bot with the onboarding token."""

    index: int
    subscription_id: str = ""
    event_id: str = ""
    token: str = ""
    chat_id: int = 0
    acknowledged: bool = False
    attempts: int = 0


async def signup(sims: Simulators, url: str, signup: Signup, *, bind: bool = True) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not signup.token:  # the storefront hands out the onboarding token
            try:
                async with session.get(f"{url}/") as response:
                    page = await response.text()
                marker = 'data-onboarding-token="'
                if marker in page:
                    signup.token = page.split(marker, 1)[1].split('"', 1)[0]
            except aiohttp.ClientError:
                pass
            if not signup.token:
                await asyncio.sleep(0.2)
        customer = sims.paddle.add_customer(f"torture{signup.index}@example.com")
        signup.subscription_id = paddle_id("sub")
        data = subscription_data(
            signup.subscription_id, customer.id, "active", MONTHLY_PRICE,
            custom_data={"onboarding_token": signup.token},
        )  # fmt: skip
        event = envelope("subscription.created", data)
        signup.event_id = event["event_id"]
        while not signup.acknowledged:  # Paddle retries until a 2xx, with a new ntf_ id
            signup.attempts += 1
            body = json.dumps(event).encode()
            headers = {
                "Content-Type": "application/json",
                "Paddle-Signature": signature_header(sims.webhook_secret, body),
            }
            try:
                async with session.post(
                    f"{url}/api/webhook/paddle", data=body, headers=headers
                ) as response:
                    signup.acknowledged = 200 <= response.status < 300
            except (aiohttp.ClientError, TimeoutError):
                pass
            if not signup.acknowledged:
                event = {**event, "notification_id": paddle_id("ntf")}
                await asyncio.sleep(0.3)
    if bind:
        user = sims.telegram.add_user(f"Customer{signup.index}")
        signup.chat_id = sims.telegram.private_chat(user).id
        sims.telegram.send_command(signup.chat_id, user, "start", signup.token)


def duplicates(messages: list[tuple[int, str]]) -> int:
    """Messages said more than once to the same chat (a resend after a crash)."""
    return sum(n - 1 for n in Counter(messages).values() if n > 1)


def bot_messages(sims: Simulators, chat_id: int) -> list[str]:
    return [m.text or "" for m in sims.telegram.bot_messages(chat_id)]
