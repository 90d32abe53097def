"""A large fleet written straight into a database (and the Hetzner simulator's state).

Going through the product's own paths for 10,000 instances would take minutes and
measure those paths instead; the rows here are what the reconciler leaves behind for
an active instance, in the product's schema.
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.clock import to_iso
from db.connection import Database
from provisioner.config import MANAGED_LABEL, MANAGED_VALUE
from sim import hetzner_catalog as catalog
from sim.hetzner import HetznerSim
from sim.hetzner_model import SimServer

STATUSES = ("active",) * 17 + ("suspended", "failed", "provisioning")


def instance_id(n: int) -> str:
    return f"inst_{n:012d}"


def customer_id(n: int) -> str:
    return f"cust_{n:012d}"


async def populate(
    path: Path,
    instances: int,
    events: int,
    *,
    ips: list[str] | None = None,
    all_active: bool = False,
) -> None:
    """`instances` instances (one customer each) and `events` events spread over them."""
    db = await Database.open(path)  # migrated
    await db.close()
    now = datetime.now(UTC)
    started = to_iso(now - timedelta(hours=2))
    stamp = to_iso(now)
    rng = random.Random(7)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO customers (id, email, name, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            ((customer_id(n), f"c{n}@example.com", f"Customer {n}", stamp, stamp)
             for n in range(instances)),
        )  # fmt: skip
        rows = []
        for n in range(instances):
            status = "active" if all_active or ips else STATUSES[n % len(STATUSES)]
            ip = ips[n] if ips else f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
            rows.append(
                (instance_id(n), customer_id(n), "manual", status,
                 "suspended" if status == "suspended" else "active", n + 1, ip,
                 f"oc-{n:012d}", "fsn1", started, "healthy", stamp, stamp, stamp)
            )  # fmt: skip
        conn.executemany(
            "INSERT INTO instances (id, customer_id, plan, status, desired_state, "
            "hetzner_server_id, server_ip, server_name, location, gateway_started_at, "
            "health_status, setup_sent_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO events (instance_id, customer_id, event_type, payload, actor, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            ((instance_id(k), customer_id(k), "instance_health", json.dumps({"n": i}),
              "monitor", stamp)
             for i in range(events) for k in [rng.randrange(instances)]),
        )  # fmt: skip


def add_servers(sim: HetznerSim, count: int, first_ip: str = "127.200.0.1") -> None:
    """`count` running servers of ours (ids 1..count, names oc-…) in the simulator."""
    state = sim.state
    server_type = catalog.SERVER_TYPES[0]
    location = catalog.LOCATIONS[0]
    image = next(iter(state.images.values()))
    base = int.from_bytes(bytes(int(p) for p in first_ip.split(".")), "big")
    for n in range(count):
        address = base + n
        ip = ".".join(str(address >> shift & 255) for shift in (24, 16, 8, 0))
        server = SimServer(
            id=n + 1, name=f"oc-{n:012d}", server_type=server_type, location=location,
            image_id=image.id, ip=ip, ipv4_id=2 * n + 1, ipv6_id=2 * n + 2,
            ipv6_net=f"2001:db8:{n & 0xFFFF:x}::/64",
            labels={MANAGED_LABEL: MANAGED_VALUE, "instance": instance_id(n),
                    "customer": customer_id(n)},
            user_data=None, ssh_public_keys=[], root_password=None, status="running",
            booted=True,
        )  # fmt: skip
        state.servers[server.id] = server
