"""Many instances at once through one request budget."""

from __future__ import annotations

import asyncio

from provisioner.budget import BudgetedSession
from tests.provisioner.conftest import World, needs_root

pytestmark = needs_root


async def test_twenty_instances_at_once_on_300_requests_an_hour(world: World) -> None:
    # Hetzner's bucket cut to 300 requests an hour (refilling at 300/h of simulated time).
    world.hetzner_sim.set_rate_limit(300, 300 / 3600)
    ids = await asyncio.gather(*(world.provision(f"c{n}@example.com") for n in range(20)))
    await world.reconciler.settle()
    statuses = [(await world.instance(i))["status"] for i in ids]
    assert statuses == ["active"] * 20
    assert len(world.servers()) == 20
    session = world.infra.hetzner._client._client._session
    assert isinstance(session, BudgetedSession)
    assert session.rate_limited == 0  # not a single 429
    assert world.infra.hetzner.budget.requests < 300
