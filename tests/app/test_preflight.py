"""`check-config` online, against the simulators and a real SMTP server on loopback.

Good settings pass every check (exit 0); each broken setting shows its own ✗ line with
a fix (exit 1), and no secret appears in anything printed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from app.preflight import check_config
from app.simulators import Simulators
from core.settings import Settings
from sim.hetzner import HetznerSim
from sim.paddle import PaddleSim
from sim.telegram import TelegramSim

ROOT = Path(__file__).parents[2]
SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-pass-" + secrets.token_hex(6)
SENDER = "hello@openclaw.test"
SECRET_SETTINGS = ("TELEGRAM_BOT_TOKEN", "HCLOUD_TOKEN", "PADDLE_API_KEY", "SMTP_URL")
CHECKS = 9  # telegram x3, hetzner x3, paddle, ssh key, smtp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Postbox:
    """An SMTP server's handler that accepts mail only from the openclaw.test domain."""

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if not address.endswith("@openclaw.test"):
            return "553 5.7.1 sender not allowed for this account"
        envelope.mail_from = address
        return "250 OK"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    assert isinstance(data, LoginPassword)
    good = (data.login, data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=good, handled=False)  # handled=False: answer 535


async def start_cloud(sims: Simulators) -> None:
    """`Simulators.start` without the customer servers: check-config never needs them,
    and they want root and the fixed SSH port 2222."""
    sims.data_dir.mkdir(parents=True, exist_ok=True)
    sims.paddle = PaddleSim(api_key="pdl_sdbx_apikey_" + secrets.token_hex(8))
    await sims.paddle.start()
    sims.hetzner = HetznerSim(token=secrets.token_hex(32), time_scale=sims.time_scale)
    await sims.hetzner.start()
    bot_token = f"{10**9 + secrets.randbelow(10**9)}:{secrets.token_urlsafe(26)}"
    sims.telegram = TelegramSim(bot_token, "openclaw_hosted_bot", time_scale=sims.time_scale)
    await sims.telegram.start()
    admin = sims.telegram.add_user("Ada", username="ada_ops")
    sims.admin_user_id = admin.id
    group = sims.telegram.add_group("OpenClaw Ops", admins=[admin], owner=admin)
    sims.ops_chat_id = group.id


@dataclass
class World:
    sims: Simulators
    smtp_port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def telegram(self) -> TelegramSim:
        return self.sims.telegram

    def secrets(self) -> list[str]:
        """Everything that must never be printed, the key file's content included."""
        token = self.env["TELEGRAM_BOT_TOKEN"]
        key = Path(self.env["SSH_PRIVATE_KEY_PATH"]).read_text()
        key_lines = [line for line in key.splitlines() if line and "-----" not in line]
        return [
            token,
            token.split(":", 1)[1],
            self.env["HCLOUD_TOKEN"],
            self.sims.hetzner.token,
            self.env["PADDLE_API_KEY"],
            self.sims.paddle.api_key,
            self.env["ADMIN_API_KEY"],
            self.env["PADDLE_WEBHOOK_SECRETS"],
            SMTP_PASSWORD,
            *key_lines,
        ]

    async def check(self, **changes: str) -> tuple[int, list[str]]:
        """check-config as the CLI runs it (its own event loop, in a thread), on these
        settings with `changes`; its exit code and printed lines."""
        values = {**self.env, **changes}
        given: dict[str, Any] = {k.lower(): v for k, v in values.items() if v}
        settings = Settings(_env_file=None, **given)
        lines: list[str] = []
        code = await asyncio.to_thread(check_config, settings, out=lines.append)
        text = "\n".join(lines)
        for secret in [*self.secrets(), *changed_secrets(changes)]:
            assert secret not in text
        return code, lines


