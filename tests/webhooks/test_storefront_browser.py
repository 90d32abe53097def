"""The storefront in a real headless Chromium, driven over the DevTools protocol.

Paddle.js is replaced by a stand-in through the Fetch domain, so the page and its
Content-Security-Policy are exactly what customers get; every other request that
leaves 127.0.0.1 is refused (and recorded), so the test never touches the internet.
Screenshots at phone and desktop widths are written to screenshots/ at the repository
root for a person to look at.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.clock import FakeClock
from core.onboarding import OnboardingTokens
from core.settings import Settings
from db.connection import Database
from tests.conftest import ADMIN_KEY, LIFETIME_PRICE, MONTHLY_PRICE
from tests.webhooks.test_storefront import BOT, Storefront, start_storefront
from webhooks.storefront_pages import PADDLE_JS

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
WIDTHS = {"phone": (390, 844, 2, True), "desktop": (1280, 800, 1, False)}
# Bounds for waiting on the browser; generous, and never asserted on.
LAUNCH_S = 60
WAIT_S = 30

# Records what the page asks of Paddle.js, the way the real one would receive it.
PADDLE_STAND_IN = """
window.paddleCalls = [];
window.Paddle = {
  Environment: { set: function (env) { window.paddleCalls.push(["Environment.set", env]); } },
  Initialize: function (options) { window.paddleCalls.push(["Initialize", options]); },
  Checkout: { open: function (options) { window.paddleCalls.push(["Checkout.open", options]); } }
};
"""


def _chromium() -> str:
    """Debian's chromium, installed here when missing and we are root; else a skip."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (not root, or no apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chromium could not be installed: {done.stderr.strip()[-300:]}")
    return shutil.which("chromium") or pytest.skip("chromium is still missing after apt-get")


