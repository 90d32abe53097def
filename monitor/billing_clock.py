"""The billing clock: deadlines (past-due suspension, cancel grace, destruction)
pass without any new event, so something must look at them on a schedule."""

from __future__ import annotations

import logging

from core.lifecycle import Lifecycle
from core.models import ACTOR_POLICY

log = logging.getLogger(__name__)


async def billing_tick(lifecycle: Lifecycle) -> int:
    """Re-derive the desired state of every instance whose deadline has passed."""
    count = await lifecycle.reevaluate_due(ACTOR_POLICY)
    if count:
        log.info("billing clock re-evaluated %d instances", count)
    return count
