"""What the real Hetzner Cloud API validates, and its error shape.

Everything here is pure: names, labels, label selectors, firewall rules, SSH public
keys. Handlers raise `ApiError`; the web layer renders it as
`{"error": {"code", "message", "details"}}` with the matching HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

# HTTP status of each error code the real API uses.
STATUS_OF_CODE: dict[str, int] = {
    "json_error": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "resource_limit_exceeded": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "uniqueness_error": 409,
    "conflict": 409,
    "resource_unavailable": 412,
    "placement_error": 412,
    "invalid_input": 422,
    "service_error": 422,
    "locked": 423,
    "protected": 423,
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "maintenance": 503,
    "timeout": 504,
}

USER_DATA_LIMIT = 32 * 1024


class ApiError(Exception):
    """An error answer of the API; `status` defaults from the code."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_OF_CODE.get(code, 400)
        self.details: dict[str, Any] = dict(details) if details is not None else {}

    def to_api(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid_input(field: str, message: str) -> ApiError:
    return ApiError(
        "invalid_input",
        f"invalid input in field '{field}'",
        details={"fields": [{"name": field, "messages": [message]}]},
    )


def not_found(kind: str) -> ApiError:
    return ApiError("not_found", f"{kind} not found")


def uniqueness_error(field: str, message: str) -> ApiError:
    return ApiError("uniqueness_error", message, details={"fields": [{"name": field}]})


# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def check_server_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise invalid_input("name", "name is required")
    if len(name) > 253 or not all(_HOST_LABEL.match(part) for part in name.split(".")):
        raise invalid_input("name", "server name must be a valid hostname as per RFC 1123")
    return name


def check_resource_name(field: str, name: Any) -> str:
    """Names of ssh keys, firewalls and images: any non-empty string up to 128."""
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise invalid_input(field, "name must be a non-empty string of at most 128 characters")
    return name


# Kubernetes-style labels, as Hetzner documents them.
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-_.A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    if prefix.endswith("hetzner.cloud"):  # reserved for Hetzner's own labels
        return False
    return bool(_LABEL_NAME.match(name))


def check_labels(labels: Any, field: str = "labels") -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise invalid_input(field, "labels must be an object")
    for key, value in labels.items():
        if not isinstance(key, str) or not _label_key_ok(key):
            raise invalid_input(field, f"label key '{key}' is invalid")
        if not isinstance(value, str) or (value and not _LABEL_NAME.match(value)):
            raise invalid_input(field, f"label value '{value}' of key '{key}' is invalid")
    return dict(labels)


def _split_selector(selector: str) -> list[str]:
    """Split on commas that are not inside `in (...)` sets."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


_SET_EXPR = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")
_EQ_EXPR = re.compile(r"^(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=]*)$")
_KEY_EXPR = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Evaluate a label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
    `k notin (a,b)`, joined by commas (all must hold). Raises on bad syntax."""
    for expr in _split_selector(selector):
        if not expr:
            raise invalid_input("label_selector", "empty expression in label selector")
        if m := _SET_EXPR.match(expr):
            values = {v.strip() for v in m["values"].split(",")}
            present = m["key"] in labels and labels[m["key"]] in values
            if present != (m["op"] == "in"):
                return False
        elif m := _EQ_EXPR.match(expr):
            equal = labels.get(m["key"]) == m["value"]
            if equal != (m["op"] != "!="):
                return False
        elif m := _KEY_EXPR.match(expr):
            if (m["key"] in labels) == bool(m["neg"]):
                return False
        else:
            raise invalid_input("label_selector", f"invalid label selector expression '{expr}'")
    return True


def check_selector(selector: Any) -> str:
    if not isinstance(selector, str) or not selector.strip():
        raise invalid_input("label_selector", "label selector must be a non-empty string")
    selector_matches(selector, {})  # raises on syntax errors
    return selector


_PROTOCOLS = {"tcp", "udp", "icmp", "esp", "gre"}


def _check_port(port: Any) -> str:
    if not isinstance(port, str):
        raise invalid_input("rules", "port must be a string like '22' or '1024-5000'")
    if port == "any":
        return port
    bounds = port.split("-")
    if len(bounds) > 2 or not all(b.isdigit() and 1 <= int(b) <= 65535 for b in bounds):
        raise invalid_input("rules", f"invalid port '{port}'")
    if len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
        raise invalid_input("rules", f"invalid port range '{port}'")
    return port


def _check_cidrs(ips: Any, name: str) -> list[str]:
    if not isinstance(ips, list) or len(ips) > 100:
        raise invalid_input("rules", f"{name} must be a list of at most 100 CIDR blocks")
    out = []
    for ip in ips:
        try:
            out.append(str(ipaddress.ip_network(str(ip), strict=False)))
        except ValueError:
            raise invalid_input("rules", f"invalid CIDR '{ip}' in {name}") from None
        if "/" not in str(ip):
            raise invalid_input("rules", f"'{ip}' in {name} is not in CIDR notation")
    return out


def check_firewall_rules(rules: Any) -> list[dict[str, Any]]:
    """Validate and normalise rules into the API's response shape."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise invalid_input("rules", "rules must be a list")
    checked = []
    for rule in rules:
        if not isinstance(rule, dict):
            raise invalid_input("rules", "each rule must be an object")
        direction, protocol = rule.get("direction"), rule.get("protocol")
        if direction not in ("in", "out"):
            raise invalid_input("rules", "direction must be 'in' or 'out'")
        if protocol not in _PROTOCOLS:
            raise invalid_input("rules", f"protocol must be one of {sorted(_PROTOCOLS)}")
        port = rule.get("port")
        if protocol in ("tcp", "udp"):
            port = _check_port(port)
        elif port is not None:
            raise invalid_input("rules", f"port is not allowed for protocol {protocol}")
        source = _check_cidrs(rule.get("source_ips", []), "source_ips")
        destination = _check_cidrs(rule.get("destination_ips", []), "destination_ips")
        if direction == "in" and (destination or not source):
            raise invalid_input("rules", "rules with direction 'in' need source_ips only")
        if direction == "out" and (source or not destination):
            raise invalid_input("rules", "rules with direction 'out' need destination_ips only")
        checked.append(
            {
                "direction": direction,
                "protocol": protocol,
                "port": port,
                "source_ips": source,
                "destination_ips": destination,
                "description": rule.get("description"),
            }
        )
    return checked


def rule_allows(rule: Mapping[str, Any], source_ip: str, protocol: str, port: int) -> bool:
    """Does one inbound rule admit traffic from source_ip to protocol/port?"""
    if rule["direction"] != "in" or rule["protocol"] != protocol:
        return False
    if rule.get("port") not in (None, "any"):
        low, _, high = str(rule["port"]).partition("-")
        if not int(low) <= port <= int(high or low):
            return False
    address = ipaddress.ip_address(source_ip)
    return any(address in ipaddress.ip_network(cidr) for cidr in rule["source_ips"])


_KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
}


def ssh_key_fingerprint(public_key: Any) -> str:
    """MD5 fingerprint (colon hex), as Hetzner reports it; validates the key."""
    if not isinstance(public_key, str):
        raise invalid_input("public_key", "public_key is required")
    parts = public_key.split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise invalid_input("public_key", "invalid public key: unsupported key type")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_input("public_key", "invalid public key: bad base64") from None
    # The blob starts with the length-prefixed key type; a mismatch means garbage.
    if len(blob) < 4 or blob[4 : 4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise invalid_input("public_key", "invalid public key: malformed key data")
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