class Page:
    """One page target over CDP: commands, events, and the Fetch interception."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, origin: str) -> None:
        self.ws, self.origin = ws, origin
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.loaded = asyncio.Event()
        self.refused: list[str] = []
        self.problems: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, WAIT_S)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                self.pending.pop(data["id"]).set_result(data)
            elif data["method"] == "Fetch.requestPaused":
                asyncio.create_task(self._route(data["params"]))  # noqa: RUF006
            elif data["method"] == "Page.loadEventFired":
                self.loaded.set()
            elif data["method"] == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                self.problems.append(data["params"]["entry"]["text"])
            elif data["method"] == "Runtime.exceptionThrown":
                self.problems.append(json.dumps(data["params"]["exceptionDetails"])[:500])

    async def _route(self, paused: dict[str, Any]) -> None:
        url, request_id = paused["request"]["url"], paused["requestId"]
        if url.startswith(self.origin):
            await self.send("Fetch.continueRequest", requestId=request_id)
        elif url == PADDLE_JS:
            await self.send(
                "Fetch.fulfillRequest",
                requestId=request_id,
                responseCode=200,
                responseHeaders=[{"name": "Content-Type", "value": "text/javascript"}],
                body=base64.b64encode(PADDLE_STAND_IN.encode()).decode(),
            )
        else:
            self.refused.append(url)
            await self.send(
                "Fetch.failRequest", requestId=request_id, errorReason="BlockedByClient"
            )

    async def open(self, path: str) -> None:
        self.loaded.clear()
        await self.send("Page.navigate", url=self.origin + path)
        await asyncio.wait_for(self.loaded.wait(), WAIT_S)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(answer["exceptionDetails"])
        return answer["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        for _ in range(WAIT_S * 10):
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"never true in the page: {expression}")

    async def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a person would."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center', behavior: 'instant'});"
            " const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    async def screenshot(self, name: str, width: str) -> Path:
        w, h, scale, mobile = WIDTHS[width]
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=w,
            height=h,
            deviceScaleFactor=scale,
            mobile=mobile,
        )
        await self.evaluate("window.scrollTo({top: 0, behavior: 'instant'})")
        size = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
        shot = await self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": w, "height": size["height"], "scale": 1},
        )
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}-{w}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextlib.asynccontextmanager
async def browser(origin: str, profile: Path) -> AsyncIterator[Page]:
    binary = _chromium()
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        # Nothing resolves but loopback: the test cannot reach the internet.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    session = aiohttp.ClientSession()
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(LAUNCH_S * 10):
            if port_file.exists() and port_file.read_text().count("\n") >= 1:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{binary} did not open its DevTools port")
        port = port_file.read_text().split()[0]
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws, origin)
            for domain in ("Page", "Runtime", "Log"):
                await page.send(f"{domain}.enable")
            await page.send("Fetch.enable", patterns=[{"urlPattern": "*"}])
            yield page
            page.reader.cancel()
    finally:
        await session.close()
        if process.returncode is None:
            process.terminate()
            await process.wait()


@pytest.fixture
async def shop(
    aiohttp_client: Any,
    db: Database,
    clock: FakeClock,
    make_settings: Callable[..., Settings],
) -> Storefront:
    # The fake clock stands still, so the rate limiter would never refill: raise it.
    settings = make_settings(
        paddle_client_token="test_0123456789abcdef0123456789a",
        paddle_environment="sandbox",
        admin_rate_limit_per_s=100_000,
    )
    return await start_storefront(aiohttp_client, db, clock, settings, BOT)


def _origin(shop: Storefront) -> str:
    return str(shop.client.make_url("/")).rstrip("/")


async def test_a_customer_picks_a_plan_and_paddle_gets_price_and_token(
    shop: Storefront, tmp_path: Path
) -> None:
    async with browser(_origin(shop), tmp_path / "profile") as page:
        await page.open("/")
        await page.wait_for("!document.querySelector('button.checkout').disabled")
        for width in WIDTHS:
            assert (await page.screenshot("storefront", width)).stat().st_size > 10_000
        token = await page.evaluate(
            "document.querySelector('button.checkout').dataset.onboardingToken"
        )
        assert OnboardingTokens(ADMIN_KEY).minted_here(token)

        await page.click("button[data-plan=lifetime]")
        await page.click("button[data-plan=monthly]")
        calls = await page.evaluate("window.paddleCalls")
        assert calls[0] == ["Environment.set", "sandbox"]  # before Initialize, as Paddle asks
        assert calls[1] == ["Initialize", {"token": "test_0123456789abcdef0123456789a"}]
        opened = [options for name, options in calls if name == "Checkout.open"]
        assert [o["items"] for o in opened] == [
            [{"priceId": LIFETIME_PRICE, "quantity": 1}],
            [{"priceId": MONTHLY_PRICE, "quantity": 1}],
        ]
        for options in opened:
            assert options["customData"] == {"onboarding_token": token}
            assert options["settings"]["displayMode"] == "overlay"
            assert options["settings"]["successUrl"].endswith(f"/welcome?token={token}")
        assert page.refused == []  # the page asked for nothing but us and Paddle.js
        assert page.problems == []  # no CSP violation, no script error


async def test_the_welcome_page_shows_the_deep_link_and_follows_provisioning(
    shop: Storefront, tmp_path: Path
) -> None:
    token = OnboardingTokens(ADMIN_KEY).mint()
    await shop.pay_monthly(token)
    async with browser(_origin(shop), tmp_path / "profile") as page:
        await page.open(f"/welcome?token={token}")
        link = await page.evaluate("document.getElementById('telegram-link').href")
        assert link == f"https://t.me/{BOT}?start={token}"
        qr = await page.evaluate("document.querySelector('svg.qr').getBoundingClientRect().width")
        assert qr >= 150  # big enough to scan from a screen
        assert await page.evaluate("document.getElementById('status-title').textContent") == (
            "Your server is being set up"
        )
        for width in WIDTHS:
            await page.screenshot("welcome-provisioning", width)

        await shop.set_instance_status("active")  # the reconciler finished
        await page.wait_for("document.getElementById('setup-status').dataset.status === 'active'")
        assert await page.evaluate("document.getElementById('status-title').textContent") == (
            "Your server is ready"
        )
        steps = await page.evaluate(
            "[...document.querySelectorAll('#progress li')].map(li => li.className)"
        )
        assert steps == ["done", "done", "done"]
        for width in WIDTHS:
            await page.screenshot("welcome-active", width)
        assert page.refused == [] and page.problems == []
