"""`openclaw-hosted sim` and `demo`: the simulators alone, or the whole system on them."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp

from app.service import Service
from app.simulators import MONTHLY_PRICE, Simulators, env_block
from core.settings import Settings
from sim.paddle import WebhookSender, envelope, paddle_id, subscription_data


async def _until_signalled(once: bool) -> None:
    if once:
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _free_port() -> int:
    """A port for a one-off demo, so that its links point where it really listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)  # it holds the simulators' tokens


async def run_simulators(
    data_dir: Path, time_scale: float, env_out: Path | None, once: bool
) -> None:
    sims = Simulators(data_dir, time_scale=time_scale)
    await sims.start()
    try:
        for name, url in sims.urls().items():
            print(f"{name:<18} {url}")
        block = env_block(sims.env())
        if env_out is not None:
            _write_private(env_out, block)
            print(
                f"\nsettings written to {env_out}; start the service with:\n"
                f"  openclaw-hosted --env-file {env_out} run\n"
            )
        print("\n# .env for `openclaw-hosted run` against these simulators\n" + block)
        print("simulators running; Ctrl-C stops them", flush=True)
        await _until_signalled(once)
    finally:
        await sims.stop()


async def _instances(session: aiohttp.ClientSession, url: str, key: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/instances", headers={"X-API-Key": key}) as response:
        instances: list[dict[str, Any]] = (await response.json())["instances"]
    return instances


async def _until_active(sims: Simulators, url: str, timeout_s: float) -> dict[str, Any]:
    """Print each status change until the instance is active (or failed)."""
    seen = ""
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_s / 0.2)):
            instances = await _instances(session, url, sims.admin_api_key)
            if instances:
                now = f"{instances[0]['status']} {instances[0]['step'] or ''}".strip()
                if now != seen:
                    print(f"  instance {instances[0]['instance_id']}: {now}", flush=True)
                    seen = now
                if instances[0]["status"] in ("active", "failed"):
                    return instances[0]
            await asyncio.sleep(0.2)
    return instances[0] if instances else {}


async def _customer_pays(
    sims: Simulators, service_url: str, onboarding_token: str
) -> dict[str, Any]:
    """A customer checks out at Paddle (the storefront put an onboarding token in the
    checkout's custom_data): their record exists, then the webhook arrives."""
    customer = sims.paddle.add_customer("grace@example.com", "Grace Hopper")
    sender = WebhookSender(f"{service_url}/api/webhook/paddle", sims.webhook_secret)
    data = subscription_data(
        paddle_id("sub"),
        customer.id,
        "active",
        MONTHLY_PRICE,
        custom_data={"onboarding_token": onboarding_token},
    )
    event = envelope("subscription.created", data)
    delivery = await sender.deliver(event)
    print(f"Paddle delivered subscription.created for {customer.email}: HTTP {delivery.status}")
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            headers = {"X-API-Key": sims.admin_api_key}
            async with session.get(f"{service_url}/api/instances", headers=headers) as response:
                instances = (await response.json())["instances"]
            if instances and instances[0]["customer_email"]:
                break
            await asyncio.sleep(0.1)
    return dict(instances[0]) if instances else {}


async def _telegram_tour(sims: Simulators, onboarding_token: str) -> None:
    """The customer taps the deep link in Telegram; an operator asks for /list."""
    telegram = sims.telegram
    customer = telegram.add_user("Grace", username="grace_h")
    telegram.private_chat(customer)
    telegram.send_command(customer.id, customer, "start", onboarding_token)
    try:
        reply = await telegram.next_bot_message(customer.id, timeout_s=30)
        print(f"\nTelegram, Grace taps t.me/<bot>?start=…, the bot answers:\n{reply.text}")
        admin = telegram.users[sims.admin_user_id]
        telegram.send_command(sims.ops_chat_id, admin, "list")
        # The group also receives the alerts the outbox sends: skip to the listing.
        listing = await telegram.next_bot_message(sims.ops_chat_id, timeout_s=30)
        while not (listing.text or "").startswith("Instances"):
            listing = await telegram.next_bot_message(sims.ops_chat_id, timeout_s=30)
        print(f"\nTelegram, the ops group, Ada sends /list:\n{listing.text}")
    except TimeoutError:
        print("\nTelegram: the bot did not answer in time")


async def _gateway_incident(sims: Simulators, instance: dict[str, Any]) -> None:
    """The gateway dies with an error systemd will not restart it from; nobody touches
    anything: the monitor alerts the ops group, restarts it, and reports the recovery."""
    assert sims.vps is not None
    await sims.vps.crash_gateway(instance["hetzner_server_id"], exit_code=78)
    print("\nThe gateway crashes (exit 78: systemd gives up). The ops group hears:")
    telegram = sims.telegram
    try:
        while True:
            message = await telegram.next_bot_message(sims.ops_chat_id, timeout_s=60)
            text = message.text or ""
            if "unhealthy" in text or "healthy again" in text:
                print(f"  {text}", flush=True)
            if "healthy again" in text:
                return
    except TimeoutError:
        print("  (no recovery notice in time)")


async def run_demo(data_dir: Path, time_scale: float, once: bool) -> None:
    sims = Simulators(data_dir, time_scale=time_scale, http_port=_free_port() if once else 8000)
    await sims.start()
    try:
        values = {key.lower(): value for key, value in sims.env().items()}
        # Health checks every 2 s instead of 5 min, so the incident below plays out live.
        values |= {"health_check_interval_s": "2", "start_grace_s": "2"}
        settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
        service = Service(settings)
        await service.start()
        try:
            onboarding_token = secrets.token_urlsafe(16)
            instance = await _customer_pays(sims, service.url, onboarding_token)
            if sims.vps is not None:
                print("provisioning a hardened OpenClaw server:")
                instance = await _until_active(sims, service.url, timeout_s=300)
            print("instance:", json.dumps(instance, indent=2))
            await _telegram_tour(sims, onboarding_token)
            if sims.vps is not None and instance.get("status") == "active":
                await _gateway_incident(sims, instance)
            print(
                "\nNot built yet: the storefront.\n"
                f"Admin API: curl -H 'X-API-Key: {sims.admin_api_key}' {service.url}/api/instances"
            )
            print("demo running; Ctrl-C stops it", flush=True)
            await _until_signalled(once)
        finally:
            await service.stop()
    finally:
        await sims.stop()
