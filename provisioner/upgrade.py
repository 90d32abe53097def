"""The `upgrade` operation: one instance to another OpenClaw version, verified, and back
to its previous version (verified too) when the new one does not pass.

Upgrading is `npm install -g --allow-scripts=openclaw openclaw@V` and a gateway restart;
it passes when `/readyz` answers 200 within the start grace and `openclaw security
audit --json` reports nothing above "info", the checks a new install passes. Nothing
else is touched: the customer's configuration, password and data stay as they are.

The version it came from is read from the server and saved on the operation before
anything changes, with the phase it is in, so an upgrade interrupted by a crash
resumes (an install of the version already there is skipped) and a rollback under way
goes on rolling back.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import aiosqlite

from core.clock import from_iso
from core.models import OperationState
from core.rollout_store import target_version
from provisioner.infra import Infra
from provisioner.provisioning import wait_ready
from provisioner.ssh import SshError

log = logging.getLogger(__name__)

Result = tuple[OperationState, str]

_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?")

# Run as root with `bash -s`, `want` set on the line before (a checked version).
SWITCH_SCRIPT = """set -euo pipefail
has_version() { openclaw --version 2>/dev/null | grep -Fqw -- "$want"; }
if has_version; then
  echo "openclaw $want already installed"
else
  # npm 11 skips install scripts unless allowed, and OpenClaw needs its own.
  npm install -g --allow-scripts=openclaw "openclaw@$want" </dev/null
  if ! has_version; then
    echo "openclaw --version does not report $want after npm install" >&2
    exit 1
  fi
fi
systemctl restart openclaw-gateway
"""
VERSION_SCRIPT = "openclaw --version 2>/dev/null || true\n"
AUDIT_SCRIPT = "sudo -u openclaw -H openclaw security audit --json </dev/null\n"


def parse_version(output: str) -> str | None:
    """`openclaw --version` prints the version, alone or after the name."""
    found = _VERSION.search(output)
    return found.group() if found else None


def audit_problem(output: str) -> str | None:
    """None when the audit's JSON lists nothing above "info"; otherwise what it found."""
    start = output.find("{")
    try:  # the JSON document alone: a line printed around it must not fail the check
        report = json.JSONDecoder().raw_decode(output[start:])[0] if start >= 0 else None
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("findings"), list):
        return f"security audit output not understood: {output.strip()[-200:]!r}"
    bad = [f for f in report["findings"] if isinstance(f, dict) and f.get("severity") != "info"]
    if not bad:
        return None
    listed = ", ".join(f"{f.get('severity')} {f.get('checkId')}" for f in bad[:5])
    return f"security audit: {listed}"


async def installed_version(infra: Infra, instance: aiosqlite.Row) -> str | None:
    result = await infra.ssh.run(instance["server_ip"], instance["ssh_host_key"], VERSION_SCRIPT)
    return parse_version(result.output)


async def switch(infra: Infra, instance: aiosqlite.Row, version: str) -> str | None:
    """Install `version`, restart the gateway, verify it; None when it passed, else why.
    A lost connection (the server rebooting under it, say) is a failure like another:
    what the server runs is then not known, so it is rolled back all the same."""
    try:
        return await _switch(infra, instance, version)
    except (SshError, OSError, TimeoutError) as exc:
        return f"{version}: {type(exc).__name__}: {exc}"


async def _switch(infra: Infra, instance: aiosqlite.Row, version: str) -> str | None:
    if not _VERSION.fullmatch(version):
        return f"not an OpenClaw version: {version[:40]!r}"
    instance_id, ip, key = instance["id"], instance["server_ip"], instance["ssh_host_key"]
    result = await infra.ssh.run(ip, key, SWITCH_SCRIPT, variables={"want": version})
    await infra.records.gateway_started(instance_id)  # the monitor's start grace
    await infra.records.append_log(
        instance_id, f"upgrade to {version} exited {result.exit_status}:\n{result.output}"
    )
    if result.exit_status != 0:
        return f"installing {version} exited {result.exit_status}"
    if not await wait_ready(infra, instance):
        return f"{version}: /readyz not 200 within {infra.config.start_grace_s:g} s"
    audit = await infra.ssh.run(ip, key, AUDIT_SCRIPT)
    if audit.exit_status != 0:
        return f"{version}: security audit exited {audit.exit_status}"
    return audit_problem(audit.output)


def _muted(instance: aiosqlite.Row, infra: Infra) -> bool:
    until = instance["muted_until"]
    return bool(until) and from_iso(until) > infra.clock.now()


async def upgrade(infra: Infra, instance: aiosqlite.Row, operation: aiosqlite.Row) -> Result:
    instance_id = instance["id"]
    if _muted(instance, infra):
        return OperationState.CANCELED, "muted: upgrades wait until it is unmuted"
    version = operation["version"] or await target_version(infra.db, infra.config.openclaw_version)
    progress: dict[str, Any] = {}
    if operation["result"]:
        try:
            progress = dict(json.loads(operation["result"]))
        except (ValueError, TypeError):
            progress = {}
    if "phase" not in progress:
        previous = await installed_version(infra, instance)
        progress = {"phase": "upgrade", "from": previous, "to": version}
        await infra.records.operation_progress(operation["id"], progress)
    previous = progress.get("from")
    if previous == version:  # already there: verified, and not restarted for nothing
        if not await wait_ready(infra, instance):
            return OperationState.FAILED, f"already on {version}, but /readyz is not 200"
        await infra.records.save(instance_id, openclaw_version=version)
        return OperationState.DONE, f"already on {version}: ready"
    if progress["phase"] == "upgrade":
        log.info("upgrading %s → %s", previous, version, extra={"instance_id": instance_id})
        problem = await switch(infra, instance, version)
        if problem is None:
            await infra.records.save(instance_id, openclaw_version=version)
            done = f"upgraded {previous or '?'} → {version}: ready, audit clean"
            return OperationState.DONE, done
        if not previous:
            await infra.records.save(instance_id, openclaw_version=None)
            return OperationState.FAILED, f"{problem}; its version before is not known"
        progress |= {"phase": "rollback", "problem": problem}
        await infra.records.operation_progress(operation["id"], progress)
    problem = str(progress.get("problem", "the upgrade failed"))
    log.warning("rolling back to %s: %s", previous, problem, extra={"instance_id": instance_id})
    back = await switch(infra, instance, str(previous))
    if back is None:
        await infra.records.save(instance_id, openclaw_version=previous)
        return OperationState.FAILED, f"rolled back to {previous} (verified): {problem}"
    # Neither version verified: what runs there is not known until the next check.
    await infra.records.save(instance_id, openclaw_version=None)
    return OperationState.FAILED, f"{problem}; the rollback to {previous} failed too: {back}"
