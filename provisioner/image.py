"""The golden image: a snapshot of a server on which the install script already ran, so
that a customer server created from it (`HCLOUD_IMAGE=<id>`) skips Node and the
`npm install` of the pinned OpenClaw, the slowest part of provisioning.

The image must hold nothing that belongs to one instance, since every customer server
starts from it: after the install, the gateway is stopped and disabled and its state
directory (onboarding, config, the throwaway password) removed; the unit file stays.
Each server created from the image runs the install script as usual, which onboards
it afresh and sets its own password. cloud-init's per-instance state goes too, so the
new server's own user data (its pinned host key) is applied on its first boot.

The temporary server is deleted whatever happens, also when a step fails or the build
is interrupted.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from core.clock import Clock
from provisioner.cloud_init import new_host_key, user_data
from provisioner.config import MANAGED_LABEL, MANAGED_VALUE, ProvisionerConfig
from provisioner.hetzner import ErrorKind, Hetzner, HetznerError, ServerInfo
from provisioner.install import install_script, new_gateway_password
from provisioner.power import shut_down
from provisioner.provisioning import ensure_key_and_firewall
from provisioner.ssh import SshRunner

NAME_PREFIX = "oc-image-"
PURPOSE_LABEL = "purpose"
GOLDEN_PURPOSE = "golden-image"
VERSION_LABEL = "openclaw-version"
# The build server's unattended-upgrades reboot time is irrelevant (it lives minutes,
# and every server made from the image writes its own).
BUILD_REBOOT_HOUR = 3
# Deleting the temporary server is retried for a while: a forgotten server costs money.
DELETE_RETRY_DELAYS_S = (1.0, 5.0, 15.0)
OUTPUT_LINES_IN_ERROR = 8

# Run after the install, as root with `bash -s`. `cloud-init clean` exists on real
# servers only (the simulator has no cloud-init; a copied disk's foreign instance id
# already makes its first boot run the per-instance part).
PREPARE_SCRIPT = """set -euo pipefail
systemctl disable --now openclaw-gateway
rm -rf /home/openclaw/.openclaw
# A server from the image gets its host key from its own user data, never this one.
rm -f /etc/ssh/ssh_host_*
if command -v cloud-init >/dev/null 2>&1; then
  cloud-init clean --logs --machine-id
fi
sync
"""

Log = Callable[[str], None]


class ImageBuildError(Exception):
    """A build step failed; the message says which, without secrets."""


def version_label(version: str) -> str:
    """`2026.9.6` → `2026-9-6`: label values allow few characters, the description
    keeps the version as it is."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", version)


def image_labels(config: ProvisionerConfig) -> dict[str, str]:
    return {
        MANAGED_LABEL: MANAGED_VALUE,
        PURPOSE_LABEL: GOLDEN_PURPOSE,
        VERSION_LABEL: version_label(config.openclaw_version),
    }


