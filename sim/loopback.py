"""Loopback address pools that parallel simulations never share.

Each simulated Hetzner project hands its servers addresses from a /16 of 127.0.0.0/8,
and each simulated server listens on those addresses (SSH, the gateway). Two worlds
alive at once, in one test process, in two pytest-xdist workers or in a benchmark
beside the tests, must not hold the same /16. A process takes /16s in turn from a
slice of 127.64–127.249 that depends on its xdist worker, starting at a random place
so that separate runs on one machine rarely meet either.
"""

from __future__ import annotations

import itertools
import os
import random

FIRST, LAST = 64, 249  # 127.1 is the simulators' default pool; 127.0 is the host's


def _octets() -> itertools.cycle[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under xdist
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = (LAST - FIRST + 1) // max(workers, 1)
    mine = list(range(FIRST + index * size, FIRST + (index + 1) * size))
    start = random.randrange(len(mine))
    return itertools.cycle(mine[start:] + mine[:start])


_NEXT = _octets()


def unique_pool() -> str:
    """A /16 of loopback no other live world of this run holds."""
    return f"127.{next(_NEXT)}.0.0/16"
