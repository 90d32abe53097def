"""The subset of cloud-config (YAML) a simulated VPS understands at first boot.

PyYAML is not a dependency, so this is a small block-YAML reader: mappings and
sequences by indentation, `key: value`, `- item`, block scalars (`|`, `|-`, `|+`,
`>`), single/double-quoted scalars and one-line flow lists. That covers what
cloud-init user data written by a program looks like. Anything else raises
`CloudConfigError`, as a malformed cloud-config would make cloud-init skip it.

Used keys: `ssh_keys` (`ed25519_private`, `ed25519_public`: the host key),
`ssh_authorized_keys`, `users[].ssh_authorized_keys` for root, `write_files`
(path, content, permissions) and `runcmd`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

Node = Any  # str | list[Node] | dict[str, Node] | None


class CloudConfigError(ValueError):
    pass


@dataclass
class _Line:
    number: int
    indent: int
    text: str  # without indentation; comments still present


def _strip_comment(text: str) -> str:
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"" and (i == 0 or text[i - 1] in " :-[,"):
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _scalar(raw: str) -> Node:
    raw = raw.strip()
    if raw in ("", "~", "null"):
        return None
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        try:
            value: str = json.loads(raw)
        except ValueError as error:
            raise CloudConfigError(f"bad double-quoted string {raw!r}") from error
        return value
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1].replace("''", "'")
    if raw.startswith("[") and raw.endswith("]"):
        inner = raw[1:-1].strip()
        return [_scalar(part) for part in _split_flow(inner)] if inner else []
    if raw.startswith("{") or raw.startswith("&") or raw.startswith("*"):
        raise CloudConfigError(f"unsupported YAML construct {raw!r}")
    return raw


def _split_flow(inner: str) -> list[str]:
    parts, current, quote = [], "", ""
    for ch in inner:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return parts


_KEY = re.compile(r"^([A-Za-z0-9_.\-/]+|\"[^\"]*\"|'[^']*')\s*:(\s+|$)")


class _Parser:
    def __init__(self, text: str) -> None:
        self.raw = text.splitlines()
        self.pos = 0

    def _next_content(self) -> _Line | None:
        while self.pos < len(self.raw):
            line = self.raw[self.pos]
            if "\t" in line[: len(line) - len(line.lstrip())]:
                raise CloudConfigError(f"line {self.pos + 1}: tab in indentation")
            text = _strip_comment(line.strip())
            if text and text != "---":
                return _Line(self.pos + 1, len(line) - len(line.lstrip(" ")), line.strip())
            self.pos += 1
        return None

    def parse(self) -> Node:
        first = self._next_content()
        if first is None:
            return {}
        node = self._block(first.indent)
        if (extra := self._next_content()) is not None:
            raise CloudConfigError(f"line {extra.number}: unexpected indentation")
        return node

    def _block(self, indent: int) -> Node:
        line = self._next_content()
        assert line is not None
        if line.text.startswith("- ") or line.text == "-":
            return self._sequence(indent)
        return self._mapping(indent)

    def _sequence(self, indent: int) -> list[Node]:
        items: list[Node] = []
        while (line := self._next_content()) is not None and line.indent == indent:
            if not (line.text.startswith("- ") or line.text == "-"):
                break
            rest = line.text[1:].lstrip(" ")
            if not rest:
                self.pos += 1
                items.append(self._child(indent))
            elif _KEY.match(rest):
                # "- key: value" opens a mapping whose keys align after the dash.
                offset = len(line.text) - len(rest)
                self.raw[self.pos] = " " * (indent + offset) + rest
                items.append(self._mapping(indent + offset))
            else:
                self.pos += 1
                items.append(self._value(rest, indent))
        return items

    def _mapping(self, indent: int) -> dict[str, Node]:
        result: dict[str, Node] = {}
        while (line := self._next_content()) is not None and line.indent == indent:
            match = _KEY.match(line.text)
            if match is None:
                raise CloudConfigError(f"line {line.number}: expected 'key: value'")
            key = match.group(1).strip("\"'")
            rest = line.text[match.end() :]
            self.pos += 1
            result[key] = self._value(rest, indent) if rest.strip() else self._child(indent)
        return result

    def _child(self, indent: int) -> Node:
        line = self._next_content()
        if line is None or line.indent < indent:
            return None
        if line.indent == indent:  # a sequence may sit at its key's indentation
            return self._sequence(indent) if line.text.startswith("-") else None
        return self._block(line.indent)

    def _value(self, rest: str, indent: int) -> Node:
        rest = _strip_comment(rest).strip()
        if rest and rest[0] in "|>":
            return self._block_scalar(rest, indent)
        return _scalar(rest)

    def _block_scalar(self, header: str, indent: int) -> str:
        folded, chomp = header[0] == ">", header[1:2]
        lines: list[str] = []
        block_indent: int | None = None
        while self.pos < len(self.raw):
            line = self.raw[self.pos]
            stripped = line.strip()
            current = len(line) - len(line.lstrip(" "))
            if stripped and (current <= indent or (block_indent and current < block_indent)):
                break
            if stripped and block_indent is None:
                block_indent = current
            lines.append(line[block_indent or 0 :] if stripped else "")
            self.pos += 1
        while lines and chomp != "+" and not lines[-1]:
            lines.pop()
        text = (" " if folded else "\n").join(lines)
        return text if chomp == "-" else text + "\n"


def parse_yaml(text: str) -> Node:
    return _Parser(text).parse()


@dataclass
class CloudConfig:
    host_private_key: str | None = None
    host_public_key: str | None = None
    authorized_keys: list[str] = field(default_factory=list)
    write_files: list[dict[str, Any]] = field(default_factory=list)
    runcmd: list[str] = field(default_factory=list)


def _strings(node: Node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [item.strip() for item in node if isinstance(item, str) and item.strip()]
    return []


def parse_cloud_config(user_data: str | None) -> CloudConfig:
    """What cloud-init would apply. User data that is not `#cloud-config` (a shell
    script, say) carries no keys for us; a broken cloud-config raises."""
    if not user_data or not user_data.lstrip().startswith("#cloud-config"):
        return CloudConfig()
    root = parse_yaml(user_data)
    if not isinstance(root, dict):
        raise CloudConfigError("cloud-config must be a mapping")
    config = CloudConfig()
    keys = root.get("ssh_keys")
    if isinstance(keys, dict):
        private, public = keys.get("ed25519_private"), keys.get("ed25519_public")
        config.host_private_key = private if isinstance(private, str) else None
        config.host_public_key = public.strip() if isinstance(public, str) else None
    config.authorized_keys = _strings(root.get("ssh_authorized_keys"))
    for user in root.get("users") or []:
        if isinstance(user, dict) and user.get("name") == "root":
            config.authorized_keys += _strings(user.get("ssh_authorized_keys"))
    files = root.get("write_files")
    config.write_files = (
        [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []
    )
    for cmd in root.get("runcmd") or []:
        if isinstance(cmd, str):
            config.runcmd.append(cmd)
        elif isinstance(cmd, list):
            config.runcmd.append(" ".join(_quote(str(part)) for part in cmd))
    return config


def _quote(word: str) -> str:
    return (
        word
        if re.fullmatch(r"[A-Za-z0-9_./:=@%+-]+", word)
        else "'" + word.replace("'", "'\\''") + "'"
    )


# -- first boot: what cloud-init writes to the disk ------------------------------

OS_RELEASE = """PRETTY_NAME="Ubuntu 24.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.3 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"""
INSTANCE_ID_PATH = "/var/lib/cloud/data/instance-id"  # where cloud-init keeps it


