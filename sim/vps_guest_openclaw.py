"""Guest `openclaw` CLI (stdlib only; see `vps_guest.py`), as FIELD-NOTES.md
describes the real one: onboard, config, security audit, health, dashboard,
devices. State lives in `$HOME/.openclaw` of whoever runs it.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import stat
import time
from typing import Any

from sim.vps_guest import err, identity, out, rpc

EX_CONFIG = 78  # sysexits' EX_CONFIG, as the real CLI uses for unsafe bind/auth


def state_dir() -> str:
    return os.environ.get("OPENCLAW_STATE_DIR") or os.path.join(
        os.environ.get("HOME", "/root"), ".openclaw"
    )


def config_path() -> str:
    return os.path.join(state_dir(), "openclaw.json")


def load_config() -> dict[str, Any]:
    try:
        with open(config_path()) as f:
            data: dict[str, Any] = json.load(f)
        return data
    except (OSError, ValueError):
        return {}


def save_config(config: dict[str, Any]) -> None:
    os.makedirs(state_dir(), exist_ok=True)
    path = config_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.chmod(path, 0o600)


def env_password() -> str | None:
    try:
        with open(os.path.join(state_dir(), ".env")) as f:
            for line in f:
                key, sep, value = line.strip().removeprefix("export ").partition("=")
                if sep and key == "OPENCLAW_GATEWAY_PASSWORD":
                    return value.strip().strip("'\"") or None
    except OSError:
        pass
    return os.environ.get("OPENCLAW_GATEWAY_PASSWORD")


def version() -> str:
    with open("/usr/lib/node_modules/openclaw/package.json") as f:
        return str(json.load(f)["version"])


def options(args: list[str]) -> tuple[dict[str, str], set[str], list[str]]:
    values: dict[str, str] = {}
    flags: set[str] = set()
    words: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            values[key] = value
        elif (
            arg.startswith("--")
            and i + 1 < len(args)
            and not args[i + 1].startswith("--")
            and arg not in BOOLEAN
        ):
            values[arg], i = args[i + 1], i + 1
        elif arg.startswith("-"):
            flags.add(arg)
        else:
            words.append(arg)
        i += 1
    return values, flags, words


BOOLEAN = {
    "--non-interactive",
    "--accept-risk",
    "--json",
    "--strict-json",
    "--no-open",
    "--deep",
    "--skip-channels",
    "--skip-skills",
    "--skip-search",
    "--skip-daemon",
    "--skip-health",
    "--skip-ui",
    "--install-daemon",
    "--fix",
    "--latest",
}


def onboard(args: list[str]) -> int:
    values, flags, _ = options(args)
    if "--non-interactive" not in flags:
        err("Interactive onboarding needs a TTY; use --non-interactive\n")
        return 1
    if "--accept-risk" not in flags:
        err("Non-interactive onboarding requires --accept-risk\n")
        return 1
    auth = values.get("--gateway-auth", "token")
    bind = values.get("--gateway-bind", "loopback")
    if auth not in ("none", "token", "password", "trusted-proxy"):
        err(f"Invalid --gateway-auth {auth!r}\n")
        return 1
    if bind != "loopback" and auth == "none":
        err(f"Refusing to bind the gateway to {bind} without auth (use --gateway-auth)\n")
        return EX_CONFIG
    gateway: dict[str, Any] = {
        "mode": values.get("--mode", "local"),
        "port": int(values.get("--gateway-port", "18789")),
        "bind": bind,
        "auth": {"mode": auth},
    }
    if auth == "password":
        password = values.get("--gateway-password")
        if not password:
            err("--gateway-auth password needs --gateway-password\n")
            return 1
        gateway["auth"]["password"] = password  # plain text, as the real onboard does
    elif auth == "token":
        gateway["auth"]["token"] = values.get("--gateway-token") or secrets.token_hex(24)
    config = load_config()
    config["gateway"] = gateway
    config.setdefault("meta", {})["lastTouchedVersion"] = version()
    os.makedirs(state_dir(), exist_ok=True)  # with the umask: 0755 unless tightened
    save_config(config)
    if "--json" in flags:
        out(
            json.dumps(
                {
                    "ok": True,
                    "configPath": config_path(),
                    "gateway": {"port": gateway["port"], "bind": bind},
                }
            )
            + "\n"
        )
    else:
        out(f"Onboarding complete. Config: {config_path()}\n")
    return 0


def _walk(config: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    keys = path.split(".")
    node: Any = config
    for key in keys[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return None, keys[-1]
        node = node[key]
    return node, keys[-1]


def config_cmd(args: list[str]) -> int:
    _, flags, words = options(args)
    if not words or words[0] not in ("get", "set", "unset", "file"):
        err("Usage: openclaw config get|set|unset PATH [VALUE]\n")
        return 1
    verb = words[0]
    if verb == "file":
        out(config_path() + "\n")
        return 0
    if len(words) < 2:
        err(f"openclaw config {verb}: missing PATH\n")
        return 1
    config, path = load_config(), words[1]
    if verb == "get":
        parent, key = _walk(config, path)
        if parent is None or key not in parent:
            err(f"Config path not found: {path}\n")
            return 1
        value = parent[key]
        out(
            (
                value
                if isinstance(value, str) and "--json" not in flags
                else json.dumps(value, indent=2)
            )
            + "\n"
        )
        return 0
    if verb == "unset":
        parent, key = _walk(config, path)
        if parent is not None:
            parent.pop(key, None)
        save_config(config)
        return 0
    if len(words) < 3:
        err("openclaw config set: missing VALUE\n")
        return 1
    raw = words[2]
    try:
        value = json.loads(raw)
    except ValueError:
        if "--strict-json" in flags:
            err(f"Invalid JSON for {path}: {raw}\n")
            return 1
        value = raw
    node: Any = config
    for key in path.split(".")[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path.split(".")[-1]] = value
    save_config(config)
    out(f"Updated {path}\n")
    return 0


def audit() -> list[dict[str, str]]:
    config = load_config()
    gateway = config.get("gateway", {}) if isinstance(config.get("gateway"), dict) else {}
    auth = gateway.get("auth", {}) if isinstance(gateway.get("auth"), dict) else {}
    findings: list[dict[str, str]] = []

    def finding(check: str, severity: str, title: str, fix: str) -> None:
        findings.append(
            {"checkId": check, "severity": severity, "title": title, "remediation": fix}
        )

    password = env_password() or auth.get("password")
    if auth.get("mode") == "none" and gateway.get("bind", "loopback") != "loopback":
        finding(
            "gateway.auth.none_public",
            "critical",
            "Gateway reachable without auth",
            "Set gateway.auth.mode",
        )
    if auth.get("password"):
        finding(
            "gateway.auth.password_in_config",
            "warn",
            "Gateway password stored in openclaw.json",
            "Move it to ~/.openclaw/.env as OPENCLAW_GATEWAY_PASSWORD",
        )
    if auth.get("mode") == "password" and password and len(str(password)) < 24:
        finding(
            "gateway.auth.password_short",
            "warn",
            "Gateway password shorter than 24 characters",
            "Use a longer random password",
        )
    if not auth.get("rateLimit"):
        finding(
            "gateway.auth.no_rate_limit",
            "warn",
            "No rate limit on gateway auth attempts",
            "Set gateway.auth.rateLimit",
        )
    origins = (
        (gateway.get("controlUi") or {}).get("allowedOrigins")
        if isinstance(gateway.get("controlUi"), dict)
        else None
    )
    if gateway.get("bind", "loopback") != "loopback" and not origins:
        finding(
            "gateway.control_ui.allowed_origins_missing",
            "warn",
            "Control UI allows any origin",
            "Set gateway.controlUi.allowedOrigins",
        )
    for path, check in ((state_dir(), "fs.state_dir.perms"), (config_path(), "fs.config.perms")):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            finding(
                check,
                "critical" if mode & 0o007 else "warn",
                f"{path} is readable by others ({mode:o})",
                f"chmod 700 {path}" if os.path.isdir(path) else f"chmod 600 {path}",
            )
    return findings


def security(args: list[str]) -> int:
    _, flags, words = options(args)
    if words[:1] != ["audit"]:
        err("Usage: openclaw security audit [--json] [--deep]\n")
        return 1
    findings = audit()
    summary = {
        s: sum(1 for f in findings if f["severity"] == s) for s in ("critical", "warn", "info")
    }
    if "--json" in flags:
        out(
            json.dumps({"ts": int(time.time() * 1000), "summary": summary, "findings": findings})
            + "\n"
        )
    else:
        out(f"Security audit: {summary['critical']} critical, {summary['warn']} warn\n")
        out("".join(f"[{f['severity']}] {f['checkId']}: {f['title']}\n" for f in findings))
    return 0


def gateway_get(path: str, password: str | None) -> tuple[int, dict[str, Any]]:
    me = identity()
    port = int(load_config().get("gateway", {}).get("port", me["gateway_port"]))
    conn = http.client.HTTPConnection(me["ip"], port, timeout=10, source_address=(me["ip"], 0))
    headers = {"Authorization": f"Bearer {password}"} if password else {}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, body if isinstance(body, dict) else {}


def health(args: list[str]) -> int:
    _, flags, _ = options(args)
    auth = load_config().get("gateway", {}).get("auth", {})
    try:
        status, body = gateway_get("/healthz", env_password() or auth.get("password"))
    except (OSError, http.client.HTTPException, ValueError) as error:
        result = {"ok": False, "error": f"gateway not reachable: {error}"}
        out(json.dumps(result) + "\n" if "--json" in flags else f"Gateway unreachable: {error}\n")
        return 1
    ok = status == 200 and bool(body.get("ok"))
    out(
        json.dumps({"ok": ok, **body}) + "\n"
        if "--json" in flags
        else f"Gateway: {'ok' if ok else 'unhealthy'}\n"
    )
    return 0 if ok else 1


def dashboard(args: list[str]) -> int:
    _, flags, _ = options(args)
    port = int(load_config().get("gateway", {}).get("port", 18789))
    token = secrets.token_urlsafe(32)
    url = f"http://127.0.0.1:{port}/#bootstrapToken={token}"
    tokens_path = os.path.join(state_dir(), "devices", "bootstrap.json")
    os.makedirs(os.path.dirname(tokens_path), exist_ok=True)
    with open(tokens_path, "a") as f:
        f.write(json.dumps({"token": token, "expires": time.time() + 600}) + "\n")
    if "--json" in flags:
        out(json.dumps({"url": url, "expiresInSeconds": 600, "opened": False}) + "\n")
    else:
        out(f"Dashboard URL: {url}\n")
    return 0


def devices(args: list[str]) -> int:
    _, flags, words = options(args)
    paired_path = os.path.join(state_dir(), "devices", "paired.json")
    try:
        with open(paired_path) as f:
            paired: list[dict[str, Any]] = json.load(f)
    except (OSError, ValueError):
        paired = []
    if words[:1] == ["list"]:
        pending = rpc("pairing", [])["pending"]
        if "--json" in flags:
            out(json.dumps({"pending": pending, "paired": paired}) + "\n")
        else:
            out("".join(f"pending {p['request_id']} {p['device_name']}\n" for p in pending))
            out("".join(f"paired  {p['request_id']} {p['device_name']}\n" for p in paired))
        return 0
    if words[:1] == ["approve"] and len(words) >= 2:
        approved = rpc("approve", [words[1]])["approved"]
        if approved is None:
            err(f"No pending device request {words[1]}\n")
            return 1
        paired.append(approved)
        os.makedirs(os.path.dirname(paired_path), exist_ok=True)
        with open(paired_path, "w") as f:
            json.dump(paired, f)
        out(f"Approved {approved['device_name']}\n")
        return 0
    err("Usage: openclaw devices list|approve ID\n")
    return 1


def openclaw(args: list[str]) -> int:
    if args[:1] in (["--version"], ["-V"], ["version"]):
        out(version() + "\n")
        return 0
    commands = {
        "onboard": onboard,
        "config": config_cmd,
        "security": security,
        "health": health,
        "dashboard": dashboard,
        "devices": devices,
    }
    if not args or args[0] not in commands:
        err(f"openclaw: unknown command {args[0] if args else ''!r}\n")
        return 1
    return commands[args[0]](args[1:])
