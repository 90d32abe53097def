"""Memory: peak RSS of `openclaw-hosted run` holding 10,000 instances, over its idle RSS.

First the service starts on an empty database against the simulators and its RSS is
read once idle. Then it starts again on a database of 10,000 active instances whose
gateways answer on loopback (`sim/gateways.py` in a child process, a tenth hung) and
whose servers are listed by the Hetzner simulator; its scheduler runs every monitor
job once (the health sweep, the VPS status check, …), then a burst of signed
webhooks arrives. VmHWM (the peak) over the idle VmRSS must be ≤ 1.3.

    .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from app.simulators import Simulators
from bench._fleet import add_servers, populate
from bench._support import ServiceProcess, free_port, raise_file_limit, rss_kib, verdict
from bench.health_sweep import COUNT, NETWORK, PORT
from bench.webhook_ingest import CONCURRENCY, _post, requests
from sim.gateways import GatewayFleetSim

NAME = "memory"
BURST = 3000
JOBS = ("health", "vps_status", "resources")


async def wait_jobs(db_path: Path, pid: int, timeout_s: float = 300) -> float:
    """Until the scheduler's first runs of JOBS have finished; returns how long it took.
    Prints the RSS each second and the jobs finished by then."""
    began = time.monotonic()
    timeline: list[str] = []
    while time.monotonic() - began < timeout_s:
        with sqlite3.connect(db_path) as conn:
            done = [row[0] for row in conn.execute(
                "SELECT job FROM job_runs WHERE last_finished_at IS NOT NULL ORDER BY job"
            )]  # fmt: skip
        rss, peak = rss_kib(pid)
        timeline.append(f"{time.monotonic() - began:4.0f} s {rss / 1024:5.0f} MiB "
                        f"(peak {peak / 1024:5.0f}) done: {', '.join(done) or '-'}")  # fmt: skip
        if all(job in done for job in JOBS):
            print("the monitor's first runs, RSS each second:")
            print("\n".join("  " + line for line in timeline))
            return time.monotonic() - began
        await asyncio.sleep(1)
    raise TimeoutError(f"monitor jobs {JOBS} did not finish in {timeout_s:.0f} s")


async def burst(url: str, secret: str) -> float:
    source = requests(secret)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    began = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with slots:
                await _post(session, url, next(source))

        await asyncio.gather(*(one() for _ in range(BURST)))
    return time.monotonic() - began


async def measure(workdir: Path) -> bool:
    raise_file_limit(8192)
    sims = Simulators(workdir / "sim", time_scale=0.1, http_port=free_port())
    await sims.start()
    try:
        idle_db = workdir / "idle.db"
        service = ServiceProcess(sims, workdir, DATABASE_PATH=str(idle_db))
        await service.start()
        await asyncio.sleep(8)  # past the scheduler's first runs (5 s after start-up)
        idle, _ = rss_kib(service.pid)
        await service.stop()

        ips = GatewayFleetSim(NETWORK, COUNT, port=PORT).ips
        fleet_db = workdir / "fleet.db"
        await populate(fleet_db, COUNT, 0, ips=ips)
        add_servers(sims.hetzner, COUNT)
        sims.hetzner.state.server_limit = COUNT * 2
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.health_sweep", "--fleet",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert child.stdout is not None and child.stdin is not None
        if await child.stdout.readline() != b"ready\n":
            raise RuntimeError("the gateway fleet did not start")
        service = ServiceProcess(sims, workdir, DATABASE_PATH=str(fleet_db),
                                 GATEWAY_PORT=str(PORT))  # fmt: skip
        try:
            await service.start()
            loaded, _ = rss_kib(service.pid)
            jobs_s = await wait_jobs(fleet_db, service.pid)
            after_jobs, _ = rss_kib(service.pid)
            burst_s = await burst(service.url + "/api/webhook/paddle", sims.webhook_secret)
            rss, peak = rss_kib(service.pid)
        finally:
            await service.stop()
            child.stdin.close()
            await child.wait()
    finally:
        await sims.stop()
    mib = 1024
    print(f"idle, no instances:                 VmRSS {idle / mib:7.1f} MiB")
    print(f"10,000 instances, started:          VmRSS {loaded / mib:7.1f} MiB")
    print(f"after the monitor's jobs ({jobs_s:.0f} s):    VmRSS {after_jobs / mib:7.1f} MiB")
    print(f"after a burst of {BURST} webhooks ({burst_s:.1f} s): VmRSS {rss / mib:7.1f} MiB")
    print(f"peak (VmHWM) {peak / mib:.1f} MiB; ratio peak/idle = {peak / idle:.3f} (target ≤ 1.3)")
    return verdict(NAME, peak / idle, 1.3)


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        ok = asyncio.run(measure(Path(workdir)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
