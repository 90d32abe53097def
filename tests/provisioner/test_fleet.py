"""Many instances at once through one request budget."""

from __future__ import annotations

import asyncio

from provisioner.budget import BudgetedSession
from tests.provisioner.conftest import World, needs_root

pytestmark = needs_root


async def test_twenty_instances_at_once_on_300_requests_an_hour(world: World) -> None:
    # Hetzner's bucket cut to 300 requests an hour (of simulated time), with a burst of 60
    # so that the fleet's ~200 requests must be paced by the budget to avoid any 429.
    world.hetzner_sim.set_rate_limit(60, 300 / 3600)
    ids = await asyncio.gather(*(world.provision(f"c{n}@example.com") for n in range(20)))
    await world.reconciler.settle()
    statuses = [(await world.instance(i))["status"] for i in ids]
    assert statuses == ["active"] * 20
    assert len(world.servers()) == 20
    session = world.infra.hetzner._client._client._session
    assert isinstance(session, BudgetedSession)
    assert session.rate_limited == 0  # not a single 429
    budget = world.infra.hetzner.budget
    assert budget.requests > 60  # more than the burst: the bucket really ran dry
    assert budget.waited_s > 0  # and the budget, not Hetzner, made the fleet wait
