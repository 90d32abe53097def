"""What `GET /healthz` reports about the process's moving parts.

An uptime monitor that only sees an open port misses a stuck scheduler or a dead
reconciler. Each part registers a probe here (wired by `app/`), and the web face asks
them all without knowing what they are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

# A probe answers a small JSON-able dict that carries at least "ok": bool.
Probe = Callable[[], Awaitable[dict[str, Any]]]


class Liveness:
    def __init__(self) -> None:
        self._probes: dict[str, Probe] = {}

    def register(self, name: str, probe: Probe) -> None:
        self._probes[name] = probe

    async def report(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """(every part ok, each part's report); a probe that raises is a part not ok."""
        parts: dict[str, dict[str, Any]] = {}
        for name, probe in self._probes.items():
            try:
                parts[name] = await probe()
            except Exception as exc:
                log.exception("liveness probe %s failed", name)
                parts[name] = {"ok": False, "error": type(exc).__name__}
        return all(part.get("ok") is True for part in parts.values()), parts
