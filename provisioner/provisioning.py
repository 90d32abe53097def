"""The provisioning steps, each idempotent: project → create → boot → install → verify →
announce. A step returns an outcome; the reconciler persists it before the next."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import aiosqlite

import provisioner.gateway as gateway
from core.clock import to_iso
from core.ids import server_name
from core.rollout_store import target_version
from provisioner.cloud_init import new_host_key, user_data
from provisioner.config import MANAGED_LABEL, MANAGED_SELECTOR, MANAGED_VALUE, ProvisionerConfig
from provisioner.hetzner import ErrorKind, Hetzner, HetznerError, ServerInfo
from provisioner.infra import Infra
from provisioner.install import install_script, new_gateway_password, password_hash
from provisioner.outcomes import Fail, Next, Outcome, Retry, Wait
from provisioner.ssh import HostKeyMismatch, SshUnavailable

PROJECT_NAME = "openclaw-hosted"
LIMIT_WAIT_S = 300.0

Step = Callable[[Infra, aiosqlite.Row], Awaitable[Outcome]]


async def ensure_key_and_firewall(hetzner: Hetzner, config: ProvisionerConfig) -> int:
    """The project's SSH key and firewall (both idempotent); also used by `image build`,
    which has no `Infra`."""
    key_id = await hetzner.ensure_ssh_key(PROJECT_NAME, config.ssh_public_key)
    await hetzner.ensure_firewall(PROJECT_NAME, config.firewall_rules(), MANAGED_SELECTOR)
    return key_id


async def ensure_project(infra: Infra) -> int:
    """The SSH key and the firewall, once per process (both are idempotent anyway)."""
    async with infra.project_lock:  # twenty new instances at once ensure them once
        if infra.ssh_key_id is None:
            infra.ssh_key_id = await ensure_key_and_firewall(infra.hetzner, infra.config)
        return infra.ssh_key_id


async def project(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    await ensure_project(infra)
    return Next("create")


def _locations(infra: Infra, current: str | None) -> list[str]:
    """The configured locations, starting from the one this instance last tried."""
    locations = list(infra.config.locations)
    if current in locations:
        start = locations.index(current)
        locations = locations[start:] + locations[:start]
    return locations


async def _servers_in_use(infra: Infra) -> int:
    row = await infra.db.fetch_one(
        "SELECT COUNT(*) FROM instances WHERE hetzner_server_id IS NOT NULL "
        "AND status != 'destroyed'"
    )
    return int(row[0]) if row else 0


async def create(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    instance_id = instance["id"]
    name = server_name(instance_id)
    existing = await infra.hetzner.server_by_name(name)
    if existing is not None:  # the name is the idempotency key: adopt, never duplicate
        return await _adopt(infra, instance, existing)
    async with infra.project_lock:  # the check and the reservation, atomically
        if await _servers_in_use(infra) + len(infra.creating) >= infra.config.max_servers:
            return Wait(LIMIT_WAIT_S, f"MAX_SERVERS ({infra.config.max_servers}) reached")
        infra.creating.add(instance_id)
    try:
        return await _create_server(infra, instance, name)
    finally:
        infra.creating.discard(instance_id)


async def _create_server(infra: Infra, instance: aiosqlite.Row, name: str) -> Outcome:
    instance_id = instance["id"]
    key_id = await ensure_project(infra)
    host_key = new_host_key()
    # Pinned before the server exists: a crash after create adopts it with this key.
    await infra.records.save(instance_id, ssh_host_key=host_key.public_openssh)
    image = await _restore_image(infra, instance)
    labels = {
        MANAGED_LABEL: MANAGED_VALUE,
        "instance": instance_id,
        "customer": instance["customer_id"],
    }
    for location in _locations(infra, instance["location"]):
        try:
            server, actions = await infra.hetzner.create_server(
                name=name,
                server_type=infra.config.server_type,
                image=image or infra.config.image,
                location=location,
                ssh_key_id=key_id,
                user_data=user_data(host_key, infra.config.ssh_public_key, infra.config.ssh_port),
                labels=labels,
            )
        except HetznerError as exc:
            if exc.kind is ErrorKind.CAPACITY:
                await infra.records.append_log(instance_id, f"{location}: {exc.code}, next")
                continue
            if exc.code == "uniqueness_error":
                # hcloud resent a POST that timed out: the first one made the server.
                found = await infra.hetzner.server_by_name(name)
                if found is not None:
                    return await _adopt(infra, await infra.records.load(instance_id), found)
            raise
        # Recorded at once: from here on nothing may lose track of this server.
        await infra.records.save(
            instance_id, hetzner_server_id=server.id, server_ip=server.ip, location=location
        )
        await infra.records.append_log(instance_id, f"created {name} in {location} ({server.ip})")
        await _record_price(infra, instance_id, location)
        for action_id in actions:
            await infra.hetzner.wait_action(action_id, infra.config.expected_s["create"])
        return Next("boot")
    return Retry("no capacity in any location: " + ", ".join(infra.config.locations))


async def _adopt(infra: Infra, instance: aiosqlite.Row, server: ServerInfo) -> Outcome:
    """A server with this instance's name exists (a crash, a resent POST): it is ours."""
    if not instance["ssh_host_key"]:
        return Fail(f"server {server.name} exists but its host key was never recorded")
    await infra.records.save(
        instance["id"], hetzner_server_id=server.id, server_ip=server.ip, location=server.location
    )
    if instance["server_monthly_price_eur"] is None and server.location:
        await _record_price(infra, instance["id"], server.location)
    return Next("boot")


