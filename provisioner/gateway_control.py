"""The customer's way in, asked of their server over SSH (core.gateway_control's
protocol): a fresh one-time owner link from `openclaw dashboard`, and the gateway
password as the server has it.

Both answers are secrets: they are returned to the caller and never logged, and the
command's output (which holds the link) never goes into an exception message.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

from core.gateway_control import GatewayUnavailable
from core.models import Status
from db.connection import Database
from provisioner.ssh import HostKeyMismatch, SshError, SshRunner

log = logging.getLogger(__name__)

ENV_PATH = "/home/openclaw/.openclaw/.env"
# As the install script runs openclaw: the service user, with its own HOME (so the CLI
# finds ~/.openclaw); the dashboard command only mints a token, it opens nothing.
DASHBOARD_SCRIPT = "sudo -u openclaw -H openclaw dashboard --no-open --json\n"
COMMAND_TIMEOUT_S = 60
_LINK = re.compile(r"https?://\S+#\S*bootstrapToken=[A-Za-z0-9_\-.~%]+")

_NOT_RUNNING = {
    Status.PROVISIONING: "Your OpenClaw server is still being set up; try again in a few minutes.",
    Status.SUSPENDED: "Your OpenClaw server is suspended, so it cannot hand out a login link.",
    Status.FAILED: "Your OpenClaw server has a problem; our team has been alerted.",
    Status.DESTROYED: "This OpenClaw server no longer exists.",
}
_UNREACHABLE = "Your OpenClaw server could not be reached just now; please try again in a minute."


class SshGatewayControl:
    """GatewayControl over SSH to the instance's server, with its pinned host key."""

    def __init__(self, db: Database, ssh: SshRunner, gateway_port: int) -> None:
        self.db = db
        self.ssh = ssh
        self.gateway_port = gateway_port

    async def owner_link(self, instance_id: str) -> str:
        instance = await self._server(instance_id)
        ip, host_key = instance["server_ip"], instance["ssh_host_key"]
        try:
            result = await self.ssh.run(ip, host_key, DASHBOARD_SCRIPT, timeout_s=COMMAND_TIMEOUT_S)
        except SshError as error:
            self._log_ssh_error(instance_id, "owner link", error)
            raise GatewayUnavailable(_UNREACHABLE) from None
        if result.exit_status != 0:
            # The output is not logged: a half-written answer may hold a token.
            log.warning(
                "openclaw dashboard failed",
                extra={"instance_id": instance_id, "exit_status": result.exit_status},
            )
            raise GatewayUnavailable(
                "Your OpenClaw server did not hand out a login link; please try again shortly."
            )
        link = parse_dashboard_link(result.output)
        if link is None:
            log.warning("openclaw dashboard printed no link", extra={"instance_id": instance_id})
            raise GatewayUnavailable(
                "Your OpenClaw server did not hand out a login link; please try again shortly."
            )
        return rewrite_host(link, ip, self.gateway_port)

    async def gateway_password(self, instance_id: str) -> str:
        instance = await self._server(instance_id)
        try:
            env = await self.ssh.read_file(
                instance["server_ip"], instance["ssh_host_key"], ENV_PATH
            )
        except SshError as error:
            self._log_ssh_error(instance_id, "gateway password", error)
            raise GatewayUnavailable(_UNREACHABLE) from None
        password = password_from_env(env)
        if password is None:
            log.warning("no gateway password in .env", extra={"instance_id": instance_id})
            raise GatewayUnavailable(
                "Your OpenClaw server has no gateway password set; our team has been alerted."
            )
        return password

    async def _server(self, instance_id: str) -> aiosqlite.Row:
        instance = await self.db.fetch_one(
            "SELECT id, status, server_ip, ssh_host_key FROM instances WHERE id = ?",
            (instance_id,),
        )
        if instance is None:
            raise GatewayUnavailable("This OpenClaw server does not exist.")
        status = Status(instance["status"])
        if status is not Status.ACTIVE:
            raise GatewayUnavailable(_NOT_RUNNING.get(status, _UNREACHABLE))
        if not instance["server_ip"] or not instance["ssh_host_key"]:
            raise GatewayUnavailable(_NOT_RUNNING[Status.PROVISIONING])
        return instance

    @staticmethod
    def _log_ssh_error(instance_id: str, what: str, error: SshError) -> None:
        # SshError messages carry the address and the cause, never command output.
        level = logging.ERROR if isinstance(error, HostKeyMismatch) else logging.WARNING
        log.log(
            level,
            "ssh for %s failed: %s",
            what,
            error,
            extra={"instance_id": instance_id, "code": error.code},
        )


def parse_dashboard_link(output: str) -> str | None:
    """The `url` of `openclaw dashboard --json`. Output is stdout and stderr interleaved
    (node may print warnings), so look for the JSON line, then for a bare link."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str) and "bootstrapToken=" in url:
            return url
    match = _LINK.search(output)
    return match.group(0) if match else None


def rewrite_host(link: str, ip: str, port: int) -> str:
    """The CLI names the gateway as it sees itself (127.0.0.1): point the link at the
    server's public address instead, keeping path, query and the token's fragment."""
    parts = urlsplit(link)
    host = f"[{ip}]" if _is_ipv6(ip) else ip
    return urlunsplit(("http", f"{host}:{port}", parts.path or "/", parts.query, parts.fragment))


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def password_from_env(text: str) -> str | None:
    """OPENCLAW_GATEWAY_PASSWORD from a dotenv file, as the gateway itself reads it."""
    for line in text.splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == "OPENCLAW_GATEWAY_PASSWORD":
            return value.strip().strip("'\"") or None
    return None
