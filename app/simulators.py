"""The outside world on loopback, for `openclaw-hosted sim` and `demo`.

Starts every simulator in `sim/`, and writes the settings `openclaw-hosted run`
needs to talk to them (an SSH key for the customer servers included).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from sim.hetzner import HetznerSim
from sim.paddle import PaddleSim
from sim.telegram import TelegramSim
from sim.vps import VpsSim

MONTHLY_PRICE = "pri_01simmonthly0000000000000"
LIFETIME_PRICE = "pri_01simlifetime000000000000"
SIM_SSH_PORT = 2222


@dataclass
class Simulators:
    data_dir: Path
    time_scale: float = 0.05
    http_port: int = 8000
    paddle: PaddleSim = field(init=False)
    hetzner: HetznerSim = field(init=False)
    telegram: TelegramSim = field(init=False)
    vps: VpsSim | None = None
    ops_chat_id: int = 0
    admin_user_id: int = 0
    webhook_secret: str = field(default_factory=lambda: "pdl_ntfset_sim_" + secrets.token_hex(16))
    admin_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # The simulated servers' loopback addresses (runs side by side need different ones).
    address_pool: str = "127.1.0.0/16"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.paddle = PaddleSim(api_key="pdl_sdbx_apikey_" + secrets.token_hex(8))
        await self.paddle.start()
        self.hetzner = HetznerSim(
            token=secrets.token_hex(32), time_scale=self.time_scale, address_pool=self.address_pool
        )
        await self.hetzner.start()
        if vps_supported():
            self.vps = VpsSim(self.hetzner, base_dir=self.data_dir / "vps", ssh_port=SIM_SSH_PORT)
            await self.vps.start()
        bot_token = f"{10**9 + secrets.randbelow(10**9)}:{secrets.token_urlsafe(26)}"
        self.telegram = TelegramSim(bot_token, "openclaw_hosted_bot", time_scale=self.time_scale)
        await self.telegram.start()
        admin = self.telegram.add_user("Ada", username="ada_ops")
        self.admin_user_id = admin.id
        group = self.telegram.add_group("OpenClaw Ops", admins=[admin], owner=admin)
        self.ops_chat_id = group.id

    async def stop(self) -> None:
        if self.vps is not None:
            await self.vps.stop()
        for sim in (self.telegram, self.hetzner, self.paddle):
            await sim.stop()

    def ssh_key_path(self) -> Path:
        """The backend's key for customer servers, made once per data directory."""
        path = self.data_dir / "id_ed25519"
        if not path.exists():
            asyncssh.generate_private_key("ssh-ed25519").write_private_key(path)
            path.chmod(0o600)
        return path

    def env(self) -> dict[str, str]:
        """Settings for `openclaw-hosted run` against these simulators."""
        return {
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.http_port}",
            "HTTP_PORT": str(self.http_port),
            "ADMIN_API_KEY": self.admin_api_key,
            "PADDLE_WEBHOOK_SECRETS": self.webhook_secret,
            "PADDLE_API_KEY": self.paddle.api_key,
            "PADDLE_API_BASE": self.paddle.url,
            "PADDLE_ENVIRONMENT": "sandbox",
            "PADDLE_PRICE_MONTHLY": MONTHLY_PRICE,
            "PADDLE_PRICE_LIFETIME": LIFETIME_PRICE,
            "TELEGRAM_BOT_TOKEN": self.telegram.bot_token,
            "TELEGRAM_API_BASE": self.telegram.url,
            "OPS_CHAT_ID": str(self.ops_chat_id),
            "ADMIN_USER_IDS": str(self.admin_user_id),
            "HCLOUD_TOKEN": self.hetzner.token,
            "HCLOUD_ENDPOINT": self.hetzner.url,
            "SSH_PRIVATE_KEY_PATH": str(self.ssh_key_path()),
            "SSH_PORT": str(SIM_SSH_PORT),
            "BACKEND_IPS": "127.0.0.1",
            "DATABASE_PATH": str(self.data_dir / "openclaw-hosted.db"),
        }

    def urls(self) -> dict[str, str]:
        return {
            "Paddle API": self.paddle.url,
            "Hetzner Cloud API": self.hetzner.url,
            "Telegram Bot API": self.telegram.url,
            "Customer VPSs": self.vps.control_url if self.vps else VPS_UNSUPPORTED,
        }


VPS_UNSUPPORTED = "not started: simulated servers need root on Linux (mount namespaces)"


def vps_supported() -> bool:
    """Simulated customer servers run real bash in private mount namespaces: root only."""
    return os.name == "posix" and os.geteuid() == 0


def env_block(env: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in env.items())
