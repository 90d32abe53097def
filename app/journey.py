"""The whole journey, scripted: a visit, a payment, a server, a customer and an operator
on Telegram, a crash the monitor repairs, a cancellation, and the end of the road.

The demo plays it against the service in its own process (moving the product clock
for the long waits); the end-to-end test plays the same script against the service
as a separate process (with short billing timings instead). It acts only as the
outside world does: signed Paddle webhooks, Telegram users, a browser, the admin API,
and faults injected in the simulated server.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp

from app.demo_view import DemoView, status_line
from app.simulators import MONTHLY_PRICE, Simulators
from sim.paddle import WebhookSender, envelope, paddle_id, paddle_time, subscription_data

Travel = Callable[[timedelta], Awaitable[None]]
_LOGIN_LINK = re.compile(r"https?://[^\s\"'<>]+/login/[A-Za-z0-9_-]+")
_DEEP_LINK = re.compile(r"https://t\.me/[A-Za-z0-9_]+\?start=([A-Za-z0-9_-]+)")
_TOKEN_ATTR = re.compile(r'data-onboarding-token="([A-Za-z0-9_-]{16,})"')


POLL_S = 0.25  # the admin API allows 10 requests a second; the status bar uses some


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{span.total_seconds():.0f} s"


class JourneyError(Exception):
    """A step did not happen in time: what was awaited, and what was seen instead."""


@dataclass
class JourneyReport:
    phases: list[tuple[str, float]] = field(default_factory=list)
    instance_id: str = ""
    onboarding_token: str = ""
    login_page: str = ""
    welcome_statuses: list[str] = field(default_factory=list)

    def summary(self) -> str:
        width = max(len(name) for name, _ in self.phases) if self.phases else 0
        lines = [f"  {name:<{width}}  {seconds:5.1f} s" for name, seconds in self.phases]
        total = sum(seconds for _, seconds in self.phases)
        return "\n".join([*lines, f"  {'total':<{width}}  {total:5.1f} s"])


@dataclass
class Journey:
    sims: Simulators
    service_url: str
    view: DemoView
    travel: Travel
    grace: timedelta  # the cancel grace the service was given
    retention: timedelta  # how long a suspended instance is kept before destruction
    timeout_s: float = 120.0
    report: JourneyReport = field(default_factory=JourneyReport)

    # -- the admin API, as an operator's dashboard sees it ---------------------------

    async def instance(self) -> dict[str, Any]:
        headers = {"X-API-Key": self.sims.admin_api_key}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.service_url}/api/instances", headers=headers) as response,
        ):
            body = await response.json()
        if response.status != 200:  # e.g. 429: the admin rate limit; look again later
            return {}
        instances: list[dict[str, Any]] = body["instances"]
        return instances[0] if instances else {}

    async def status(self) -> str:
        return status_line(await self.instance())

    async def until(self, what: str, probe: Callable[[], Awaitable[Any]]) -> Any:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            found = await probe()
            if found:
                return found
            await asyncio.sleep(POLL_S)
        raise JourneyError(f"{what}: not within {self.timeout_s:.0f} s ({await self.status()})")

    async def until_instance(self, what: str, **expected: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            row = await self.instance()
            ok = row and all(row.get(key) == value for key, value in expected.items())
            return row if ok else None

        found: dict[str, Any] = await self.until(what, probe)
        return found

    async def until_message(self, chat_id: int, what: str, needle: str) -> str:
        def probe() -> str | None:
            for message in self.sims.telegram.bot_messages(chat_id):
                if needle in (message.text or ""):
                    return message.text
            return None

        async def poll() -> str | None:
            return probe()

        text: str = await self.until(what, poll)
        return text

    # -- the journey ----------------------------------------------------------------

    async def run(self) -> JourneyReport:
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("visit and checkout", self.visit_and_pay),
            ("provisioning", self.provisioning),
            ("customer on Telegram", self.customer),
            ("operator on Telegram", self.operator),
            ("gateway crash and repair", self.incident),
            ("cancellation and grace", self.cancellation),
            ("destruction", self.destruction),
        ]
        for name, step in steps:
            began = time.monotonic()
            await step()
            self.report.phases.append((name, time.monotonic() - began))
        self.view.flush()
        return self.report

    async def visit_and_pay(self) -> None:
        self.view.note("a visitor opens the storefront and chooses the monthly plan")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.service_url}/") as response,
        ):
            page = await response.text()
        found = _TOKEN_ATTR.search(page)
        if found is None:
            raise JourneyError("the storefront carries no onboarding token")
        token = self.report.onboarding_token = found.group(1)
        self.view.note(f"its welcome page would say: {await self.welcome_status()}")
        customer = self.sims.paddle.add_customer("grace@example.com", "Grace Hopper")
        self.customer_id, self.subscription_id = customer.id, paddle_id("sub")
        self.sender = WebhookSender(
            f"{self.service_url}/api/webhook/paddle", self.sims.webhook_secret
        )
        data = subscription_data(
            self.subscription_id,
            customer.id,
            "active",
            MONTHLY_PRICE,
            custom_data={"onboarding_token": token},
        )
        delivery = await self.sender.deliver(envelope("subscription.created", data))
        self.view.note(f"Paddle → subscription.created for {customer.email}: {delivery.status}")
        row = await self.until_instance("the paid instance", desired_state="active")
        self.report.instance_id = row["instance_id"]

    async def welcome_status(self) -> str:
        """What the customer's welcome page (/welcome?token=…) shows right now."""
        url = f"{self.service_url}/welcome/status"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params={"token": self.report.onboarding_token}) as response,
        ):
            body = await response.json()
        return str(body.get("status", f"HTTP {response.status}"))

    async def provisioning(self) -> None:
        self.view.note(f"the welcome page says: {await self.welcome_status()}")
        self.view.note("provisioning a hardened OpenClaw server (Hetzner, SSH, install, verify)")
        await self.until_instance("the instance active", status="active")
        self.report.welcome_statuses.append(await self.welcome_status())
        self.view.note(f"the welcome page says: {self.report.welcome_statuses[-1]}")

    async def customer(self) -> None:
        telegram = self.sims.telegram
        self.grace_user = telegram.add_user("Grace", username="grace_h")
        chat = telegram.private_chat(self.grace_user)
        self.view.watch("customer", chat.id)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.service_url}/welcome", params={"token": self.report.onboarding_token}
            ) as response,
        ):
            welcome = await response.text()
        deep_link = _DEEP_LINK.search(welcome)
        if deep_link is None:
            raise JourneyError("the welcome page shows no Telegram deep link")
        self.view.note(f"Grace taps the deep link on her welcome page: {deep_link.group(0)[:40]}…")
        telegram.send_command(chat.id, self.grace_user, "start", deep_link.group(1))
        await self.until_message(chat.id, "the setup message", "/login/")
        telegram.send_command(chat.id, self.grace_user, "link")
        link_text = await self.until_message(chat.id, "a fresh login link", "The link works once")
        found = _LOGIN_LINK.search(link_text)
        if found is None:
            raise JourneyError("no login link in the customer's chat")
        self.view.note("Grace opens the login link and presses the button")
        async with aiohttp.ClientSession() as session:
            async with session.get(found.group(0)) as response:
                await response.text()
            async with session.post(found.group(0)) as response:
                self.report.login_page = await response.text()
        ready = "Your OpenClaw is ready" in self.report.login_page
        self.view.note("the login page shows " + ("her way in" if ready else "a problem"))

    async def operator(self) -> None:
        telegram, ops = self.sims.telegram, self.sims.ops_chat_id
        admin = telegram.users[self.sims.admin_user_id]
        self.view.note("Ada, an operator, asks the bot in the ops group")
        telegram.send_command(ops, admin, "list")
        await self.until_message(ops, "the /list answer", "Instances")
        telegram.send_command(ops, admin, "status", self.report.instance_id)
        await self.until_message(ops, "the /status card", "Desired:")

    async def incident(self) -> None:
        assert self.sims.vps is not None
        row = await self.instance()
        self.view.note("the gateway crashes with an error systemd will not restart from")
        await self.sims.vps.crash_gateway(row["hetzner_server_id"], exit_code=78)
        ops = self.sims.ops_chat_id
        await self.until_message(ops, "the unhealthy alert", "is unhealthy")
        await self.until_message(ops, "the recovery notice", "is healthy again")

    async def cancellation(self) -> None:
        self.view.note("Grace cancels her subscription; Paddle tells us")
        data = subscription_data(
            self.subscription_id,
            self.customer_id,
            "canceled",
            MONTHLY_PRICE,
            canceled_at=paddle_time(),
        )
        await self.sender.deliver(envelope("subscription.canceled", data))
        self.view.note(f"time travels {_days(self.grace)} ahead: the cancel grace passes")
        await self.travel(self.grace + timedelta(minutes=1))
        await self.until_instance("the suspension", desired_state="suspended", status="suspended")

    async def destruction(self) -> None:
        self.view.note(f"time travels {_days(self.retention)} ahead: the retention ends")
        await self.travel(self.retention + timedelta(minutes=1))
        await self.until_instance("the destruction", status="destroyed")
        images = self.sims.hetzner.state.images.values()
        final = [i for i in images if i.labels.get("instance") == self.report.instance_id]
        kept = final[0].labels.get("delete-after", "?") if final else "none"
        self.view.note(f"server deleted; its final snapshot is kept until {kept}")
