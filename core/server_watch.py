"""What the monitor's list of Hetzner servers means: the facts it records and what
follows from them.

Each instance's server state is recorded as Hetzner last listed it (`missing` when
it is not there). An anomaly on a settled instance is alerted once (remembered in
`server_state_alerted`, cleared with an "ok again" notice) and turned into a fact the
reconciler acts on:

- off while the instance is active → `status = suspended`: the reconciler's resume
  powers it on, waits for SSH with the pinned key and verifies the gateway;
- running while the instance is suspended → `status = active`: the reconciler's
  suspend shuts it down again;
- missing while the instance is active → `failed`, as any lost server is: the
  operators decide between /retry (a new server, from the customer's latest final
  snapshot if one exists) and /reprovision; missing while suspended is only alerted;
- any other state but running, off or on the way between them → alerted only.

Only settled instances are judged: `active` or `suspended` as desired, with no
operation pending, running or finished since the check began, and unchanged since
before the list was read. Muted instances are recorded but neither alerted nor
repaired. Servers with our labels that belong to no live instance are orphans:
alerted once, remembered in `orphan_servers`, never deleted. A golden-image build's
temporary server is not one, unless it outlives `temporary_grace_s`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from core.clock import Clock, from_iso, to_iso
from core.journal import notify_ops, record_event
from core.models import ACTOR_MONITOR, Status
from db.connection import Database
from db.records import fetch_all, update

log = logging.getLogger(__name__)

# Ops alert kinds.
SERVER_STATE = "server_state"  # an anomaly of an instance's server
SERVER_STATE_OK = "server_state_ok"  # the anomaly is over
SERVER_ORPHAN = "server_orphan"  # a server of ours that belongs to no instance

MISSING = "missing"
# Hetzner states on the way between off and running, or of a server being rebuilt or
# moved: normal while they last.
TRANSITIONAL = frozenset({"initializing", "starting", "stopping", "rebuilding", "migrating"})
# How long an image build's temporary server may live before it counts as left behind.
TEMPORARY_GRACE_S = 3 * 3600.0
# More servers missing from one list than this, and the list is not believed.
MAX_LOOKUPS = 10


@dataclass(frozen=True)
class ListedServer:
    """A server as Hetzner listed it, in the terms core needs."""

    id: int
    name: str
    status: str
    instance_label: str | None = None
    temporary: bool = False  # an image build's own server


@dataclass(frozen=True)
class Baseline:
    """The instances as they were before the list was read."""

    started: datetime
    states: Mapping[str, tuple[str, str]]  # id → (status, desired_state)
    names: frozenset[str]
    server_ids: frozenset[int]


@dataclass
class WatchReport:
    anomalies: int = 0  # settled instances whose server is not as it should be
    alerts: int = 0
    repairs: int = 0  # facts changed for the reconciler
    orphans: int = 0  # servers of ours that belong to no live instance
    confirmations: int = 0  # lookups of servers the list did not show


# A lookup of one server (by id when known, else by name), for a server the list did
# not show: a page boundary shifts when servers come and go, and a missing server is
# too grave to conclude from one list.
Confirm = Callable[[int | None, str], Awaitable[ListedServer | None]]

_LIVE = "SELECT * FROM instances WHERE status != 'destroyed'"


def anomaly(status: str, observed: str) -> str | None:
    """What is wrong with a settled instance's server, or None when nothing is."""
    if status == Status.ACTIVE and observed in (MISSING, "off"):
        return observed
    if status == Status.SUSPENDED and observed in (MISSING, "running"):
        return observed
    if observed in ("running", "off") or observed in TRANSITIONAL:
        return None
    return f"unexpected {observed}"


