"""Many instances at once through one request budget."""

from __future__ import annotations

import asyncio

from provisioner.budget import BudgetedSession
from tests.provisioner.conftest import World, needs_root

pytestmark = needs_root


async def test_twenty_instances_at_once_on_300_requests_an_hour(world: World) -> None:
    # Hetzner's bucket cut to 300 requests an hour (of simulated time), with a burst of 60
    # that the fleet's ~200 requests exceed.
    world.hetzner_sim.set_rate_limit(60, 300 / 3600)
    ids = await asyncio.gather(*(world.provision(f"c{n}@example.com") for n in range(20)))
    await world.reconciler.settle()
    statuses = [(await world.instance(i))["status"] for i in ids]
    assert statuses == ["active"] * 20
    assert len(world.servers()) == 20
    session = world.infra.hetzner._client._client._session
    assert isinstance(session, BudgetedSession)
    assert session.rate_limited == 0  # not a single 429
    # More requests than the burst: without the budget learning the bucket from the
    # headers (it starts out believing 3600), the opening rush would meet 429s.
    assert world.infra.hetzner.budget.requests > 60