def changed_secrets(changes: dict[str, str]) -> list[str]:
    """The secret values a test put in place of the good ones (they must not show either)."""
    found = [changes[k] for k in SECRET_SETTINGS if changes.get(k)]
    if token := changes.get("TELEGRAM_BOT_TOKEN"):
        found.append(token.split(":", 1)[1])
    if url := changes.get("SMTP_URL"):
        found.append(url.split("://", 1)[1].split("@")[0].split(":", 1)[1])
    return found


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sims = Simulators(tmp_path / "sim", time_scale=0.01)
    await start_cloud(sims)
    port = free_port()
    controller = Controller(
        Postbox(), hostname="127.0.0.1", port=port, authenticator=authenticator,
        auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        env = sims.env() | {
            "SMTP_URL": f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{port}",
            "EMAIL_FROM": f"OpenClaw Hosted <{SENDER}>",
        }
        yield World(sims, port, env)
    finally:
        controller.stop()
        for sim in (sims.telegram, sims.hetzner, sims.paddle):
            await sim.stop()


def readable_by_others(path: Path) -> None:
    path.chmod(0o644)


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("✗")]


def only_failure(code: int, lines: list[str]) -> str:
    assert code == 1, lines
    [line] = failures(lines)
    assert " — fix: " in line and lines[-1].endswith("1 failed")
    return line


async def test_good_settings_pass_every_check(world: World) -> None:
    code, lines = await world.check()
    assert code == 0, lines
    assert all(line.startswith("✓") for line in lines[:-1]), lines
    assert lines[-1] == f"{CHECKS} passed, 0 failed"
    text = "\n".join(lines)
    bot_id = world.telegram.bot.id
    assert f"✓ Telegram: bot @openclaw_hosted_bot (id {bot_id}), token accepted" in text
    assert f'ops chat {world.sims.ops_chat_id} "OpenClaw Ops": the bot is a member' in text
    assert f"ADMIN_USER_IDS in the ops chat: {world.sims.admin_user_id}" in text
    assert "HCLOUD_SERVER_TYPE cax11 (2 vCPU, 4 GB, arm) offered in fsn1, nbg1, hel1" in text
    assert "€4.49/month net in fsn1" in text
    assert "✓ HCLOUD_IMAGE ubuntu-24.04" in text
    assert "✓ Paddle: API key accepted" in text
    key = asyncssh.read_private_key(world.env["SSH_PRIVATE_KEY_PATH"])
    assert f"ssh-ed25519 {key.get_fingerprint()} (mode 0600)" in text
    assert f"127.0.0.1:{world.smtp_port}: unencrypted, logged in as mailer" in text
    assert f"sender {SENDER} accepted" in text


async def test_a_bot_made_administrator_passes_too(world: World) -> None:
    world.telegram.restore_bot(world.sims.ops_chat_id, admin=True)
    code, lines = await world.check()
    assert code == 0, lines
    assert any(line.endswith("the bot is an administrator") for line in lines)


async def test_wrong_telegram_token(world: World) -> None:
    bot_id = world.telegram.bot.id
    line = only_failure(*await world.check(TELEGRAM_BOT_TOKEN=f"{bot_id}:wrong-secret-value"))
    assert line.startswith("✗ Telegram: bot token rejected (Unauthorized)")
    assert "@BotFather" in line and "TELEGRAM_BOT_TOKEN" in line


@pytest.mark.parametrize("how", ["kicked", "left"])
async def test_bot_not_in_the_ops_chat(world: World, how: str) -> None:
    chat = world.telegram.chat(world.sims.ops_chat_id)
    world.telegram.set_bot_status(chat, how, world.sims.admin_user_id)
    line = only_failure(*await world.check())
    assert line.startswith(f"✗ ops chat {chat.id}: Forbidden: bot ")
    assert line.endswith("fix: add @openclaw_hosted_bot to the operators' group again")


async def test_ops_chat_id_of_no_chat(world: World) -> None:
    line = only_failure(*await world.check(OPS_CHAT_ID="-1009999999999"))
    assert "✗ ops chat -1009999999999: Bad Request: chat not found" in line
    assert "set OPS_CHAT_ID to that group's id" in line


async def test_a_migrated_group_names_its_new_id(world: World) -> None:
    admin = world.sims.admin_user_id
    old = world.telegram.add_group("Old Ops", owner=admin, supergroup=False)
    new_id = world.telegram.migrate_group(old.id)
    line = only_failure(*await world.check(OPS_CHAT_ID=str(old.id)))
    assert f"upgraded to a supergroup, whose id is {new_id}" in line
    assert line.endswith(f"fix: set OPS_CHAT_ID={new_id}")
    code, lines = await world.check(OPS_CHAT_ID=str(new_id))
    assert code == 0, lines


