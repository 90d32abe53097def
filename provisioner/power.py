"""Taking a server down cleanly: an ACPI shutdown (a consistent disk), then a hard
power off if it is not off in time. Suspensions and golden images both need it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta

from core.clock import Clock
from provisioner.config import ProvisionerConfig
from provisioner.hetzner import Hetzner, HetznerError


async def shut_down(
    hetzner: Hetzner,
    config: ProvisionerConfig,
    server_id: int,
    *,
    clock: Clock,
    log: Callable[[str], object],
) -> None:
    try:
        action = await hetzner.shutdown(server_id)
        await hetzner.wait_action(action, config.expected_s["power"])
    except HetznerError as exc:
        await _maybe_await(log(f"shutdown: {exc.code}"))
    if await _is_off(hetzner, server_id, config.shutdown_timeout_s, clock):
        return
    await _maybe_await(log(f"not off after {config.shutdown_timeout_s:g} s: powering off"))
    action = await hetzner.power_off(server_id)
    await hetzner.wait_action(action, config.expected_s["power"])


async def _is_off(hetzner: Hetzner, server_id: int, timeout_s: float, clock: Clock) -> bool:
    """Off (or gone) within the timeout, polled often at first, then less."""
    deadline = clock.now() + timedelta(seconds=timeout_s)
    delay = 0.05
    while True:
        server = await hetzner.server(server_id)
        if server is None or server.status == "off":
            return True
        if clock.now() >= deadline:
            return False
        await clock.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _maybe_await(result: object) -> None:
    """Loggers may be plain functions (the CLI) or coroutines (the provision log)."""
    if inspect.isawaitable(result):
        await result