class ServerWatch:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        wake: Callable[[], None] = lambda: None,
        temporary_grace_s: float = TEMPORARY_GRACE_S,
    ) -> None:
        self.db = db
        self.clock = clock
        self.wake = wake
        self.temporary_grace = timedelta(seconds=temporary_grace_s)

    async def baseline(self) -> Baseline:
        """Read before listing: an instance that changes meanwhile is not judged, and a
        server whose instance is destroyed meanwhile is not called an orphan."""
        started = self.clock.now()
        rows = await self.db.fetch_all(_LIVE)
        return Baseline(
            started=started,
            states={r["id"]: (r["status"], r["desired_state"]) for r in rows},
            names=frozenset(r["server_name"] for r in rows),
            server_ids=frozenset(r["hetzner_server_id"] for r in rows if r["hetzner_server_id"]),
        )

    async def record(
        self, baseline: Baseline, servers: Sequence[ListedServer], confirm: Confirm
    ) -> WatchReport:
        report = WatchReport()
        by_id = {s.id: s for s in servers}
        by_name = {s.name: s for s in servers}
        # Servers the list did not show, looked up one by one before any write. Many at
        # once means the list is wrong (another project's token, an outage), not that
        # the fleet vanished: no lookups then, and no verdicts on them.
        unlisted = [
            row
            for row in await self.db.fetch_all(_LIVE)
            if _judged(row) and _match(row, by_id, by_name) is None
        ]
        if len(unlisted) > MAX_LOOKUPS:
            log.error("%d servers missing from Hetzner's list: not believed", len(unlisted))
            unlisted = []
        confirmed: dict[str, ListedServer | None] = {}
        for row in unlisted:
            report.confirmations += 1
            try:
                confirmed[row["id"]] = await confirm(row["hetzner_server_id"], row["server_name"])
            except Exception as exc:  # undecided this time; the next check looks again
                log.warning("server lookup failed: %s", exc, extra={"instance_id": row["id"]})
        repaired = False
        async with self.db.transaction() as conn:
            now = self.clock.now()
            rows = await fetch_all(conn, _LIVE)
            busy = await _busy(conn, baseline.started)
            for row in rows:
                server = _match(row, by_id, by_name)
                if server is None and row["id"] in confirmed:
                    server = confirmed[row["id"]]
                elif server is None and _judged(row):
                    continue  # not looked up (it failed, or the row just changed): no verdict
                repaired |= await self._judge(conn, now, row, server, baseline, busy, report)
            report.orphans = await self._orphans(conn, now, baseline, rows, servers, report)
        if repaired:
            self.wake()
        return report

    async def _judge(
        self,
        conn: aiosqlite.Connection,
        now: datetime,
        row: aiosqlite.Row,
        server: ListedServer | None,
        baseline: Baseline,
        busy: set[str],
        report: WatchReport,
    ) -> bool:
        """Record one instance's server state; alert and repair an anomaly. True when the
        reconciler has something new to do."""
        instance_id, status, desired = row["id"], row["status"], row["desired_state"]
        observed: str | None = server.status if server is not None else MISSING
        if server is None and status == Status.PROVISIONING:
            observed = None  # no server yet, or not yet: nothing to say
        changes: dict[str, Any] = {}
        if observed != row["server_state"]:
            changes["server_state"] = observed
        settled = (
            _judged(row)
            and instance_id not in busy
            and baseline.states.get(instance_id) == (status, desired)
        )
        if not settled or observed is None:
            if changes:
                await update(conn, "instances", "id", instance_id, changes)
            return False
        problem = anomaly(status, observed)
        muted = bool(row["muted_until"]) and row["muted_until"] > to_iso(now)
        alerted = row["server_state_alerted"]
        name = server.name if server is not None else row["server_name"]
        server_id = server.id if server is not None else row["hetzner_server_id"]
        repair: dict[str, Any] = {}
        if problem is None:
            if alerted is not None:
                changes["server_state_alerted"] = None
                if not muted:
                    body = f"{instance_id}: server {name} is {observed} again, as it should be."
                    await self._alert(conn, now, row, SERVER_STATE_OK, body, observed, report)
        else:
            report.anomalies += 1
            if not muted:
                repair, text = _repair(status, problem, now)
                if alerted != problem:
                    changes["server_state_alerted"] = problem
                    body = f"{instance_id}: server {name} (id {server_id}) {text}"
                    await self._alert(conn, now, row, SERVER_STATE, body, observed, report)
        if changes or repair:
            await update(conn, "instances", "id", instance_id, changes | repair)
        if not repair:
            return False
        report.repairs += 1
        await record_event(
            conn,
            now,
            ACTOR_MONITOR,
            "status_changed",
            instance_id=instance_id,
            customer_id=row["customer_id"],
            payload={"from": status, "to": repair["status"], "server": observed},
        )
        log.warning(
            "server %s: %s → %s",
            observed,
            status,
            repair["status"],
            extra={"instance_id": instance_id},
        )
        return True

    async def _alert(
        self,
        conn: aiosqlite.Connection,
        now: datetime,
        row: aiosqlite.Row,
        kind: str,
        body: str,
        observed: str,
        report: WatchReport,
    ) -> None:
        await record_event(
            conn,
            now,
            ACTOR_MONITOR,
            kind,
            instance_id=row["id"],
            customer_id=row["customer_id"],
            payload={"server_state": observed, "server_id": row["hetzner_server_id"]},
        )
        await notify_ops(
            conn, now, kind, body, instance_id=row["id"], customer_id=row["customer_id"]
        )
        report.alerts += 1

    async def _orphans(
        self,
        conn: aiosqlite.Connection,
        now: datetime,
        baseline: Baseline,
        rows: Sequence[aiosqlite.Row],
        servers: Sequence[ListedServer],
        report: WatchReport,
    ) -> int:
        """Remember servers of ours that no live instance owns; alert each once."""
        ids = set(baseline.states) | {r["id"] for r in rows}
        names = set(baseline.names) | {r["server_name"] for r in rows}
        server_ids = set(baseline.server_ids) | {
            r["hetzner_server_id"] for r in rows if r["hetzner_server_id"]
        }
        unowned = [
            s
            for s in servers
            if s.id not in server_ids and s.name not in names and s.instance_label not in ids
        ]
        known = {r["server_id"]: r for r in await fetch_all(conn, "SELECT * FROM orphan_servers")}
        forgotten = [(sid,) for sid in known if sid not in {s.id for s in unowned}]
        await conn.executemany("DELETE FROM orphan_servers WHERE server_id = ?", forgotten)
        orphans = 0
        for server in unowned:
            seen = known.get(server.id)
            if seen is None:
                await conn.execute(
                    "INSERT INTO orphan_servers (server_id, name, first_seen_at, last_seen_at) "
                    "VALUES (?, ?, ?, ?)",
                    (server.id, server.name, to_iso(now), to_iso(now)),
                )
            else:
                await conn.execute(
                    "UPDATE orphan_servers SET last_seen_at = ? WHERE server_id = ?",
                    (to_iso(now), server.id),
                )
            if server.temporary:
                # Alerted on the one check that first finds it older than the grace.
                first = from_iso(seen["first_seen_at"]) if seen else now
                was_old = seen is not None and (
                    from_iso(seen["last_seen_at"]) - first >= self.temporary_grace
                )
                if now - first < self.temporary_grace:
                    continue
                orphans += 1
                if was_old:
                    continue
                hours = self.temporary_grace.total_seconds() / 3600
                body = (
                    f"Image build server {server.name} (id {server.id}) has been up for more "
                    f"than {hours:g} h: a build that did not clean up? Not deleted: delete it "
                    "in the Hetzner console if no build is running."
                )
            else:
                orphans += 1
                if seen is not None:
                    continue
                body = (
                    f"Server {server.name} (id {server.id}) carries our labels but belongs to "
                    f"no live instance (instance label: {server.instance_label or 'none'}). "
                    "Not deleted: check it, and delete it in the Hetzner console if unneeded."
                )
            await record_event(
                conn, now, ACTOR_MONITOR, SERVER_ORPHAN, payload={"server_id": server.id}
            )
            await notify_ops(conn, now, SERVER_ORPHAN, body)
            report.alerts += 1
        return orphans