async def test_ops_chat_that_is_a_private_chat(world: World) -> None:
    admin = world.sims.admin_user_id
    world.telegram.private_chat(admin)
    line = only_failure(*await world.check(OPS_CHAT_ID=str(admin)))
    assert "a private chat, not a group" in line


async def test_admins_who_are_not_in_the_ops_chat(world: World) -> None:
    bob = world.telegram.add_user("Bob")
    admins = f"{world.sims.admin_user_id},{bob.id},42"
    line = only_failure(*await world.check(ADMIN_USER_IDS=admins))
    assert f"ADMIN_USER_IDS not in the ops chat: {bob.id} (left), 42 (Bad Request: user not" in line
    assert "correct ADMIN_USER_IDS" in line


async def test_wrong_hetzner_token(world: World) -> None:
    line = only_failure(*await world.check(HCLOUD_TOKEN="not-the-project-token-0123"))
    assert line.startswith("✗ Hetzner: token rejected (unauthorized: unable to authenticate)")
    assert "Read & Write" in line and "HCLOUD_TOKEN" in line


async def test_server_type_not_offered_in_a_location(world: World) -> None:
    line = only_failure(*await world.check(HCLOUD_LOCATIONS="fsn1,ash"))
    assert line.startswith("✗ HCLOUD_SERVER_TYPE cax11 is not offered in ash")
    assert "remove ash from HCLOUD_LOCATIONS (cax11 is offered in fsn1, nbg1, hel1)" in line
    code, lines = await world.check(HCLOUD_LOCATIONS="ash,hil", HCLOUD_SERVER_TYPE="cpx11")
    assert code == 0, lines


async def test_unknown_server_type_lists_the_real_ones(world: World) -> None:
    line = only_failure(*await world.check(HCLOUD_SERVER_TYPE="cax99"))
    assert "HCLOUD_SERVER_TYPE cax99: Hetzner has no such server type" in line
    assert "one of: cx23, cpx11, cpx21, cax11" in line


@pytest.mark.parametrize("image", ["ubuntu-99.04", "424242"])
async def test_image_that_does_not_exist(world: World, image: str) -> None:
    line = only_failure(*await world.check(HCLOUD_IMAGE=image))
    assert line.startswith(f"✗ HCLOUD_IMAGE {image}: no such image for arm servers")
    assert "openclaw-hosted image build" in line


async def test_wrong_paddle_key(world: World) -> None:
    line = only_failure(*await world.check(PADDLE_API_KEY="pdl_sdbx_apikey_wrongwrongwrong"))
    assert line.startswith("✗ Paddle: API key rejected (forbidden: Invalid API key)")
    assert "customer read permission" in line and "PADDLE_API_KEY" in line


async def test_ssh_key_readable_by_others(world: World) -> None:
    key = Path(world.env["SSH_PRIVATE_KEY_PATH"])
    readable_by_others(key)
    line = only_failure(*await world.check())
    assert line == f"✗ SSH key {key}: mode 0644, readable by others — fix: `chmod 600 {key}`"


