"""The settings the provisioner needs, handed in by `app/`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

MANAGED_LABEL = "managed-by"
MANAGED_VALUE = "openclaw-hosted"
MANAGED_SELECTOR = f"{MANAGED_LABEL}={MANAGED_VALUE}"


@dataclass(frozen=True)
class ProvisionerConfig:
    server_type: str
    image: str
    locations: tuple[str, ...]
    max_servers: int
    ssh_port: int
    gateway_port: int
    openclaw_version: str
    backend_ips: tuple[str, ...]
    ssh_public_key: str
    start_grace_s: float = 90
    # The step policy: after the first failure, 3 more attempts at about these delays.
    step_backoff_s: tuple[float, ...] = (30, 120, 480)
    ssh_ready_timeout_s: float = 600
    shutdown_timeout_s: float = 60
    snapshot_retention_days: float = 30
    # Instances worked on at once: a step mostly waits (Hetzner, boot, the install), so a
    # burst of MAX_SERVERS' default (100) signups is provisioned side by side, not in waves.
    concurrency: int = 100
    expected_s: dict[str, float] = field(
        default_factory=lambda: {
            "create": 30,
            "power": 8,
            "reboot": 15,
            "snapshot": 60,
            "delete": 5,
            "rebuild": 40,
        }
    )

    def firewall_rules(self) -> list[dict[str, object]]:
        """SSH from the backend only; the gateway open to the world; nothing else."""
        backend = [str(ipaddress.ip_network(ip, strict=False)) for ip in self.backend_ips]
        return [
            {
                "protocol": "tcp",
                "port": str(self.ssh_port),
                "source_ips": backend,
                "description": "ssh from the backend",
            },
            {
                "protocol": "tcp",
                "port": str(self.gateway_port),
                "source_ips": ["0.0.0.0/0", "::/0"],
                "description": "openclaw gateway",
            },
        ]
