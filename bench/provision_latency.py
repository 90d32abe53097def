"""From payment to a verified gateway, against the simulators at TIME_SCALE 0.1.

Prints the time from the payment (the instance being recorded) until the reconciler has
made it `active` with its gateway verified, the sum of the simulated waits on the
critical path (create and start actions, boot to SSH, the gateway's start-up and
readiness: what a real Hetzner server and OpenClaw would make us wait), their ratio
(target ≤ 1.10), and the rest of the time, stretch by stretch along the critical path,
so that every bit of overhead has a name.

Run as root (simulated servers live in mount namespaces):
    .venv/bin/python -m bench.provision_latency
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import asyncssh

import provisioner.provisioning as provisioning
from core.billing import Prices
from core.clock import SystemClock
from core.models import ACTOR_API
from core.policy import PolicyTimings
from core.services import build_core
from db.connection import Database
from provisioner.budget import RequestBudget
from provisioner.hetzner import Hetzner
from provisioner.infra import Infra
from provisioner.install import password_hash
from provisioner.outcomes import Outcome
from provisioner.reconciler import Reconciler
from provisioner.records import InstanceRecords
from provisioner.ssh import CommandResult, SshRunner
from sim.hetzner import HetznerSim
from sim.vps import VpsSim
from tests.provisioner.conftest import config_for

TIME_SCALE = 0.1
GATEWAY_STARTUP_S = 10.0
GATEWAY_READY_AFTER_S = 2.0


@dataclass
class Marks:
    """When things happened (time.monotonic()), noted by the wrappers below."""

    steps: list[tuple[str, float, float]] = field(default_factory=list)
    ssh_ready: list[tuple[float, float]] = field(default_factory=list)
    ssh_runs: list[tuple[float, float]] = field(default_factory=list)

    def step_end(self, name: str) -> float:
        return max(end for step, _, end in self.steps if step == name)


class TimedSsh(SshRunner):
    def __init__(self, marks: Marks, private_key_path: Path, port: int) -> None:
        super().__init__(private_key_path, port)
        self.marks = marks

    async def wait_ready(self, *args: Any, **kwargs: Any) -> None:
        begin = time.monotonic()
        await super().wait_ready(*args, **kwargs)
        self.marks.ssh_ready.append((begin, time.monotonic()))

    async def run(self, *args: Any, **kwargs: Any) -> CommandResult:
        begin = time.monotonic()
        try:
            return await super().run(*args, **kwargs)
        finally:
            self.marks.ssh_runs.append((begin, time.monotonic()))


@contextlib.contextmanager
def timed_steps(marks: Marks) -> Iterator[None]:
    """Each provisioning step's calls, timed (the reconciler looks steps up by name)."""
    original = dict(provisioning.STEPS)

    def timed(name: str, step: provisioning.Step) -> provisioning.Step:
        async def run(infra: Infra, instance: aiosqlite.Row) -> Outcome:
            begin = time.monotonic()
            try:
                return await step(infra, instance)
            finally:
                marks.steps.append((name, begin, time.monotonic()))

        return run

    provisioning.STEPS.update({name: timed(name, step) for name, step in original.items()})
    try:
        yield
    finally:
        provisioning.STEPS.update(original)