async def test_ssh_key_missing_or_public(world: World, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    line = only_failure(*await world.check(SSH_PRIVATE_KEY_PATH=str(missing)))
    assert f"SSH key {missing}: no such file" in line and "ssh-keygen -t ed25519" in line
    public = tmp_path / "id.pub"
    asyncssh.generate_private_key("ssh-ed25519").write_public_key(public)
    public.chmod(0o600)
    line = only_failure(*await world.check(SSH_PRIVATE_KEY_PATH=str(public)))
    assert "not a private key" in line and "not the .pub file" in line


async def test_unreachable_smtp(world: World) -> None:
    closed = free_port()
    url = f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{closed}"
    line = only_failure(*await world.check(SMTP_URL=url))
    assert line.startswith(f"✗ SMTP 127.0.0.1:{closed}: cannot connect")
    assert "check the host and port in SMTP_URL" in line


async def test_bad_smtp_credentials(world: World) -> None:
    url = f"smtp://{SMTP_USER}:wrong-password-1@127.0.0.1:{world.smtp_port}"
    line = only_failure(*await world.check(SMTP_URL=url))
    assert line.startswith(f"✗ SMTP 127.0.0.1:{world.smtp_port}: login refused (535")
    assert "check the user and password in SMTP_URL" in line


async def test_smtp_refusing_the_sender(world: World) -> None:
    line = only_failure(*await world.check(EMAIL_FROM="ops@elsewhere.test"))
    assert "refuses the sender ops@elsewhere.test (553" in line
    assert "set EMAIL_FROM" in line


async def test_smtp_unset_is_skipped_unless_alerts_need_it(world: World) -> None:
    code, lines = await world.check(SMTP_URL="", EMAIL_FROM="")
    assert code == 0, lines
    [skipped] = [line for line in lines if line.startswith("–")]
    assert skipped.startswith("– SMTP: skipped, SMTP_URL is not set")
    assert lines[-1] == f"{CHECKS - 1} passed, 0 failed, 1 skipped"
    line = only_failure(*await world.check(SMTP_URL="", ALERT_EMAIL="ops@openclaw.test"))
    assert "ALERT_EMAIL is set but SMTP_URL is not" in line


async def test_unreachable_apis_are_named_with_the_setting_to_check(world: World) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    changes = {
        "TELEGRAM_API_BASE": closed,
        "HCLOUD_ENDPOINT": closed + "/v1",
        "PADDLE_API_BASE": closed,
    }
    code, lines = await world.check(**changes)
    assert code == 1
    bad = failures(lines)
    assert len(bad) == 3, lines
    for line, setting in zip(
        bad, ("TELEGRAM_API_BASE", "HCLOUD_ENDPOINT", "PADDLE_API_BASE"), strict=True
    ):
        assert f"cannot reach {closed}" in line and f"check {setting}" in line


async def test_every_broken_setting_at_once_and_the_cli(world: World, tmp_path: Path) -> None:
    """The real command in a subprocess: good settings, then several broken ones."""
    env_file = tmp_path / "check.env"

    async def cli(env: dict[str, str]) -> tuple[int, str, str]:
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "--env-file", str(env_file), "check-config",
            cwd=tmp_path, env={**clean, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await cli(world.env)
    assert code == 0, out + err
    assert out.splitlines()[0] == "configuration OK"
    assert out.splitlines()[-1] == f"{CHECKS} passed, 0 failed"

    readable_by_others(Path(world.env["SSH_PRIVATE_KEY_PATH"]))
    broken = world.env | {
        "HCLOUD_TOKEN": "wrong-hcloud-token-0123456789",
        "PADDLE_API_KEY": "pdl_sdbx_apikey_wrongwrongwrong",
        "SMTP_URL": f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{free_port()}",
    }
    code, out, err = await cli(broken)
    assert code == 1, out + err
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("✗")] == [
        "✗ Hetzner",
        "✗ Paddle",
        f"✗ SSH key {world.env['SSH_PRIVATE_KEY_PATH']}",
        "✗ SMTP 127.0.0.1",
    ]
    assert out.splitlines()[-1] == f"{CHECKS - 6} passed, 4 failed"
    for secret in [*world.secrets(), "wrong-hcloud-token-0123456789", "wrongwrongwrong"]:
        assert secret not in out + err
    assert "Traceback" not in err


async def test_outages_are_failures_that_say_to_try_again(world: World) -> None:
    world.sims.hetzner.faults.fail_next("GET", "/server_types", "unavailable")
    world.sims.paddle.failures = 1
    world.telegram.fail_next("getChat", error_code=500)
    code, lines = await world.check()
    assert code == 1
    bad = failures(lines)
    assert [line.split(" (")[0] for line in bad] == [
        f"✗ ops chat {world.sims.ops_chat_id}: getChat failed",
        "✗ Hetzner: GET /server_types failed",
        "✗ Paddle: GET /customers failed",
    ]
    assert all("fix: run check-config again" in line for line in bad)
    code, lines = await world.check()
    assert code == 0, lines
