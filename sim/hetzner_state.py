"""The simulated Hetzner project: servers, actions, keys, firewalls, images.

All lifecycle rules live here (locking, action timing, boot, power loss, capacity,
limits); the web layer in `sim/hetzner.py` only parses requests and renders. Actions
run as tasks on the event loop and take their real-world duration times
`time_scale`.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from sim import hetzner_catalog as catalog
from sim.hetzner_model import (
    ActionDurations,
    ServerListener,
    SimAction,
    SimFirewall,
    SimImage,
    SimServer,
    SimSshKey,
)
from sim.hetzner_rules import ApiError, invalid_input, not_found, rule_allows, selector_matches

log = logging.getLogger(__name__)

Effect = Callable[[], Awaitable[None]]


def _loopback_addresses(pool: str) -> Iterator[ipaddress.IPv4Address]:
    network = ipaddress.IPv4Network(pool)
    if not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        raise ValueError(f"address pool {pool} is not loopback")
    # .0 and .255 host parts look like network/broadcast addresses to people and tools.
    return (a for a in network.hosts() if int(a) & 0xFF not in (0, 255))


class HetznerState:
    """The project. Other simulators read `servers` (by id), `server_by_ip`,
    `firewalls_for`, `inbound_allowed` and `images`, and subscribe through
    `listeners`; they never change a server themselves."""

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        server_limit: int = 25,
        durations: ActionDurations | None = None,
        address_pool: str = "127.1.0.0/16",
    ) -> None:
        self.time_scale = time_scale
        self.server_limit = server_limit
        self.durations = durations or ActionDurations()
        self.servers: dict[int, SimServer] = {}
        self.actions: dict[int, SimAction] = {}
        self.ssh_keys: dict[int, SimSshKey] = {}
        self.firewalls: dict[int, SimFirewall] = {}
        self.images: dict[int, SimImage] = {
            img.id: SimImage(
                img.id,
                "system",
                img.name,
                img.description,
                img.architecture,
                img.os_flavor,
                img.os_version,
                created=catalog.CATALOG_CREATED,
            )
            for img in catalog.SYSTEM_IMAGES
        }
        self.listeners: list[ServerListener] = []
        # Fault knobs (see HetznerSim.faults for the documented entry points).
        self.out_of_capacity: set[str] = set()
        self.action_failures: dict[str, list[tuple[str, str]]] = {}
        self._addresses = _loopback_addresses(address_pool)
        self._ids = {
            kind: itertools.count(start)
            for kind, start in (
                ("server", 100001),
                ("action", 1),
                ("ssh_key", 5001),
                ("firewall", 7001),
                ("image", 300000001),
                ("primary_ip", 9001),
            )
        }
        self._tasks: set[asyncio.Task[None]] = set()

    # -- plumbing ------------------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel running actions and timers (the sim is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def notify(self, event: str, *args: Any) -> None:
        for listener in list(self.listeners):
            try:
                result = getattr(listener, event)(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("hetzner sim listener %r failed on %s", listener, event)

    def _action(self, command: str, resources: list[tuple[str, int]], real_s: float) -> SimAction:
        action = SimAction(
            self.next_id("action"), command, resources, self.now(), real_s * self.time_scale
        )
        self.actions[action.id] = action
        return action

    def _take_failure(self, command: str) -> tuple[str, str] | None:
        queue = self.action_failures.get(command)
        return queue.pop(0) if queue else None

    def run_action(
        self,
        command: str,
        resources: list[tuple[str, int]],
        real_s: float,
        *,
        server: SimServer | None = None,
        on_success: Effect | None = None,
        on_error: Effect | None = None,
    ) -> SimAction:
        """Start an action; a server it concerns stays locked until it ends."""
        if server is not None and server.locked:
            raise ApiError("locked", f"server {server.id} is locked by a running action")
        action = self._action(command, resources, real_s)
        if server is not None:
            server.busy_with = action

        async def complete() -> None:
            await asyncio.sleep(action.duration)
            failure = self._take_failure(command)
            if server is None or self.servers.get(server.id) is server:
                # The effect lands before the action reports success, so a client
                # that sees `success` and reads the server sees the new state.
                effect = on_success if failure is None else on_error
                if effect is not None:
                    await effect()
            action.finish(failure)

        self._spawn(complete())
        return action

    # -- lookups -------------------------------------------------------------

    def server(self, server_id: int) -> SimServer:
        if server_id not in self.servers:
            raise not_found("server")
        return self.servers[server_id]

    def server_by_ip(self, ip: str) -> SimServer | None:
        return next((s for s in self.servers.values() if s.ip == ip), None)

    def image(self, image_id: int) -> SimImage:
        if image_id not in self.images:
            raise not_found("image")
        return self.images[image_id]

    def firewall(self, firewall_id: int) -> SimFirewall:
        if firewall_id not in self.firewalls:
            raise not_found("firewall")
        return self.firewalls[firewall_id]

    def ssh_key(self, ref: Any) -> SimSshKey:
        for key in self.ssh_keys.values():
            if ref in (key.id, str(key.id), key.name):
                return key
        raise invalid_input("ssh_keys", f"ssh key {ref!r} not found")

    def firewalls_for(self, server: SimServer) -> list[SimFirewall]:
        """Firewalls applying to a server, directly or through a label selector."""
        return [
            fw
            for fw in self.firewalls.values()
            if server.id in fw.server_ids
            or any(selector_matches(sel, server.labels) for sel in fw.selectors)
        ]

    def inbound_allowed(self, server: SimServer, source_ip: str, protocol: str, port: int) -> bool:
        """Hetzner semantics: no firewall → all inbound traffic passes; with firewalls,
        only what some inbound rule of one of them allows."""
        firewalls = self.firewalls_for(server)
        if not firewalls:
            return True
        return any(
            rule_allows(rule, source_ip, protocol, port) for fw in firewalls for rule in fw.rules
        )

    def resolve_image(self, ref: Any, architecture: str) -> SimImage:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            image = self.images.get(int(ref))
        else:
            image = next(
                (
                    i
                    for i in self.images.values()
                    if i.name == ref and i.type == "system" and i.architecture == architecture
                ),
                None,
            )
        if image is None:
            raise invalid_input("image", f"image {ref!r} not found")
        if image.architecture != architecture:
            raise invalid_input("image", "image architecture does not match the server type")
        if image.status != "available":
            raise invalid_input("image", f"image {image.id} is not available yet")
        return image

    # -- servers -------------------------------------------------------------

    async def create_server(
        self,
        *,
        name: str,
        server_type: catalog.ServerType,
        image_ref: Any,
        location: catalog.Location | None,
        ssh_key_refs: list[Any],
        firewall_ids: list[int],
        user_data: str | None,
        labels: dict[str, str],
        start_after_create: bool = True,
    ) -> tuple[SimServer, SimAction, list[SimAction]]:
        if any(s.name == name for s in self.servers.values()):
            raise ApiError(
                "uniqueness_error",
                "server name is already used",
                details={"fields": [{"name": "name"}]},
            )
        image = self.resolve_image(image_ref, server_type.architecture)
        keys = [self.ssh_key(ref) for ref in ssh_key_refs]
        if unknown := [fid for fid in firewall_ids if fid not in self.firewalls]:
            raise invalid_input("firewalls", f"firewall {unknown[0]} not found")
        firewalls = [self.firewalls[fid] for fid in firewall_ids]
        if location is None:  # the real API picks a location with capacity
            location = (
                next(
                    (
                        catalog.find_location(n)
                        for n in server_type.locations
                        if n not in self.out_of_capacity
                    ),
                    None,
                )
                or catalog.LOCATIONS[0]
            )
        if location.name not in server_type.locations:
            raise invalid_input(
                "location", f"server type {server_type.name} is unavailable in {location.name}"
            )
        if location.name in self.out_of_capacity:
            raise ApiError(
                "resource_unavailable",
                f"server location {location.name} is currently unavailable for "
                f"server type {server_type.name}",
            )
        if len(self.servers) >= self.server_limit:
            raise ApiError(
                "resource_limit_exceeded",
                f"server limit of {self.server_limit} reached for this project",
                details={"limits": [{"name": "server_limit"}]},
            )
        try:
            address = next(self._addresses)
        except StopIteration:
            raise ApiError("resource_unavailable", "no addresses left in the pool") from None
        server = SimServer(
            id=self.next_id("server"),
            name=name,
            server_type=server_type,
            location=location,
            image_id=image.id,
            ip=str(address),
            ipv4_id=self.next_id("primary_ip"),
            ipv6_id=self.next_id("primary_ip"),
            ipv6_net=f"2001:db8:{int(address) & 0xFFFF:x}::/64",
            labels=labels,
            user_data=user_data,
            ssh_public_keys=[k.public_key for k in keys],
            # Hetzner only mails/returns a root password when no SSH key was given.
            root_password=None if keys else secrets.token_urlsafe(15),
        )
        self.servers[server.id] = server
        for fw in firewalls:
            fw.server_ids.append(server.id)
        create = self._action("create_server", [("server", server.id)], self.durations.create)
        start = self._action(
            "start_server",
            [("server", server.id)],
            self.durations.create + self.durations.start,
        )
        server.busy_with = start if start_after_create else create
        self._spawn(self._provision(server, create, start if start_after_create else None))
        await self.notify("server_created", server)
        return server, create, [start] if start_after_create else []

    async def _provision(
        self, server: SimServer, create: SimAction, start: SimAction | None
    ) -> None:
        await asyncio.sleep(create.duration)
        failure = self._take_failure("create_server")
        create.finish(failure)
        if self.servers.get(server.id) is not server:  # deleted while being created
            if start is not None:
                start.finish(("action_failed", "server was deleted"))
            return
        if failure is not None or start is None:
            server.status = "off"
            if start is not None:
                start.finish(("action_failed", "server creation failed"))
            return
        server.status = "starting"
        await asyncio.sleep(max(0.0, start.duration - create.duration))
        failure = self._take_failure("start_server")
        start.finish(failure)
        if self.servers.get(server.id) is not server:
            return
        server.status = "off" if failure else "running"
        if failure is None:
            self.schedule_boot(server, self.durations.boot)

    def schedule_boot(self, server: SimServer, real_s: float) -> None:
        epoch = server.power_epoch

        async def boot() -> None:
            await asyncio.sleep(real_s * self.time_scale)
            if self.servers.get(server.id) is server and server.power_epoch == epoch:
                server.booted = True
                await self.notify("server_booted", server)

        self._spawn(boot())

    async def lose_power(self, server: SimServer, status: str | None = "off") -> None:
        """The machine goes down (power off, death, start of a reboot or rebuild)."""
        server.power_epoch += 1
        was_booted, server.booted = server.booted, False
        if status is not None:
            server.status = status
        if was_booted or status == "off":
            await self.notify("server_powered_off", server)

    async def delete_server(self, server: SimServer) -> SimAction:
        # Deletion is accepted even while an action runs: the product must be able
        # to clean up a stuck server.
        del self.servers[server.id]
        for running in self.actions.values():
            if running.status == "running" and running.concerns("server", server.id):
                running.finish(("action_failed", "server was deleted"))
        for image in list(self.images.values()):  # snapshots cut short
            if image.status == "creating" and image.created_from == (server.id, server.name):
                del self.images[image.id]
        action = self._action("delete_server", [("server", server.id)], self.durations.delete)
        self._spawn(self._finish_later(action))
        for fw in self.firewalls.values():
            if server.id in fw.server_ids:
                fw.server_ids.remove(server.id)
        server.status = "deleting"
        await self.lose_power(server, None)
        await self.notify("server_deleted", server)
        return action

    async def _finish_later(self, action: SimAction) -> None:
        await asyncio.sleep(action.duration)
        action.finish(self._take_failure(action.command))

    async def kill_server(self, server_id: int) -> None:
        """Fault: the server dies; it reports `off` without anyone asking."""
        await self.lose_power(self.server(server_id), "off")

    # -- firewalls -----------------------------------------------------------

    def firewall_action(self, command: str, firewall: SimFirewall, servers: list[int]) -> SimAction:
        resources = [("server", sid) for sid in servers] + [("firewall", firewall.id)]
        action = self._action(command, resources, self.durations.firewall)
        self._spawn(self._finish_later(action))
        return action
