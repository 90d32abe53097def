"""`openclaw-hosted run` as a real process against simulated Hetzner and customer
servers, started, SIGKILLed and started again by the crash tests."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import IO

import aiohttp

from sim.hetzner import HetznerSim
from tests.conftest import base_settings
from tests.provisioner.conftest import TOKEN

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """The settings written once to `<tmp_path>/.env`; `start()` may be called again
    after each kill, and returns once the service answers /healthz."""

    def __init__(self, tmp_path: Path, hetzner: HetznerSim, stderr: IO[bytes] | None = None):
        self.tmp_path, self.stderr = tmp_path, stderr
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = tmp_path / "db" / "test.db"
        settings = {k.upper(): v for k, v in base_settings(tmp_path).items()}
        settings |= {
            "HTTP_PORT": str(self.port), "HCLOUD_ENDPOINT": hetzner.url, "HCLOUD_TOKEN": TOKEN,
            "SSH_PORT": "2222", "START_GRACE_S": "5", "ADMIN_RATE_LIMIT_PER_S": "1000",
        }  # fmt: skip
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
        self.env = {**env, "PYTHONPATH": str(ROOT)}

    async def start(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "run", cwd=self.tmp_path, env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=self.stderr or asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        # Start-up imports take seconds on a busy machine.
        async with aiohttp.ClientSession() as session, asyncio.timeout(60):
            while True:  # serving (503: a part is down, Telegram here)
                try:
                    async with session.get(f"{self.base}/healthz") as response:
                        if response.status in (200, 503):
                            return process
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.025)