def _tail(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return "\n".join(lines[-OUTPUT_LINES_IN_ERROR:])


async def build_golden_image(
    hetzner: Hetzner,
    ssh: SshRunner,
    config: ProvisionerConfig,
    *,
    clock: Clock,
    log: Log,
) -> int:
    """Build a golden image from `config.image` and return its id (for `HCLOUD_IMAGE`)."""
    key_id = await ensure_key_and_firewall(hetzner, config)
    log("project SSH key and firewall in place")
    name = NAME_PREFIX + secrets.token_hex(6)
    host_key = new_host_key()
    cloud_config = user_data(host_key, config.ssh_public_key, config.ssh_port)
    server = await _create_server(hetzner, config, name, key_id, cloud_config, log)
    try:
        image_id = await _install_and_snapshot(
            hetzner, ssh, config, server, host_key.public_openssh, clock=clock, log=log
        )
    finally:
        # Also on failure and on cancellation (Ctrl-C): awaiting here still works, the
        # task's cancellation was delivered once already.
        deleted = await _delete_server(hetzner, config, server, clock=clock, log=log)
    if not deleted:
        raise ImageBuildError(
            f"image {image_id} is ready, but the temporary server {server.name} "
            f"(id {server.id}) could not be deleted: delete it in the Hetzner console"
        )
    return image_id


async def _create_server(
    hetzner: Hetzner,
    config: ProvisionerConfig,
    name: str,
    key_id: int,
    cloud_config: str,
    log: Log,
) -> ServerInfo:
    labels = {MANAGED_LABEL: MANAGED_VALUE, PURPOSE_LABEL: GOLDEN_PURPOSE}
    for location in config.locations:
        log(
            f"creating temporary server {name} ({config.server_type}, {config.image}) in {location}"
        )
        try:
            server, actions = await hetzner.create_server(
                name=name,
                server_type=config.server_type,
                image=config.image,
                location=location,
                ssh_key_id=key_id,
                user_data=cloud_config,
                labels=labels,
            )
        except HetznerError as exc:
            if exc.kind is ErrorKind.CAPACITY:
                log(f"{location}: {exc.code}, trying the next location")
                continue
            # The request may have created the server before failing (a lost answer):
            # never leave one behind.
            await _delete_if_created(hetzner, name, log)
            raise
        try:
            for action_id in actions:
                await hetzner.wait_action(action_id, config.expected_s["create"])
        except BaseException:
            await _delete_if_created(hetzner, name, log)
            raise
        log(f"server {server.id} created at {server.ip}")
        return server
    raise ImageBuildError("no capacity in any location: " + ", ".join(config.locations))


async def _delete_if_created(hetzner: Hetzner, name: str, log: Log) -> None:
    try:
        found = await hetzner.server_by_name(name)
        if found is not None:
            log(f"deleting the half-created server {name} (id {found.id})")
            await hetzner.delete_server(found.id)
    except HetznerError as exc:
        log(f"could not check for a half-created server {name}: {exc}; check by hand")


async def _install_and_snapshot(
    hetzner: Hetzner,
    ssh: SshRunner,
    config: ProvisionerConfig,
    server: ServerInfo,
    host_key: str,
    *,
    clock: Clock,
    log: Log,
) -> int:
    if server.ip is None:
        raise ImageBuildError(f"server {server.id} has no public IPv4 address")
    ip = server.ip
    log("waiting for SSH (pinned host key)")
    await ssh.wait_ready(ip, host_key, timeout_s=config.ssh_ready_timeout_s, sleep=clock.sleep)
    log(f"installing OpenClaw {config.openclaw_version} (this takes a few minutes)")
    script = install_script(
        openclaw_version=config.openclaw_version,
        gateway_port=config.gateway_port,
        public_ip=ip,
        reboot_hour=BUILD_REBOOT_HOUR,
    )
    # A throwaway password: the install needs one, the image keeps none (removed below).
    result = await ssh.run(ip, host_key, script, secrets={"PW": new_gateway_password()})
    if result.exit_status != 0:
        raise ImageBuildError(
            f"install script exited {result.exit_status}:\n{_tail(result.output)}"
        )
    log("install done; removing per-instance state (gateway state, host keys, cloud-init)")
    result = await ssh.run(ip, host_key, PREPARE_SCRIPT, timeout_s=120)
    if result.exit_status != 0:
        raise ImageBuildError(
            f"clearing per-instance state exited {result.exit_status}:\n{_tail(result.output)}"
        )
    log("shutting down")
    await shut_down(hetzner, config, server.id, clock=clock, log=log)
    labels = image_labels(config)
    description = f"openclaw-hosted golden image: OpenClaw {config.openclaw_version}"
    log(f"snapshotting server {server.id}")
    image_id, action_id = await hetzner.snapshot(server.id, description, labels)
    try:
        await hetzner.wait_action(action_id, config.expected_s["snapshot"])
    except BaseException:
        # A failed snapshot is useless and would be mistaken for a golden image.
        try:
            await hetzner.delete_image(image_id)
        except HetznerError as exc:
            log(f"could not delete the failed snapshot {image_id}: {exc.code}")
        raise
    log(f"snapshot {image_id} ready")
    return image_id


async def _delete_server(
    hetzner: Hetzner, config: ProvisionerConfig, server: ServerInfo, *, clock: Clock, log: Log
) -> bool:
    """Delete the temporary server, retrying; True once it is gone. Never raises a
    HetznerError: the caller's own error, if any, is the one to report."""
    log(f"deleting temporary server {server.name} (id {server.id})")
    for delay in (0.0, *DELETE_RETRY_DELAYS_S):
        await clock.sleep(delay)
        try:
            action = await hetzner.delete_server(server.id)
            await hetzner.wait_action(action, config.expected_s["delete"])
        except HetznerError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                break
            log(f"deleting server {server.id}: {exc}")
            continue
        break
    else:
        log(f"temporary server {server.name} (id {server.id}) NOT deleted: delete it by hand")
        return False
    log("temporary server deleted")
    return True
