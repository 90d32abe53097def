"""The VPS status check (every `STATUS_CHECK_INTERVAL_S`): our servers as Hetzner lists
them, a page of 50 per request (never a request per server), handed to
`core.server_watch`, which records the facts, alerts, and leaves the repairs to the
reconciler. Only a server the list did not show is looked up on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.clock import Clock
from core.server_watch import TEMPORARY_GRACE_S, ListedServer, ServerWatch
from db.connection import Database
from provisioner.config import MANAGED_SELECTOR
from provisioner.hetzner import Hetzner, ServerInfo
from provisioner.image import GOLDEN_PURPOSE, PURPOSE_LABEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusSummary:
    listed: int  # servers with our labels
    calls: int  # requests to Hetzner: list pages, plus lookups of unlisted servers
    anomalies: int  # instances whose server is not as it should be (alerted or muted)
    orphans: int  # servers of ours that belong to no live instance
    alerts: int = 0
    repairs: int = 0


def listed(server: ServerInfo) -> ListedServer:
    return ListedServer(
        id=server.id,
        name=server.name,
        status=server.status,
        instance_label=server.labels.get("instance"),
        temporary=server.labels.get(PURPOSE_LABEL) == GOLDEN_PURPOSE,
    )


class VpsStatusCheck:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        hetzner: Hetzner,
        *,
        wake: Callable[[], None] = lambda: None,
        selector: str = MANAGED_SELECTOR,
        temporary_grace_s: float = TEMPORARY_GRACE_S,
    ) -> None:
        self.hetzner = hetzner
        self.selector = selector
        self.watch = ServerWatch(db, clock, wake=wake, temporary_grace_s=temporary_grace_s)

    async def check(self) -> StatusSummary:
        """One pass; a Hetzner error propagates (nothing is recorded from a partial list)."""
        baseline = await self.watch.baseline()
        servers: dict[int, ListedServer] = {}
        pages = 0
        async for page in self.hetzner.server_pages(self.selector):
            pages += 1
            servers.update((s.id, listed(s)) for s in page)

        async def confirm(server_id: int | None, name: str) -> ListedServer | None:
            if server_id is not None:
                found = await self.hetzner.server(server_id)
            else:
                found = await self.hetzner.server_by_name(name)
            return listed(found) if found is not None else None

        report = await self.watch.record(baseline, list(servers.values()), confirm)
        summary = StatusSummary(
            listed=len(servers),
            calls=pages + report.confirmations,
            anomalies=report.anomalies,
            orphans=report.orphans,
            alerts=report.alerts,
            repairs=report.repairs,
        )
        log.info(
            "vps status: %d servers in %d calls, %d anomalies, %d orphans",
            summary.listed,
            summary.calls,
            summary.anomalies,
            summary.orphans,
        )
        return summary