async def _record_price(infra: Infra, instance_id: str, location: str) -> None:
    """The server type's monthly price, for /stats; a failed lookup costs only that."""
    try:
        price = await infra.hetzner.monthly_price_eur(infra.config.server_type, location)
    except HetznerError as exc:
        await infra.records.append_log(instance_id, f"price lookup failed: {exc.code}")
        return
    await infra.records.save(instance_id, server_monthly_price_eur=price)


async def find_server(infra: Infra, instance: aiosqlite.Row) -> ServerInfo | None:
    """The instance's server: by its recorded id, else by its name (never lose one)."""
    if instance["hetzner_server_id"]:
        return await infra.hetzner.server(instance["hetzner_server_id"])
    return await infra.hetzner.server_by_name(server_name(instance["id"]))


async def _restore_image(infra: Infra, instance: aiosqlite.Row) -> int | None:
    """A returning customer's new server starts from their latest retained snapshot."""
    snapshots = await infra.hetzner.snapshots(f"customer={instance['customer_id']},kind=final")
    if not snapshots:
        return None
    latest = max(snapshots, key=lambda s: s.created)
    await infra.records.append_log(instance["id"], f"restoring from snapshot {latest.id}")
    return latest.id


async def ssh_ready(infra: Infra, ip: str, host_key: str) -> Outcome | None:
    """None once SSH answers with the pinned key; otherwise what the step should do."""
    try:
        await infra.ssh.wait_ready(
            ip, host_key, timeout_s=infra.config.ssh_ready_timeout_s, sleep=infra.clock.sleep
        )
    except HostKeyMismatch as exc:
        return Fail(f"host key mismatch, not connecting: {exc}")
    except SshUnavailable as exc:
        return Retry(f"ssh not reachable: {exc}")
    return None


async def boot(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    waiting = await ssh_ready(infra, instance["server_ip"], instance["ssh_host_key"])
    return waiting or Next("install")


def reboot_hour(instance_id: str) -> int:
    """Unattended-upgrade reboots are staggered over the night, 01:00–04:59 UTC."""
    return 1 + int(hashlib.sha256(instance_id.encode()).hexdigest(), 16) % 4


async def install(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    instance_id = instance["id"]
    password = new_gateway_password()
    # scrypt costs ~0.15 s of CPU: in a thread, while the install runs on the server.
    hashing = asyncio.ensure_future(asyncio.to_thread(password_hash, password))
    # The fleet's target: a rollout's version once past its canary, else the setting.
    version = await target_version(infra.db, infra.config.openclaw_version)
    script = install_script(
        openclaw_version=version,
        gateway_port=infra.config.gateway_port,
        public_ip=instance["server_ip"],
        reboot_hour=reboot_hour(instance_id),
    )
    result = await infra.ssh.run(
        instance["server_ip"], instance["ssh_host_key"], script, secrets={"PW": password}
    )
    await infra.records.append_log(
        instance_id, f"install exited {result.exit_status}:\n{result.output}", secrets=[password]
    )
    if result.exit_status != 0:
        return Fail(f"install script exited {result.exit_status}")
    infra.passwords[instance_id] = password
    hashed = await hashing
    await infra.records.save(instance_id, password_hash=hashed, openclaw_version=version)
    return Next("verify")


async def read_password(infra: Infra, instance: aiosqlite.Row) -> str | None:
    """The gateway password as the server has it (it is never stored here)."""
    known = infra.passwords.get(instance["id"])
    if known:
        return known
    env = await infra.ssh.read_file(
        instance["server_ip"], instance["ssh_host_key"], "/home/openclaw/.openclaw/.env"
    )
    for line in env.splitlines():
        if line.startswith("OPENCLAW_GATEWAY_PASSWORD="):
            return line.split("=", 1)[1].strip().strip("'\"")
    return None


async def wait_ready(infra: Infra, instance: aiosqlite.Row) -> bool:
    """`/readyz` 200 within the start grace, polled often at first, then less."""
    deadline = infra.clock.now().timestamp() + infra.config.start_grace_s
    delay = 0.05
    while True:
        if await gateway.ready(infra.http, instance["server_ip"], infra.config.gateway_port):
            return True
        if infra.clock.now().timestamp() >= deadline:
            return False
        await infra.clock.sleep(delay)
        delay = min(delay * 1.5, 2.0)


async def verify(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    instance_id, ip, port = instance["id"], instance["server_ip"], infra.config.gateway_port
    problem = None
    if not await wait_ready(infra, instance):
        problem = f"/readyz not 200 within {infra.config.start_grace_s:g} s"
    else:
        password = await read_password(infra, instance)
        if not await gateway.password_required(infra.http, ip, port):
            problem = "the Control UI answers without a password"
        elif password is None or not await gateway.password_accepted(
            infra.http, ip, port, password
        ):
            problem = "the gateway refuses its own password"
    if problem is None:
        infra.passwords.pop(instance_id, None)
        await infra.records.save(instance_id, verified_at=to_iso(infra.clock.now()))
        return Next("announce")
    await infra.records.append_log(instance_id, f"verify failed: {problem}")
    if instance["reinstalls"] == 0:  # the seed's rule: install once more, then fail
        await infra.records.save(instance_id, reinstalls=1)
        return Next("install")
    return Fail(f"verify failed after reinstalling: {problem}")


async def announce(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    """Active: queue the setup message (rendered, with a fresh login link, at send time)."""
    control_ui = f"http://{instance['server_ip']}:{infra.config.gateway_port}/"
    await infra.records.activate(
        instance["id"], instance["customer_id"], {"control_ui": control_ui}
    )
    return Next(None)


STEPS: dict[str, Step] = {
    "project": project,
    "create": create,
    "boot": boot,
    "install": install,
    "verify": verify,
    "announce": announce,
}
FIRST_STEP = "project"
