"""Server actions with their effects: power, reboot/reset, rebuild, snapshot.

Each starts an action through `HetznerState.run_action` (which enforces 423
`locked`) and changes the server at the moment the real one would: power is lost
when the request lands, the new status shows when the action ends.
"""

from __future__ import annotations

import secrets
from typing import Any

from sim.hetzner_model import SimAction, SimImage, SimServer
from sim.hetzner_state import HetznerState

# command: (ActionDurations field, action command, status meanwhile, status after)
POWER_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "poweron": ("start", "start_server", "starting", "running"),
    "poweroff": ("power_off", "stop_server", "stopping", "off"),
    "shutdown": ("shutdown", "shutdown_server", "stopping", "off"),
    "reboot": ("reboot", "reboot_server", "running", "running"),
    "reset": ("reset", "reset_server", "running", "running"),
}


async def power_action(state: HetznerState, server: SimServer, command: str) -> SimAction:
    """poweron, poweroff, shutdown, reboot, reset."""
    duration_field, api_command, during, after = POWER_COMMANDS[command]
    before = server.status
    # Already there (poweron of a running server, anything else of an off one): the
    # real API still answers with an action that succeeds and changes nothing.
    noop = before == "running" if command == "poweron" else before == "off"

    async def success() -> None:
        if noop:
            return
        if command == "shutdown":  # ACPI: the OS takes its time, then power goes
            await state.lose_power(server, "off")
        server.status = after
        if command in ("reboot", "reset"):  # the boot is part of these actions
            server.booted = True
            await state.notify("server_booted", server)
        elif command == "poweron":
            state.schedule_boot(server, state.durations.boot)

    async def error() -> None:
        if noop:
            return
        server.status = before
        if before == "running" and not server.booted:  # power came back at once
            state.schedule_boot(server, 0.0)

    action = state.run_action(
        api_command,
        [("server", server.id)],
        getattr(state.durations, duration_field),
        server=server,
        on_success=success,
        on_error=error,
    )
    if noop:
        pass
    elif command in ("poweroff", "reboot", "reset"):  # power is cut right away
        await state.lose_power(server, during)
    else:
        server.status = during
    return action


async def rebuild(
    state: HetznerState, server: SimServer, image_ref: Any, user_data: str | None
) -> tuple[SimAction, str | None]:
    image = state.resolve_image(image_ref, server.server_type.architecture)

    async def success() -> None:
        server.image_id = image.id
        if user_data is not None:
            server.user_data = user_data
        server.status = "running"
        await state.notify("server_rebuilt", server)
        state.schedule_boot(server, state.durations.boot)

    async def error() -> None:
        server.status = "off"

    action = state.run_action(
        "rebuild_server",
        [("server", server.id)],
        state.durations.rebuild,
        server=server,
        on_success=success,
        on_error=error,
    )
    await state.lose_power(server, "rebuilding")
    password = None if server.ssh_public_keys else secrets.token_urlsafe(15)
    return action, password


def create_image(
    state: HetznerState,
    server: SimServer,
    kind: str,
    description: str | None,
    labels: dict[str, str],
) -> tuple[SimImage, SimAction]:
    source = state.images.get(server.image_id)
    image = SimImage(
        id=state.next_id("image"),
        type=kind,
        name=None,  # snapshots have no name in the real API, only a description
        description=description or f"{server.name}-snapshot",
        architecture=server.server_type.architecture,
        os_flavor=source.os_flavor if source else "unknown",
        os_version=source.os_version if source else None,
        status="creating",
        labels=labels,
        created_from=(server.id, server.name),
        disk_size=float(server.server_type.disk),
    )

    async def success() -> None:
        image.status = "available"
        image.image_size = round(image.disk_size * 0.06, 2)
        await state.notify("snapshot_created", server, image)

    async def error() -> None:
        state.images.pop(image.id, None)

    action = state.run_action(
        "create_image",
        [("server", server.id), ("image", image.id)],
        state.durations.snapshot,
        server=server,
        on_success=success,
        on_error=error,
    )
    state.images[image.id] = image
    return image, action
