"""One-shot operations: each marked running before it starts and done or failed after.
One interrupted by a crash runs again, but what it already did is not done twice: the
Hetzner action it started is recorded on the operation and awaited instead of
repeated, and its snapshot carries the operation's id."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import aiosqlite

from core.models import ACTOR_MONITOR, OperationKind, OperationState, Status
from provisioner import upgrade
from provisioner.infra import Infra
from provisioner.provisioning import find_server, ssh_ready, wait_ready
from provisioner.transitions import take_snapshot

Result = tuple[OperationState, str]


async def _action_once(
    infra: Infra, operation: aiosqlite.Row, name: str, start: Callable[[], Awaitable[int]]
) -> None:
    """Start a Hetzner action once per operation and wait for it; after a crash, wait for
    the one already started instead of starting another."""
    progress = json.loads(operation["result"] or "{}") if operation["result"] else {}
    action = progress.get(name)
    if not isinstance(action, int):
        action = await start()
        await infra.records.operation_progress(operation["id"], {**progress, name: action})
    await infra.hetzner.wait_action(action, infra.config.expected_s[name])


# The operations that need a running, active instance.
NEEDS_ACTIVE = {
    OperationKind.RESTART_GATEWAY,
    OperationKind.REBOOT,
    OperationKind.SNAPSHOT,
    OperationKind.UPGRADE,
}


async def restart_gateway(
    infra: Infra, instance: aiosqlite.Row, operation: aiosqlite.Row
) -> Result:
    result = await infra.ssh.run(
        instance["server_ip"], instance["ssh_host_key"], "systemctl restart openclaw-gateway\n"
    )
    await infra.records.gateway_started(instance["id"])
    if result.exit_status != 0:
        return OperationState.FAILED, f"systemctl restart exited {result.exit_status}"
    if not await wait_ready(infra, instance):
        return OperationState.FAILED, "gateway not ready after the restart"
    return OperationState.DONE, "gateway restarted and ready"


async def reboot(infra: Infra, instance: aiosqlite.Row, operation: aiosqlite.Row) -> Result:
    server_id = instance["hetzner_server_id"]
    await _action_once(infra, operation, "reboot", lambda: infra.hetzner.reboot(server_id))
    await infra.records.gateway_started(instance["id"])
    waiting = await ssh_ready(infra, instance["server_ip"], instance["ssh_host_key"])
    if waiting is not None:
        return OperationState.FAILED, f"ssh after the reboot: {waiting}"
    if not await wait_ready(infra, instance):
        return OperationState.FAILED, "gateway not ready after the reboot"
    return OperationState.DONE, "rebooted; gateway ready"


async def reprovision(infra: Infra, instance: aiosqlite.Row, operation: aiosqlite.Row) -> Result:
    """Snapshot, rebuild the same server (same address), then provision it anew: a new
    password and a new setup message. Without a server, start from its creation."""
    server = await find_server(infra, instance)
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
    once = f"op-{operation['id']}"
    image_id = await take_snapshot(infra, instance, "reprovision", once_per=once)
    await _action_once(
        infra, operation, "rebuild", lambda: infra.hetzner.rebuild(server.id, infra.config.image)
    )
    await infra.records.set_status(
        instance["id"], Status.PROVISIONING, step="boot", attempts=0, reinstalls=0, last_error=None
    )
    return OperationState.DONE, f"snapshot {image_id}, rebuilt; provisioning again"


async def retry(infra: Infra, instance: aiosqlite.Row, operation: aiosqlite.Row) -> Result:
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


WEEKLY_KEPT = 4


async def snapshot(infra: Infra, instance: aiosqlite.Row, operation: aiosqlite.Row) -> Result:
    """An admin's snapshot is kept until its delete-after date; the monitor's weekly ones
    are also capped at the newest four."""
    weekly = operation["requested_by"] == ACTOR_MONITOR
    kind = "weekly" if weekly else "manual"
    image_id = await take_snapshot(infra, instance, kind, once_per=f"op-{operation['id']}")
    if not weekly:
        return OperationState.DONE, f"snapshot {image_id}"
    kept = await infra.hetzner.snapshots(f"instance={instance['id']},kind=weekly")
    kept.sort(key=lambda s: (s.created, s.id), reverse=True)
    for old in kept[WEEKLY_KEPT:]:
        await infra.hetzner.delete_image(old.id)
    pruned = len(kept[WEEKLY_KEPT:])
    return OperationState.DONE, f"weekly snapshot {image_id}; {pruned} older deleted"


async def run_operation(infra: Infra, instance: aiosqlite.Row, operation: aiosqlite.Row) -> Result:
    kind = OperationKind(operation["kind"])
    status = instance["status"]
    if kind is OperationKind.UPGRADE and status != Status.ACTIVE:
        # Never on a suspended server: it gets the version when it is upgraded next.
        return OperationState.CANCELED, f"no upgrade: the instance is {status}"
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
        OperationKind.UPGRADE: upgrade.upgrade,
    }[kind]
    return await handler(infra, instance, operation)
