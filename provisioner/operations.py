"""One-shot operations: each marked running before it starts and done or failed after,
so it runs once; one that crashed mid-way is run again from the start."""

from __future__ import annotations

import aiosqlite

from core.models import OperationKind, OperationState, Status
from provisioner.infra import Infra
from provisioner.provisioning import wait_ready
from provisioner.transitions import take_snapshot

Result = tuple[OperationState, str]

# The operations that need a running, active instance.
NEEDS_ACTIVE = {
    OperationKind.RESTART_GATEWAY,
    OperationKind.REBOOT,
    OperationKind.SNAPSHOT,
    OperationKind.UPGRADE,
}


async def restart_gateway(infra: Infra, instance: aiosqlite.Row) -> Result:
    result = await infra.ssh.run(
        instance["server_ip"], instance["ssh_host_key"], "systemctl restart openclaw-gateway\n"
    )
    if result.exit_status != 0:
        return OperationState.FAILED, f"systemctl restart exited {result.exit_status}"
    if not await wait_ready(infra, instance):
        return OperationState.FAILED, "gateway not ready after the restart"
    return OperationState.DONE, "gateway restarted and ready"


async def reboot(infra: Infra, instance: aiosqlite.Row) -> Result:
    action = await infra.hetzner.reboot(instance["hetzner_server_id"])
    await infra.hetzner.wait_action(action, infra.config.expected_s["reboot"])
    await infra.ssh.wait_ready(
        instance["server_ip"],
        instance["ssh_host_key"],
        timeout_s=infra.config.ssh_ready_timeout_s,
        sleep=infra.clock.sleep,
    )
    if not await wait_ready(infra, instance):
        return OperationState.FAILED, "gateway not ready after the reboot"
    return OperationState.DONE, "rebooted; gateway ready"


async def reprovision(infra: Infra, instance: aiosqlite.Row) -> Result:
    """Snapshot, rebuild the same server (same address), then provision it anew: a new
    password and a new setup message. Without a server, start from its creation."""
    server_id = instance["hetzner_server_id"]
    server = await infra.hetzner.server(server_id) if server_id else None
    if server is None:
        await infra.records.set_status(
            instance["id"],
            Status.PROVISIONING,
            step="project",
            attempts=0,
            reinstalls=0,
            last_error=None,
        )
        return OperationState.DONE, "no server: provisioning a new one"
    image_id = await take_snapshot(infra, instance, "reprovision")
    action = await infra.hetzner.rebuild(server.id, infra.config.image)
    await infra.hetzner.wait_action(action, infra.config.expected_s["rebuild"])
    await infra.records.set_status(
        instance["id"], Status.PROVISIONING, step="boot", attempts=0, reinstalls=0, last_error=None
    )
    return OperationState.DONE, f"snapshot {image_id}, rebuilt; provisioning again"


async def retry(infra: Infra, instance: aiosqlite.Row) -> Result:
    """Back to provisioning at the step that failed, with a fresh set of attempts."""
    step = instance["step"] or "project"
    await infra.records.set_status(
        instance["id"],
        Status.PROVISIONING,
        step=step,
        attempts=0,
        reinstalls=0,
        next_attempt_at=None,
    )
    return OperationState.DONE, f"retrying from {step}"


async def snapshot(infra: Infra, instance: aiosqlite.Row) -> Result:
    image_id = await take_snapshot(infra, instance, "manual")
    return OperationState.DONE, f"snapshot {image_id}"


async def upgrade(infra: Infra, instance: aiosqlite.Row) -> Result:
    return OperationState.FAILED, "fleet upgrades are not built yet"


async def run_operation(infra: Infra, instance: aiosqlite.Row, kind: OperationKind) -> Result:
    status = instance["status"]
    if kind in NEEDS_ACTIVE and status != Status.ACTIVE:
        return OperationState.FAILED, f"{kind.value} needs an active instance; it is {status}"
    if kind is OperationKind.RETRY and status != Status.FAILED:
        return OperationState.CANCELED, f"nothing to retry: the instance is {status}"
    handler = {
        OperationKind.RESTART_GATEWAY: restart_gateway,
        OperationKind.REBOOT: reboot,
        OperationKind.REPROVISION: reprovision,
        OperationKind.RETRY: retry,
        OperationKind.SNAPSHOT: snapshot,
        OperationKind.UPGRADE: upgrade,
    }[kind]
    return await handler(infra, instance)
