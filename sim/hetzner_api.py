"""The `/v1` resource routes of the simulated Hetzner Cloud API.

Handlers parse and validate requests and render responses in the shapes of the
OpenAPI description; the project's rules live in `HetznerState`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from sim import hetzner_catalog as catalog
from sim import hetzner_lifecycle as lifecycle
from sim.hetzner_model import SimAction, SimImage, SimServer, SimSshKey
from sim.hetzner_rules import (
    USER_DATA_LIMIT,
    ApiError,
    check_labels,
    check_resource_name,
    check_selector,
    check_server_name,
    invalid_input,
    not_found,
    selector_matches,
    ssh_key_fingerprint,
    uniqueness_error,
)
from sim.hetzner_state import HetznerState

T = TypeVar("T")
MAX_PER_PAGE = 50


async def read_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise ApiError("json_error", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError("json_error", "request body must be a JSON object")
    return body


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        raise not_found("resource")
    return int(raw)


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise invalid_input(name, f"{name} must be a positive integer")
    return int(raw)


def page_of(
    request: web.Request, items: list[T], key: str, render: Callable[[T], Any]
) -> web.Response:
    """One page and `meta.pagination`, as every real list endpoint returns them."""
    page = _int_param(request, "page", 1)
    per_page = min(_int_param(request, "per_page", 25), MAX_PER_PAGE)
    last_page = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    return web.json_response(
        {
            key: [render(item) for item in chunk],
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last_page else None,
                    "last_page": last_page,
                    "total_entries": len(items),
                }
            },
        }
    )


def _filtered(request: web.Request, items: Iterable[T], labels: Callable[[T], Any]) -> list[T]:
    selector = request.query.get("label_selector")
    if selector is None:
        return list(items)
    check_selector(selector)
    return [item for item in items if selector_matches(selector, labels(item))]


class HetznerApi:
    def __init__(self, state: HetznerState) -> None:
        self.state = state

    def routes(self, prefix: str = "/v1") -> list[web.RouteDef]:
        return [
            web.get(f"{prefix}/locations", self.list_locations),
            web.get(f"{prefix}/locations/{{id}}", self.get_location),
            web.get(f"{prefix}/server_types", self.list_server_types),
            web.get(f"{prefix}/server_types/{{id}}", self.get_server_type),
            web.get(f"{prefix}/servers", self.list_servers),
            web.post(f"{prefix}/servers", self.create_server),
            web.get(f"{prefix}/servers/{{id}}", self.get_server),
            web.put(f"{prefix}/servers/{{id}}", self.update_server),
            web.delete(f"{prefix}/servers/{{id}}", self.delete_server),
            web.get(f"{prefix}/servers/{{id}}/actions", self.list_server_actions),
            web.get(f"{prefix}/servers/{{id}}/actions/{{action_id}}", self.get_server_action),
            web.post(f"{prefix}/servers/{{id}}/actions/{{command}}", self.server_action),
            web.get(f"{prefix}/actions", self.list_actions),
            web.get(f"{prefix}/actions/{{id}}", self.get_action),
            web.get(f"{prefix}/ssh_keys", self.list_ssh_keys),
            web.post(f"{prefix}/ssh_keys", self.create_ssh_key),
            web.get(f"{prefix}/ssh_keys/{{id}}", self.get_ssh_key),
            web.put(f"{prefix}/ssh_keys/{{id}}", self.update_ssh_key),
            web.delete(f"{prefix}/ssh_keys/{{id}}", self.delete_ssh_key),
            web.get(f"{prefix}/images", self.list_images),
            web.get(f"{prefix}/images/{{id}}", self.get_image),
            web.put(f"{prefix}/images/{{id}}", self.update_image),
            web.delete(f"{prefix}/images/{{id}}", self.delete_image),
        ]

    # -- renderings ----------------------------------------------------------

    def render_server(self, s: SimServer) -> dict[str, Any]:
        image = self.state.images.get(s.image_id)
        return {
            "id": s.id,
            "name": s.name,
            "status": s.status,
            "created": s.created,
            "public_net": {
                # hcloud reads ipv4.id (the primary IP) and raises KeyError without it.
                "ipv4": {"id": s.ipv4_id, "ip": s.ip, "blocked": False, "dns_ptr": ""},
                "ipv6": {"id": s.ipv6_id, "ip": s.ipv6_net, "blocked": False, "dns_ptr": []},
                "floating_ips": [],
                "firewalls": [
                    {"id": fw.id, "status": "applied"} for fw in self.state.firewalls_for(s)
                ],
            },
            "private_net": [],
            "server_type": s.server_type.to_api(),
            "datacenter": {
                "id": s.location.id,
                "name": s.location.datacenter,
                "description": s.location.datacenter.upper(),
                "location": s.location.to_api(),
            },
            "location": s.location.to_api(),
            "image": image.to_api() if image else None,
            "iso": None,
            "rescue_enabled": s.rescue_enabled,
            "locked": s.locked,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": s.server_type.included_traffic,
            "protection": {"delete": False, "rebuild": False},
            "labels": s.labels,
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": s.server_type.disk,
            "placement_group": None,
        }

    def action_json(self, action: SimAction) -> dict[str, Any]:
        return dict(action.to_api(self.state.now()))

    # -- catalog -------------------------------------------------------------

    async def list_locations(self, request: web.Request) -> web.Response:
        items = [loc for loc in catalog.LOCATIONS if request.query.get("name") in (None, loc.name)]
        return page_of(request, items, "locations", lambda loc: loc.to_api())

    async def get_location(self, request: web.Request) -> web.Response:
        loc = catalog.find_location(path_id(request))
        if loc is None:
            raise not_found("location")
        return web.json_response({"location": loc.to_api()})

    async def list_server_types(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        items = [st for st in catalog.SERVER_TYPES if name in (None, st.name)]
        return page_of(request, items, "server_types", lambda st: st.to_api())

    async def get_server_type(self, request: web.Request) -> web.Response:
        st = catalog.find_server_type(path_id(request))
        if st is None:
            raise not_found("server_type")
        return web.json_response({"server_type": st.to_api()})

    # -- servers -------------------------------------------------------------

    async def list_servers(self, request: web.Request) -> web.Response:
        servers = _filtered(request, self.state.servers.values(), lambda s: s.labels)
        name = request.query.get("name")
        statuses = request.query.getall("status", [])
        servers = [
            s for s in servers if name in (None, s.name) and (not statuses or s.status in statuses)
        ]
        return page_of(request, servers, "servers", self.render_server)

    async def create_server(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        name = check_server_name(body.get("name"))
        server_type = catalog.find_server_type(body.get("server_type"))
        if server_type is None:
            raise invalid_input("server_type", f"server type {body.get('server_type')!r} not found")
        if body.get("image") is None:
            raise invalid_input("image", "image is required")
        location = None
        if body.get("location") is not None:
            location = catalog.find_location(body["location"])
            if location is None:
                raise invalid_input("location", f"location {body['location']!r} not found")
        user_data = body.get("user_data")
        if user_data is not None and (
            not isinstance(user_data, str) or len(user_data.encode()) > USER_DATA_LIMIT
        ):
            raise invalid_input("user_data", "user_data must be a string of at most 32 KiB")
        firewall_refs = body.get("firewalls") or []
        if not all(
            isinstance(f, dict) and isinstance(f.get("firewall"), int) for f in firewall_refs
        ):
            raise invalid_input("firewalls", "firewalls must be a list of {'firewall': id}")
        server, action, next_actions = await self.state.create_server(
            name=name,
            server_type=server_type,
            image_ref=body["image"],
            location=location,
            ssh_key_refs=list(body.get("ssh_keys") or []),
            firewall_ids=[f["firewall"] for f in firewall_refs],
            user_data=user_data,
            labels=check_labels(body.get("labels")),
            start_after_create=body.get("start_after_create", True) is not False,
        )
        return web.json_response(
            {
                "server": self.render_server(server),
                "action": self.action_json(action),
                "next_actions": [self.action_json(a) for a in next_actions],
                "root_password": server.root_password,
            },
            status=201,
        )

    async def get_server(self, request: web.Request) -> web.Response:
        server = self.state.server(path_id(request))
        return web.json_response({"server": self.render_server(server)})

    async def update_server(self, request: web.Request) -> web.Response:
        server = self.state.server(path_id(request))
        body = await read_json(request)
        if "name" in body:
            name = check_server_name(body["name"])
            if any(s.name == name and s is not server for s in self.state.servers.values()):
                raise uniqueness_error("name", "server name is already used")
            server.name = name
        if "labels" in body:
            server.labels = check_labels(body["labels"])
        return web.json_response({"server": self.render_server(server)})

    async def delete_server(self, request: web.Request) -> web.Response:
        action = await self.state.delete_server(self.state.server(path_id(request)))
        return web.json_response({"action": self.action_json(action)})

    async def server_action(self, request: web.Request) -> web.Response:
        server = self.state.server(path_id(request))
        command = request.match_info["command"]
        body = await read_json(request)
        if command in lifecycle.POWER_COMMANDS:
            action = await lifecycle.power_action(self.state, server, command)
            return web.json_response({"action": self.action_json(action)}, status=201)
        if command == "rebuild":
            if body.get("image") is None:
                raise invalid_input("image", "image is required")
            user_data = body.get("user_data")
            if user_data is not None and len(str(user_data).encode()) > USER_DATA_LIMIT:
                raise invalid_input("user_data", "user_data must be at most 32 KiB")
            action, password = await lifecycle.rebuild(self.state, server, body["image"], user_data)
            return web.json_response(
                {"action": self.action_json(action), "root_password": password}, status=201
            )
        if command == "create_image":
            kind = body.get("type", "snapshot")
            if kind not in ("snapshot", "backup"):
                raise invalid_input("type", "type must be snapshot or backup")
            image, action = lifecycle.create_image(
                self.state, server, kind, body.get("description"), check_labels(body.get("labels"))
            )
            return web.json_response(
                {"image": image.to_api(), "action": self.action_json(action)}, status=201
            )
        raise not_found("action")

    async def list_server_actions(self, request: web.Request) -> web.Response:
        server_id = self.state.server(path_id(request)).id
        actions = [a for a in self.state.actions.values() if a.concerns("server", server_id)]
        return page_of(request, actions, "actions", self.action_json)

    async def get_server_action(self, request: web.Request) -> web.Response:
        server_id = path_id(request)
        action = self.state.actions.get(path_id(request, "action_id"))
        if action is None or not action.concerns("server", server_id):
            raise not_found("action")
        return web.json_response({"action": self.action_json(action)})

    # -- actions -------------------------------------------------------------

    async def list_actions(self, request: web.Request) -> web.Response:
        ids = {int(i) for i in request.query.getall("id", []) if i.isdigit()}
        actions = [a for a in self.state.actions.values() if not ids or a.id in ids]
        return page_of(request, actions, "actions", self.action_json)

    async def get_action(self, request: web.Request) -> web.Response:
        action = self.state.actions.get(path_id(request))
        if action is None:
            raise not_found("action")
        return web.json_response({"action": self.action_json(action)})

    # -- ssh keys ------------------------------------------------------------

    async def list_ssh_keys(self, request: web.Request) -> web.Response:
        keys = _filtered(request, self.state.ssh_keys.values(), lambda k: k.labels)
        name, fingerprint = request.query.get("name"), request.query.get("fingerprint")
        keys = [k for k in keys if name in (None, k.name) and fingerprint in (None, k.fingerprint)]
        return page_of(request, keys, "ssh_keys", lambda k: k.to_api())

    async def create_ssh_key(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        name = check_resource_name("name", body.get("name"))
        fingerprint = ssh_key_fingerprint(body.get("public_key"))
        labels = check_labels(body.get("labels"))
        for key in self.state.ssh_keys.values():
            if key.name == name:
                raise uniqueness_error("name", "SSH key with the same name already exists")
            if key.fingerprint == fingerprint:
                raise uniqueness_error("public_key", "SSH key with the same fingerprint exists")
        key = SimSshKey(
            self.state.next_id("ssh_key"),
            name,
            str(body["public_key"]).strip(),
            fingerprint,
            labels,
        )
        self.state.ssh_keys[key.id] = key
        return web.json_response({"ssh_key": key.to_api()}, status=201)

    def _ssh_key(self, request: web.Request) -> Any:
        key = self.state.ssh_keys.get(path_id(request))
        if key is None:
            raise not_found("ssh_key")
        return key

    async def get_ssh_key(self, request: web.Request) -> web.Response:
        return web.json_response({"ssh_key": self._ssh_key(request).to_api()})

    async def update_ssh_key(self, request: web.Request) -> web.Response:
        key, body = self._ssh_key(request), await read_json(request)
        if "name" in body:
            key.name = check_resource_name("name", body["name"])
        if "labels" in body:
            key.labels = check_labels(body["labels"])
        return web.json_response({"ssh_key": key.to_api()})

    async def delete_ssh_key(self, request: web.Request) -> web.Response:
        del self.state.ssh_keys[self._ssh_key(request).id]
        return web.Response(status=204)

    # -- images --------------------------------------------------------------

    async def list_images(self, request: web.Request) -> web.Response:
        images = _filtered(request, self.state.images.values(), lambda i: i.labels)
        q = request.query
        types, statuses = q.getall("type", []), q.getall("status", [])
        images = [
            i
            for i in images
            if (not types or i.type in types)
            and (not statuses or i.status in statuses)
            and q.get("name") in (None, i.name)
            and q.get("architecture") in (None, i.architecture)
        ]
        return page_of(request, images, "images", SimImage.to_api)

    async def get_image(self, request: web.Request) -> web.Response:
        return web.json_response({"image": self.state.image(path_id(request)).to_api()})

    async def update_image(self, request: web.Request) -> web.Response:
        image, body = self.state.image(path_id(request)), await read_json(request)
        if image.type == "system":
            raise ApiError("forbidden", "system images cannot be changed")
        if "description" in body:
            image.description = str(body["description"])
        if "labels" in body:
            image.labels = check_labels(body["labels"])
        return web.json_response({"image": image.to_api()})

    async def delete_image(self, request: web.Request) -> web.Response:
        image = self.state.image(path_id(request))
        if image.type == "system":
            raise ApiError("forbidden", "system images cannot be deleted")
        del self.state.images[image.id]
        return web.Response(status=204)