def write_first_boot(
    path: Callable[[str], Path],
    server_id: int,
    hostname: str,
    user_data: str | None,
    public_keys: list[str],
    log: Callable[[str], None],
) -> list[str]:
    """Apply cloud-init's per-instance modules to a disk (`path` maps a VPS path to the
    host file): the SSH host key and authorized keys, os-release, hostname, the
    instance id, `write_files`. Returns `runcmd`, to run once the system is up."""
    try:
        config = parse_cloud_config(user_data)
    except CloudConfigError as error:
        log(f"cloud-init: user data ignored: {error}")
        config = parse_cloud_config(None)
    keys = public_keys + config.authorized_keys
    ssh_dir = path("/root/.ssh")
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text("".join(k.strip() + "\n" for k in keys))
    (ssh_dir / "authorized_keys").chmod(0o600)
    if config.host_private_key:
        key = asyncssh.import_private_key(config.host_private_key)
    else:
        key = asyncssh.generate_private_key("ssh-ed25519")
    etc_ssh = path("/etc/ssh")
    etc_ssh.mkdir(parents=True, exist_ok=True)
    private = etc_ssh / "ssh_host_ed25519_key"
    private.write_bytes(key.export_private_key())
    private.chmod(0o600)
    (etc_ssh / "ssh_host_ed25519_key.pub").write_bytes(key.export_public_key())
    for name, text in (("os-release", OS_RELEASE), ("hostname", hostname + "\n")):
        path(f"/etc/{name}").write_text(text)
    instance_id = path(INSTANCE_ID_PATH)
    instance_id.parent.mkdir(parents=True, exist_ok=True)
    instance_id.write_text(f"{server_id}\n")
    for item in config.write_files:
        where, content = item.get("path"), item.get("content", "")
        if isinstance(where, str) and where.startswith("/") and isinstance(content, str):
            target = path(where)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            mode = item.get("permissions")
            if isinstance(mode, str) and mode.strip("'\"").isdigit():
                target.chmod(int(mode.strip("'\""), 8))
    return config.runcmd
