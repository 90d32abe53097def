"""Health sweep: 10,000 instances, a tenth of their gateways hanging.

The gateways are `sim/gateways.py` listeners on 10,000 loopback addresses, in a child
process (as real gateways are elsewhere); every tenth accepts and never answers. The
product's `HealthSweep` runs with the default timeout and concurrency on the real
clock: its duration over the default `HEALTH_CHECK_INTERVAL_S` must be ≤ 0.1. Then
the VPS-status check lists the same fleet from the Hetzner simulator (10,000 running
servers in its state): it must cost exactly ceil(N / 50) Hetzner calls.

    .venv/bin/python -m bench.health_sweep
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from bench._fleet import add_servers, populate
from bench._support import raise_file_limit, rss_kib, verdict
from core.clock import SystemClock
from core.health import HealthRecorder
from core.settings import Settings
from db.connection import Database
from monitor.health import HealthSweep
from monitor.vps_status import VpsStatusCheck
from provisioner.budget import RequestBudget
from provisioner.hetzner import Hetzner
from sim.gateways import GatewayFleetSim
from sim.hetzner import HetznerSim

NAME = "health_sweep"
COUNT = 10_000
HUNG_EVERY = 10
NETWORK = "127.96.0.0/16"
PORT = 18789
PAGE = 50


def default(name: str) -> float:
    value = Settings.model_fields[name].default
    assert isinstance(value, int | float)
    return float(value)


async def serve_fleet() -> None:
    """The child: the gateways, every tenth hung, until stdin closes."""
    raise_file_limit(COUNT + 4 * int(default("health_check_concurrency")) + 1024)
    fleet = GatewayFleetSim(NETWORK, COUNT, port=PORT)
    await fleet.start()
    for ip in fleet.ips[::HUNG_EVERY]:
        await fleet.set_state(ip, "hung")
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await fleet.stop()


async def measure(workdir: Path) -> bool:
    interval = default("health_check_interval_s")
    timeout = default("health_check_timeout_s")
    concurrency = int(default("health_check_concurrency"))
    raise_file_limit(4 * concurrency + 1024)
    ips = GatewayFleetSim(NETWORK, COUNT, port=PORT).ips
    path = workdir / "fleet.db"
    await populate(path, COUNT, 0, ips=ips)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.health_sweep", "--fleet",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    if await child.stdout.readline() != b"ready\n":
        raise RuntimeError("the gateway fleet did not start")
    db = await Database.open(path)
    clock = SystemClock()
    try:
        sweeper = HealthSweep(
            db, clock, HealthRecorder(db), gateway_port=PORT, timeout_s=timeout,
            concurrency=concurrency, start_grace_s=default("start_grace_s"),
        )  # fmt: skip
        rss_before = rss_kib(os.getpid())[0]
        began = time.monotonic()
        summary = await sweeper.sweep()
        seconds = time.monotonic() - began
        sweep_peak = rss_kib(os.getpid())[1]
    finally:
        child.stdin.close()
        await child.wait()
    hung = math.ceil(COUNT / HUNG_EVERY)
    print(f"health sweep of {summary.checked} instances, {summary.failed} failed "
          f"({hung} hung), timeout {timeout:.0f} s, concurrency {concurrency}")  # fmt: skip
    floor = hung * timeout / concurrency
    print(f"  took {seconds:.1f} s (hung checks alone hold the slots for {floor:.1f} s); "
          f"max in flight {summary.max_in_flight}")  # fmt: skip
    print(f"  this process's RSS: {rss_before / 1024:.0f} MiB before, peak {sweep_peak / 1024:.0f} "
          f"MiB during the sweep")  # fmt: skip
    ratio = seconds / interval
    print(f"  ratio sweep/HEALTH_CHECK_INTERVAL_S({interval:.0f}) = {ratio:.3f} (target ≤ 0.1)")

    hetzner_sim = HetznerSim(token="bench", time_scale=0.0)
    await hetzner_sim.start()
    add_servers(hetzner_sim, COUNT)
    hetzner = Hetzner("bench", hetzner_sim.url, budget=RequestBudget(), clock=clock)
    try:
        began = time.monotonic()
        status = await VpsStatusCheck(db, clock, hetzner).check()
        status_s = time.monotonic() - began
        status_peak = rss_kib(os.getpid())[1]
    finally:
        hetzner.close()
        await hetzner_sim.stop()
        await db.close()
    expected = math.ceil(COUNT / PAGE)
    print(f"VPS status of {status.listed} servers: {status.calls} Hetzner calls "
          f"(expected ceil({COUNT}/{PAGE}) = {expected}), {status.anomalies} anomalies, "
          f"{status.orphans} orphans, {status_s:.1f} s")  # fmt: skip
    print(f"  this process's peak RSS after it: {status_peak / 1024:.0f} MiB (the simulator's "
          f"10,000 servers included)")  # fmt: skip
    calls_ok = status.calls == expected
    print(f"{NAME}_vps_status ratio={status.calls / expected:.3f} target==1.0 "
          f"{'PASS' if calls_ok else 'FAIL'}")  # fmt: skip
    return verdict(NAME, ratio, 0.1) and calls_ok


def main() -> None:
    if sys.argv[1:] == ["--fleet"]:
        asyncio.run(serve_fleet())
        return
    with tempfile.TemporaryDirectory() as workdir:
        ok = asyncio.run(measure(Path(workdir)))
    sys.exit(0 if ok else 1)  # make bench goes on (`-`): every figure is printed


if __name__ == "__main__":
    main()
