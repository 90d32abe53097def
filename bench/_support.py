"""What the benchmarks share: the service as a subprocess, a bare aiohttp server, figures.

Every benchmark ends with one line `NAME ratio=… target=… PASS|FAIL` (`verdict`).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from app.simulators import Simulators, env_block
from sim.hetzner_state import _loopback_addresses


def verdict(name: str, ratio: float, target: float, *, at_most: bool = True) -> bool:
    ok = ratio <= target if at_most else ratio >= target
    sign = "≤" if at_most else "≥"
    print(f"{name} ratio={ratio:.3f} target={sign}{target} {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


def own_addresses(sims: Simulators) -> str:
    """Give the simulated servers a /16 of loopback of their own: other simulators on this
    machine (tests, the demo) use 127.1.0.0/16 with the same SSH port."""
    pool = f"127.{random.randint(120, 250)}.0.0/16"
    sims.hetzner.state._addresses = _loopback_addresses(pool)
    return pool


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_file_limit(wanted: int) -> int:
    """Raise the open-file limit towards `wanted` (the hard limit too, when allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):  # no CAP_SYS_RESOURCE: up to the hard limit
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


async def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


class ServiceProcess:
    """`openclaw-hosted run` against the simulators, as a child process."""

    def __init__(self, sims: Simulators, workdir: Path, **extra: str) -> None:
        self.sims = sims
        self.env_file = workdir / "bench.env"
        self.log_file = workdir / "service.log"
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sims.http_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        env = self.sims.env() | self.extra
        self.env_file.write_text(env_block(env))
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                [sys.executable, "-m", "app.cli", "--env-file", str(self.env_file), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k not in env},
            )
        await wait_http(self.url + "/healthz")

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        self.process = None


class BareServer:
    """An aiohttp handler that reads the body and answers 200, in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            [sys.executable, "-m", "bench._support", str(self.port)],
        )
        await wait_http(self.url + "/")

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait)
            self.process = None


def _serve_bare(port: int) -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    _serve_bare(int(sys.argv[1]))
