"""Suspend, resume and destroy: each idempotent, so a crash simply runs it again."""

from __future__ import annotations

from datetime import timedelta

import aiosqlite

from core.models import Status
from provisioner.config import MANAGED_LABEL, MANAGED_VALUE
from provisioner.infra import Infra
from provisioner.outcomes import Fail, Next, Outcome, Retry
from provisioner.power import shut_down
from provisioner.provisioning import find_server, ssh_ready, wait_ready

SNAPSHOT_POLLS = 60
# The health fields of an instance whose gateway is meant to be down.
QUIET_HEALTH = {
    "health_status": "unknown",
    "consecutive_failures": 0,
    "failing_since": None,
    "incident_alerted": 0,
    "healthy_since": None,
}


async def suspend(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    """Graceful shutdown, power off after a timeout; the disk and its data are kept.
    The provisioning step is kept too: a resume carries on from there."""
    server = await find_server(infra, instance)
    if server is not None and server.status != "off":
        await shut_down(
            infra.hetzner,
            infra.config,
            server.id,
            clock=infra.clock,
            log=lambda line: infra.records.append_log(instance["id"], line),
        )
    # Billing beats health: an open incident ends quietly with the suspension.
    await infra.records.set_status(
        instance["id"],
        Status.SUSPENDED,
        attempts=0,
        next_attempt_at=None,
        last_error=None,
        **QUIET_HEALTH,
    )
    return Next(None)


async def resume(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    """Power on, wait for SSH with the pinned key, verify the gateway, `active`. An
    instance suspended before it was ever active goes back to provisioning instead."""
    server = await find_server(infra, instance)
    never_active = instance["setup_sent_at"] is None
    if server is None and not never_active:
        return Fail("the server to resume is gone")
    if server is not None and server.status != "running":
        action = await infra.hetzner.power_on(server.id)
        await infra.hetzner.wait_action(action, infra.config.expected_s["power"])
    if server is None or never_active:
        step = instance["step"] or "project"
        if server is not None and step not in ("project", "create"):
            step = "boot"  # just powered on: wait for SSH, then install again (idempotent)
        await infra.records.set_status(
            instance["id"],
            Status.PROVISIONING,
            step=step,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
        )
        return Next(None)
    waiting = await ssh_ready(infra, server.ip or instance["server_ip"], instance["ssh_host_key"])
    if waiting is not None:
        return waiting
    await infra.records.gateway_started(instance["id"])
    if not await wait_ready(infra, instance):
        return Retry("gateway not ready after power on")
    await infra.records.set_status(
        instance["id"], Status.ACTIVE, step=None, attempts=0, next_attempt_at=None, last_error=None
    )
    return Next(None)


def snapshot_labels(instance: aiosqlite.Row, kind: str, keep_until: str) -> dict[str, str]:
    return {
        MANAGED_LABEL: MANAGED_VALUE,
        "instance": instance["id"],
        "customer": instance["customer_id"],
        "kind": kind,
        "delete-after": keep_until,
    }


async def take_snapshot(
    infra: Infra, instance: aiosqlite.Row, kind: str, *, once_per: str | None = None
) -> int:
    """A labelled snapshot with its delete-after date. With `once_per` (the final
    snapshot, or an operation's id) a crash never makes a second one: an existing one
    is reused, once it has finished."""
    selector = f"instance={instance['id']},kind={kind}"
    if once_per is not None:
        selector += f",once={once_per}"
        for _ in range(SNAPSHOT_POLLS):
            existing = await infra.hetzner.snapshots(selector)
            if not existing:
                break
            if existing[0].status == "available":
                return existing[0].id
            await infra.clock.sleep(infra.config.expected_s["snapshot"] / 20)
    keep_until = infra.clock.now() + timedelta(days=infra.config.snapshot_retention_days)
    labels = snapshot_labels(instance, kind, keep_until.strftime("%Y-%m-%d"))
    if once_per is not None:
        labels["once"] = once_per
    server = await find_server(infra, instance)
    if server is None:
        raise LookupError(f"no server to snapshot for {instance['id']}")
    image_id, action = await infra.hetzner.snapshot(server.id, f"{instance['id']} {kind}", labels)
    await infra.records.save(instance["id"], snapshot_image_id=image_id)
    await infra.hetzner.wait_action(action, infra.config.expected_s["snapshot"])
    return image_id


async def destroy(infra: Infra, instance: aiosqlite.Row) -> Outcome:
    """Snapshot first (kept until its delete-after date), then delete the server."""
    server = await find_server(infra, instance)
    if server is not None:
        image_id = await take_snapshot(infra, instance, "final", once_per="final")
        await infra.records.append_log(instance["id"], f"final snapshot {image_id}")
        action = await infra.hetzner.delete_server(server.id)
        await infra.hetzner.wait_action(action, infra.config.expected_s["delete"])
    await infra.records.set_status(
        instance["id"],
        Status.DESTROYED,
        step=None,
        attempts=0,
        next_attempt_at=None,
        server_ip=None,
    )
    return Next(None)


async def delete_expired_snapshots(infra: Infra) -> int:
    """Snapshots past their delete-after date go; the rest stay."""
    today = infra.clock.now().strftime("%Y-%m-%d")
    deleted = 0
    for snapshot in await infra.hetzner.snapshots(f"{MANAGED_LABEL}={MANAGED_VALUE}"):
        keep_until = snapshot.labels.get("delete-after")
        if keep_until and keep_until < today:
            await infra.hetzner.delete_image(snapshot.id)
            deleted += 1
    return deleted
