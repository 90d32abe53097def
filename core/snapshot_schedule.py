"""Weekly snapshots: each active instance gets a `snapshot` operation a week after its
last one (or after it became active), so the fleet's snapshots spread over the week
instead of all starting at once. The reconciler takes them and keeps the newest four.
The schedule is the `operations` table itself, so a restart loses no week."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from core.admin_actions import queue_operation_in
from core.clock import Clock, to_iso
from core.models import ACTOR_MONITOR, OperationKind
from db.connection import Database

WEEK = timedelta(days=7)

_DUE = """
SELECT * FROM instances i
WHERE status = 'active' AND desired_state = 'active' AND setup_sent_at <= :since
  AND NOT EXISTS (
    SELECT 1 FROM operations o WHERE o.instance_id = i.id AND o.kind = 'snapshot'
      AND (o.state IN ('pending', 'running') OR (o.state = 'done' AND o.created_at > :since)))
ORDER BY setup_sent_at
LIMIT :limit
"""


async def queue_weekly_snapshots(
    db: Database, clock: Clock, *, limit: int = 500, wake: Callable[[], None] = lambda: None
) -> int:
    """Queue the snapshots that are due (at most `limit` a run; the rest wait an hour)."""
    now = clock.now()
    params = {"since": to_iso(now - WEEK), "limit": limit}
    async with db.transaction() as conn:
        due = list(await conn.execute_fetchall(_DUE, params))
        for instance in due:
            await queue_operation_in(conn, now, instance, OperationKind.SNAPSHOT, ACTOR_MONITOR)
    if due:
        wake()
    return len(due)