def _judged(row: aiosqlite.Row) -> bool:
    """Active or suspended as desired: the shapes whose server state means something."""
    return row["status"] == row["desired_state"] and row["status"] in (
        Status.ACTIVE,
        Status.SUSPENDED,
    )


def _match(
    row: aiosqlite.Row, by_id: Mapping[int, ListedServer], by_name: Mapping[str, ListedServer]
) -> ListedServer | None:
    found = by_id.get(row["hetzner_server_id"]) if row["hetzner_server_id"] else None
    return found or by_name.get(row["server_name"])


def _repair(status: str, problem: str, now: datetime) -> tuple[dict[str, Any], str]:
    """The fact for the reconciler (empty: nothing it can do) and the alert's words."""
    at = {"updated_at": to_iso(now), "attempts": 0, "next_attempt_at": None}
    if problem == "off":
        return (
            {"status": Status.SUSPENDED.value, **at},
            "is off while it should run: the reconciler powers it on and verifies the gateway.",
        )
    if problem == "running":
        return (
            {"status": Status.ACTIVE.value, **at},
            "is running while the instance is suspended: the reconciler shuts it down again.",
        )
    if problem == MISSING and status == Status.ACTIVE:
        error = "its server is gone from Hetzner"
        return (
            {"status": Status.FAILED.value, "last_error": error, **at},
            "is gone from Hetzner. The instance is failed: /retry provisions a new server "
            "(from the customer's latest final snapshot, if any), or /reprovision.",
        )
    if problem == MISSING:
        return {}, "of this suspended instance is gone from Hetzner: nothing left to resume."
    return {}, f"is in Hetzner state {problem.removeprefix('unexpected ')!r}."


async def _busy(conn: aiosqlite.Connection, since: datetime) -> set[str]:
    """Instances with an operation in flight or finished since the check began."""
    rows = await fetch_all(
        conn,
        "SELECT DISTINCT instance_id FROM operations "
        "WHERE state IN ('pending', 'running') OR updated_at >= ?",
        (to_iso(since),),
    )
    return {r["instance_id"] for r in rows}
