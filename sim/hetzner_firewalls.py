"""Firewall routes of the simulated API: create with rules and `apply_to`, set_rules,
apply_to_resources / remove_from_resources, list/get/update/delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sim.hetzner_api import HetznerApi, page_of, path_id, read_json
from sim.hetzner_model import SimAction, SimFirewall
from sim.hetzner_rules import (
    ApiError,
    check_firewall_rules,
    check_labels,
    check_resource_name,
    check_selector,
    invalid_input,
    selector_matches,
    uniqueness_error,
)


def render_firewall(api: HetznerApi, fw: SimFirewall) -> dict[str, Any]:
    by_selector = [
        {
            "type": "label_selector",
            "label_selector": {"selector": sel},
            "applied_to_resources": [
                {"type": "server", "server": {"id": s.id}}
                for s in api.state.servers.values()
                if selector_matches(sel, s.labels)
            ],
        }
        for sel in fw.selectors
    ]
    direct = [{"type": "server", "server": {"id": sid}} for sid in fw.server_ids]
    return {
        "id": fw.id,
        "name": fw.name,
        "labels": fw.labels,
        "created": fw.created,
        "rules": fw.rules,
        "applied_to": direct + by_selector,
    }


class FirewallRoutes:
    def __init__(self, api: HetznerApi) -> None:
        self.api = api
        self.state = api.state

    def routes(self, prefix: str = "/v1") -> list[web.RouteDef]:
        base = f"{prefix}/firewalls"
        return [
            web.get(base, self.list_firewalls),
            web.post(base, self.create_firewall),
            web.get(f"{base}/{{id}}", self.get_firewall),
            web.put(f"{base}/{{id}}", self.update_firewall),
            web.delete(f"{base}/{{id}}", self.delete_firewall),
            web.get(f"{base}/{{id}}/actions/{{action_id}}", self.get_firewall_action),
            web.post(f"{base}/{{id}}/actions/set_rules", self.set_rules),
            web.post(f"{base}/{{id}}/actions/apply_to_resources", self.apply_to_resources),
            web.post(f"{base}/{{id}}/actions/remove_from_resources", self.remove_from_resources),
        ]

    def _render(self, fw: SimFirewall) -> dict[str, Any]:
        return render_firewall(self.api, fw)

    def _targets(self, fw: SimFirewall, resources: Any, *, remove: bool) -> list[SimAction]:
        """Apply (or remove) a firewall to servers and label selectors, validating all
        first so a bad entry changes nothing; one action per resource, like the API."""
        field = "remove_from" if remove else "apply_to"
        if not isinstance(resources, list):
            raise invalid_input(field, f"{field} must be a list")
        plan: list[tuple[str, int | str]] = []
        for res in resources:
            kind = res.get("type") if isinstance(res, dict) else None
            if kind == "server":
                sid = (res.get("server") or {}).get("id")
                if not isinstance(sid, int):
                    raise invalid_input(field, "server.id is required")
                self.state.server(sid)
                if (sid in fw.server_ids) != remove:
                    code = "firewall_already_removed" if remove else "firewall_already_applied"
                    raise ApiError(code, f"firewall {fw.id} on server {sid}", status=422)
                plan.append(("server", sid))
            elif kind == "label_selector":
                sel = check_selector((res.get("label_selector") or {}).get("selector"))
                if (sel in fw.selectors) != remove:
                    raise invalid_input(field, f"label selector {sel!r} already in that state")
                plan.append(("label_selector", sel))
            else:
                raise invalid_input(field, "type must be server or label_selector")
        actions = []
        command = "remove_firewall" if remove else "apply_firewall"
        for kind, target in plan:
            bucket: list[Any] = fw.server_ids if kind == "server" else fw.selectors
            if remove:
                bucket.remove(target)
            else:
                bucket.append(target)
            servers = (
                [int(target)]
                if kind == "server"
                else [
                    s.id
                    for s in self.state.servers.values()
                    if selector_matches(str(target), s.labels)
                ]
            )
            actions.append(self.state.firewall_action(command, fw, servers))
        return actions

    async def list_firewalls(self, request: web.Request) -> web.Response:
        selector = request.query.get("label_selector")
        if selector is not None:
            check_selector(selector)
        name = request.query.get("name")
        items = [
            fw
            for fw in self.state.firewalls.values()
            if name in (None, fw.name)
            and (selector is None or selector_matches(selector, fw.labels))
        ]
        return page_of(request, items, "firewalls", self._render)

    async def create_firewall(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        name = check_resource_name("name", body.get("name"))
        if any(fw.name == name for fw in self.state.firewalls.values()):
            raise uniqueness_error("name", "firewall name is already used")
        fw = SimFirewall(
            self.state.next_id("firewall"),
            name,
            check_firewall_rules(body.get("rules")),
            check_labels(body.get("labels")),
        )
        actions = [self.state.firewall_action("set_firewall_rules", fw, [])]
        actions += self._targets(fw, body.get("apply_to") or [], remove=False)
        self.state.firewalls[fw.id] = fw
        return web.json_response(
            {"firewall": self._render(fw), "actions": [self.api.action_json(a) for a in actions]},
            status=201,
        )

    async def get_firewall(self, request: web.Request) -> web.Response:
        return web.json_response({"firewall": self._render(self.state.firewall(path_id(request)))})

    async def update_firewall(self, request: web.Request) -> web.Response:
        fw, body = self.state.firewall(path_id(request)), await read_json(request)
        if "name" in body:
            name = check_resource_name("name", body["name"])
            if any(f.name == name and f is not fw for f in self.state.firewalls.values()):
                raise uniqueness_error("name", "firewall name is already used")
            fw.name = name
        if "labels" in body:
            fw.labels = check_labels(body["labels"])
        return web.json_response({"firewall": self._render(fw)})

    async def delete_firewall(self, request: web.Request) -> web.Response:
        fw = self.state.firewall(path_id(request))
        if fw.server_ids or fw.selectors:
            raise ApiError("resource_in_use", f"firewall {fw.id} is still applied", status=422)
        del self.state.firewalls[fw.id]
        return web.Response(status=204)

    async def get_firewall_action(self, request: web.Request) -> web.Response:
        fw_id = path_id(request)
        action = self.state.actions.get(path_id(request, "action_id"))
        if action is None or not action.concerns("firewall", fw_id):
            raise ApiError("not_found", "action not found")
        return web.json_response({"action": self.api.action_json(action)})

    async def set_rules(self, request: web.Request) -> web.Response:
        fw, body = self.state.firewall(path_id(request)), await read_json(request)
        if "rules" not in body:
            raise invalid_input("rules", "rules is required")
        fw.rules = check_firewall_rules(body["rules"])
        affected = [s.id for s in self.state.servers.values() if fw in self.state.firewalls_for(s)]
        action = self.state.firewall_action("set_firewall_rules", fw, affected)
        return web.json_response({"actions": [self.api.action_json(action)]}, status=201)

    async def apply_to_resources(self, request: web.Request) -> web.Response:
        fw, body = self.state.firewall(path_id(request)), await read_json(request)
        actions = self._targets(fw, body.get("apply_to"), remove=False)
        return web.json_response(
            {"actions": [self.api.action_json(a) for a in actions]}, status=201
        )

    async def remove_from_resources(self, request: web.Request) -> web.Response:
        fw, body = self.state.firewall(path_id(request)), await read_json(request)
        actions = self._targets(fw, body.get("remove_from"), remove=True)
        return web.json_response(
            {"actions": [self.api.action_json(a) for a in actions]}, status=201
        )
