"""The billing clock: deadlines (past-due suspension, cancel grace, destruction,
snapshot expiry) pass without any new event, so something must look at them on a
schedule. The deadlines live in the database (`instances.next_deadline_at`), so a
restart loses none: the first tick after it catches up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from core.lifecycle import Lifecycle
from core.models import ACTOR_POLICY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickSummary:
    warned: int  # customers warned of a suspension to come
    reevaluated: int  # instances whose deadline passed


async def billing_tick(lifecycle: Lifecycle, warn_ahead: timedelta) -> TickSummary:
    """Warn of suspensions within `warn_ahead`, then re-derive every instance whose
    deadline has passed (the customer is told of the suspension itself by core)."""
    warned = await lifecycle.warn_due_suspensions(warn_ahead)
    count = await lifecycle.reevaluate_due(ACTOR_POLICY)
    if warned or count:
        log.info("billing clock: %d warned, %d re-evaluated", warned, count)
    return TickSummary(warned, count)
