"""The one Hetzner client: an async facade over the synchronous `hcloud` library.

Every call runs in a small thread pool (nothing blocks the event loop) and every
HTTP request, hcloud's own retries and our action polls included, is paid for from
one `RequestBudget`. Errors come out as one `HetznerError` whose `kind` tells the
reconciler what to do: retry later, try the next location, wait for capacity in
the project, or give up.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from hcloud import APIException, Client
from hcloud._client import BackoffFunction
from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server
from hcloud.ssh_keys import SSHKey

from core.clock import Clock
from provisioner.budget import BudgetedSession, RequestBudget

# ErrorKind and HetznerError are part of this client's interface: re-exported.
from provisioner.hetzner_errors import KINDS, translate
from provisioner.hetzner_errors import ErrorKind as ErrorKind
from provisioner.hetzner_errors import HetznerError as HetznerError

T = TypeVar("T")

# hcloud's transport retries (429, conflict, timeouts, 502/504): few and quick, because
# the reconciler's step policy is the layer that rides out longer outages.
TRANSPORT_RETRIES = 3
# Hetzner's largest page: a list of the fleet costs one request per 50 servers.
PAGE_SIZE = 50


def transport_backoff(retries: int) -> float:
    return float(min(8, 2**retries))


@dataclass(frozen=True)
class ServerInfo:
    id: int
    name: str
    status: str
    ip: str | None
    location: str | None
    labels: dict[str, str]


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    description: str
    labels: dict[str, str]
    created: str
    status: str = "available"  # "creating" while its action runs


def _key_with_material(keys: list[Any], public_key: str) -> int | None:
    wanted = " ".join(public_key.split()[:2])
    for key in keys:
        if " ".join(str(key.public_key).split()[:2]) == wanted:
            return _id(key.id)
    return None


def _id(value: int | None) -> int:
    if value is None:
        raise HetznerError(
            "invalid_response", "Hetzner answered without an id", ErrorKind.TRANSIENT
        )
    return int(value)


def _image(image: str | int) -> Image:
    """An image by id (an int, or a string of digits as HCLOUD_IMAGE holds) or by name."""
    if isinstance(image, int) or image.isdigit():
        return Image(id=int(image))
    return Image(name=image)


def _server_info(server: Any) -> ServerInfo:
    ipv4 = server.public_net.ipv4 if server.public_net else None
    return ServerInfo(
        id=_id(server.id),
        name=str(server.name),
        status=str(server.status),
        ip=str(ipv4.ip) if ipv4 is not None else None,
        location=str(server.location.name) if server.location is not None else None,
        labels=dict(server.labels or {}),
    )


class Hetzner:
    """What the product does with Hetzner, and nothing more."""

    def __init__(
        self,
        token: str,
        endpoint: str,
        *,
        budget: RequestBudget,
        clock: Clock,
        workers: int = 8,
        retry_backoff: BackoffFunction = transport_backoff,
    ) -> None:
        self.budget = budget
        self.clock = clock
        self._client = Client(
            token=token,
            api_endpoint=endpoint,
            application_name="openclaw-hosted",
            timeout=(5, 30),
        )
        # hcloud keeps its transport in private attributes (pinned hcloud 2.27, tested):
        # the session gets our budget, the retry policy our numbers.
        base = self._client._client
        base._session = BudgetedSession(budget)
        base._retry_max_retries = TRANSPORT_RETRIES
        base._retry_interval_func = retry_backoff
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hcloud")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(func, *args, **kwargs))
        except (APIException, requests.RequestException) as exc:
            raise translate(exc) from None

    # -- project-wide resources ---------------------------------------------------------

    async def ensure_ssh_key(self, name: str, public_key: str) -> int:
        """The backend's key, registered once per project and found again by its key
        material, never by its name alone: after SSH_PRIVATE_KEY_PATH changes, a key
        of that name is the old one, and servers created with it would lock us out.
        The new one is then registered beside it, its name suffixed with its hash."""
        keys = await self._call(self._client.ssh_keys.get_all)
        found = _key_with_material(keys, public_key)
        if found is not None:
            return found
        if any(key.name == name for key in keys):
            material = " ".join(public_key.split()[:2]).encode()
            name = f"{name}-{hashlib.sha256(material).hexdigest()[:8]}"
        try:
            created = await self._call(
                self._client.ssh_keys.create, name=name, public_key=public_key
            )
        except HetznerError as exc:
            # Another process (or our own retried POST) registered it first: use that one.
            if exc.code == "uniqueness_error" and (
                found := _key_with_material(
                    await self._call(self._client.ssh_keys.get_all), public_key
                )
            ):
                return found
            raise
        return _id(created.id)

    async def ensure_firewall(self, name: str, rules: list[dict[str, Any]], selector: str) -> int:
        """One firewall with exactly these inbound rules, applied to `selector`."""
        rule_objects = [
            FirewallRule(
                direction="in",
                protocol=rule["protocol"],
                port=rule.get("port"),
                source_ips=rule["source_ips"],
                description=rule.get("description"),
            )
            for rule in rules
        ]
        target = FirewallResource(
            type="label_selector", label_selector=FirewallResourceLabelSelector(selector)
        )
        firewall = await self._call(self._client.firewalls.get_by_name, name)
        if firewall is None:
            try:
                response = await self._call(
                    self._client.firewalls.create,
                    name=name,
                    rules=rule_objects,
                    resources=[target],
                )
                return _id(response.firewall.id)
            except HetznerError as exc:  # created meanwhile by another process: adopt it
                firewall = await self._call(self._client.firewalls.get_by_name, name)
                if exc.code != "uniqueness_error" or firewall is None:
                    raise
        await self._call(self._client.firewalls.set_rules, firewall, rule_objects)
        applied = [r for r in firewall.applied_to or [] if r.type == "label_selector"]
        if not any(r.label_selector and r.label_selector.selector == selector for r in applied):
            await self._call(self._client.firewalls.apply_to_resources, firewall, [target])
        return _id(firewall.id)

    async def server_type_prices(self, server_type: str) -> dict[str, float]:
        """Gross monthly EUR by location, where Hetzner offers the type (one request)."""
        found = await self._call(self._client.server_types.get_by_name, server_type)
        prices = (found.prices or []) if found else []
        return {str(p["location"]): float(p["price_monthly"]["gross"]) for p in prices}

    async def monthly_price_eur(self, server_type: str, location: str) -> float | None:
        return (await self.server_type_prices(server_type)).get(location)

    # -- servers --------------------------------------------------------------------------

    async def server_by_name(self, name: str) -> ServerInfo | None:
        server = await self._call(self._client.servers.get_by_name, name)
        return _server_info(server) if server is not None else None

    async def server(self, server_id: int) -> ServerInfo | None:
        try:
            server = await self._call(self._client.servers.get_by_id, server_id)
        except HetznerError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return _server_info(server)

    async def servers(self, label_selector: str) -> list[ServerInfo]:
        """Every server matching the selector (once each, though pages may shift)."""
        found = {s.id: s async for page in self.server_pages(label_selector) for s in page}
        return list(found.values())

    async def server_pages(self, label_selector: str) -> AsyncIterator[list[ServerInfo]]:
        """The matching servers a page at a time, each page one request through the budget."""
        page: int | None = 1
        while page is not None:
            result = await self._call(
                self._client.servers.get_list,
                label_selector=label_selector,
                page=page,
                per_page=PAGE_SIZE,
            )
            yield [_server_info(s) for s in result.servers]
            pagination = result.meta.pagination if result.meta else None
            following = pagination.next_page if pagination else None
            page = following if following is not None and following > page else None

    async def create_server(
        self,
        *,
        name: str,
        server_type: str,
        image: str | int,
        location: str,
        ssh_key_id: int,
        user_data: str,
        labels: dict[str, str],
    ) -> tuple[ServerInfo, list[int]]:
        image_ref = _image(image)
        response = await self._call(
            self._client.servers.create,
            name=name,
            server_type=ServerType(name=server_type),
            image=image_ref,
            location=Location(name=location),
            ssh_keys=[SSHKey(id=ssh_key_id)],
            user_data=user_data,
            labels=labels,
        )
        actions = [response.action, *(response.next_actions or [])]
        return _server_info(response.server), [_id(a.id) for a in actions if a is not None]

    async def _server_action(self, method: str, server_id: int, **kwargs: Any) -> int:
        action = await self._call(
            getattr(self._client.servers, method), Server(id=server_id), **kwargs
        )
        return _id(action.id)

    async def power_on(self, server_id: int) -> int:
        return await self._server_action("power_on", server_id)

    async def power_off(self, server_id: int) -> int:
        return await self._server_action("power_off", server_id)

    async def shutdown(self, server_id: int) -> int:
        return await self._server_action("shutdown", server_id)

    async def reboot(self, server_id: int) -> int:
        return await self._server_action("reboot", server_id)

    async def delete_server(self, server_id: int) -> int:
        return await self._server_action("delete", server_id)

    async def rebuild(self, server_id: int, image: str | int) -> int:
        image_ref = _image(image)
        result = await self._call(self._client.servers.rebuild, Server(id=server_id), image_ref)
        return _id(result.action.id)

    # -- snapshots ------------------------------------------------------------------------

    async def snapshot(
        self, server_id: int, description: str, labels: dict[str, str]
    ) -> tuple[int, int]:
        result = await self._call(
            self._client.servers.create_image,
            Server(id=server_id),
            description=description,
            type="snapshot",
            labels=labels,
        )
        return _id(result.image.id), _id(result.action.id)

    async def snapshots(self, label_selector: str) -> list[SnapshotInfo]:
        images = await self._call(
            self._client.images.get_all, type=["snapshot"], label_selector=label_selector
        )
        return [
            SnapshotInfo(
                _id(i.id),
                str(i.description or ""),
                dict(i.labels or {}),
                str(i.created),
                str(i.status or "available"),
            )
            for i in images
        ]

    async def delete_image(self, image_id: int) -> None:
        try:
            await self._call(self._client.images.delete, Image(id=image_id))
        except HetznerError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise

    # -- actions --------------------------------------------------------------------------

    async def wait_action(self, action_id: int, expected_s: float) -> None:
        """Poll one action through the budget until it ends; raise if it failed.

        Each poll is timed from the action's own progress: the time it has taken so far
        scaled by what is left, so the poll after the first lands about when it ends. A
        long action costs a handful of requests; a short one is noticed soon after.
        """
        started = self.clock.now()
        delay = max(MIN_POLL_S, min(expected_s * 0.02, 1.0))
        while True:
            if (self.clock.now() - started).total_seconds() > expected_s * ACTION_PATIENCE:
                raise HetznerError(
                    "action_timeout", f"action {action_id} still running", ErrorKind.TRANSIENT
                )
            await self.clock.sleep(delay)
            action = await self._call(self._client.actions.get_by_id, action_id)
            if action.status == "success":
                return
            if action.status == "error":
                error: dict[str, Any] = dict(action.error or {})
                raise HetznerError(
                    str(error.get("code", "action_failed")),
                    str(error.get("message", f"{action.command} failed")),
                    KINDS.get(str(error.get("code")), ErrorKind.TRANSIENT),
                )
            elapsed = (self.clock.now() - started).total_seconds()
            progress = int(action.progress or 0)
            # Land at its estimated end; with no progress reported yet, back off by doubling.
            estimate = elapsed * (100 - progress) / progress if 0 < progress < 100 else elapsed
            delay = min(MAX_POLL_S, max(MIN_POLL_S, estimate))


# An action still running after this many times its expected duration is stuck.
ACTION_PATIENCE = 30
MIN_POLL_S = 0.05
MAX_POLL_S = 10.0