async def measure(workdir: Path) -> None:
    key_path = workdir / "id_ed25519"
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(key_path)
    hetzner_sim = HetznerSim(token="bench", time_scale=TIME_SCALE, address_pool="127.77.0.0/16")
    await hetzner_sim.start()
    vps = VpsSim(hetzner_sim, base_dir=workdir / "vps", gateway_startup_s=GATEWAY_STARTUP_S,
                 gateway_ready_after_s=GATEWAY_READY_AFTER_S)  # fmt: skip
    await vps.start()
    db = await Database.open(workdir / "bench.db")
    clock = SystemClock()
    http = aiohttp.ClientSession()
    core = build_core(db, clock, timings=PolicyTimings(), prices=Prices("pri_a", "pri_b"),
                      lifetime_cap=100)  # fmt: skip
    hetzner = Hetzner("bench", hetzner_sim.url, budget=RequestBudget(), clock=clock)
    config = config_for(key.export_public_key("openssh").decode().strip(), start_grace_s=90,
                        ssh_ready_timeout_s=600)  # fmt: skip
    marks = Marks()
    infra = Infra(config, db, clock, hetzner, TimedSsh(marks, key_path, 2222), http,
                  InstanceRecords(db, clock))  # fmt: skip
    reconciler = Reconciler(infra)
    wall_offset = time.time() - time.monotonic()  # the command log keeps time.time()
    try:
        with timed_steps(marks):
            started = time.monotonic()
            result = await core.admin.provision("bench@example.com", None, None, ACTOR_API)
            await reconciler.settle()
            total = time.monotonic() - started
        row = await db.fetch_one(
            "SELECT status, hetzner_server_id FROM instances WHERE id = ?", (result.instance_id,)
        )
        assert row is not None and row[0] == "active", f"not active: {row and row[0]}"
        machine = vps.vps(int(row[1]))
        ssh_up = machine.ssh.listening_since if machine.ssh else None
        gateway_start = machine.gateway.started_at
        records = list(machine.commands.records)
        actions = {a.command: a for a in hetzner_sim.state.actions.values()}
    finally:
        await reconciler.stop()
        hetzner.close()
        await http.close()
        await db.close()
        await vps.stop()
        await hetzner_sim.stop()

    durations = hetzner_sim.state.durations
    waits = {
        "create action": durations.create * TIME_SCALE,
        "start action": durations.start * TIME_SCALE,
        "boot to SSH": durations.boot * TIME_SCALE,
        "gateway start-up": GATEWAY_STARTUP_S * TIME_SCALE,
        "gateway readiness": GATEWAY_READY_AFTER_S * TIME_SCALE,
    }
    simulated = sum(waits.values())
    print(f"payment → verified gateway: {total:.2f} s at TIME_SCALE {TIME_SCALE}")
    print(f"simulated waits on the critical path: {simulated:.2f} s")
    print("  " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in waits.items()))
    print(f"ratio total/simulated = {total / simulated:.2f} (target ≤ 1.10)")

    # The critical path, point by point: each stretch is either a simulated wait or
    # overhead (ours, or the simulator's own).
    create = actions["create_server"]
    start = actions["start_server"]
    running = start.started_at + start.duration  # the start action's end
    booted = running + waits["boot to SSH"]
    script = min(r.started for r in records if r.via == "ssh" and r.command == "bash -s")
    script -= wall_offset
    assert ssh_up is not None and gateway_start is not None
    ready = gateway_start + waits["gateway start-up"] + waits["gateway readiness"]
    polls = [r.started - wall_offset for r in records if "/readyz" in r.command]
    noticed = min((t for t in polls if t >= ready), default=ready)
    shims = [r for r in records if r.via == "shim" and script <= r.started - wall_offset]
    before_gateway = [r for r in shims if r.started - wall_offset <= gateway_start]
    scrypt_began = time.monotonic()
    password_hash("x" * 32)
    scrypt = time.monotonic() - scrypt_began
    calls = f"{len(before_gateway)} simulated tool calls and the commands around them"
    stretches = [
        (create.started_at, "until the create request (DB, Hetzner API: key, firewall...)"),
        (running, None),
        (booted, None),
        (ssh_up, "SSH up after the simulated boot (the simulator's own boot work)"),
        (marks.ssh_ready[-1][1], "SSH noticed (polling) and a test connection made and closed"),
        (script, "to the script's start (reconciler, the install's SSH connection)"),
        (gateway_start, f"install script until the gateway starts ({calls})"),
        (ready, None),
        (noticed, "readiness noticed (the script polls /readyz every 0.2 s)"),
        (marks.ssh_runs[-1][1], "the rest of the script (security audit) and SSH's end"),
        (marks.step_end("install"), f"provision log, password hash (scrypt ≈ {scrypt:.2f} s)"),
        (started + total, "verify, announce, reconciler until settled"),
    ]
    print(f"the other {total - simulated:.2f} s, along the critical path:")
    at = started
    for point, overhead in stretches:
        if overhead is not None:
            print(f"  {point - at:6.2f} s  {overhead}")
        at = point
    steps: dict[str, float] = {}
    for name, begin, end in marks.steps:
        steps[name] = steps.get(name, 0.0) + end - begin
    print("steps (wall clock): " + ", ".join(f"{n} {s:.2f}" for n, s in steps.items()))
    print(f"simulated tool calls in the install: {len(shims)}")


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(measure(Path(workdir)))


if __name__ == "__main__":
    main()
