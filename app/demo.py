"""`openclaw-hosted sim` and `demo`: the simulators alone, or the whole system on them."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

from app.demo_view import DemoView
from app.journey import Journey, JourneyError
from app.service import Service
from app.simulators import VPS_UNSUPPORTED, Simulators, env_block
from core.clock import SystemClock
from core.settings import Settings

# Short intervals, so that a minute shows a month: health every 2 s, the billing clock
# every second (time travel does the rest).
DEMO_SETTINGS = {
    "health_check_interval_s": "2",
    "start_grace_s": "2",
    "billing_tick_s": "1",
    "status_check_interval_s": "5",
}


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


async def _interactive(sims: Simulators, view: DemoView) -> None:
    """Type into the chats: `ops /list`, `me /status`, `quit`."""
    telegram = sims.telegram
    admin = telegram.users[sims.admin_user_id]
    customers = [u for u in telegram.users.values() if u.username == "grace_h"]
    print(
        "\nInteractive: `ops <text>` writes in the ops group as Ada, `me <text>` in Grace's "
        "chat with the bot; `quit` stops.",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() in ("quit", "exit"):  # end of input, or asked to
            return
        line = line.strip()
        where, _, text = line.partition(" ")
        if where == "ops" and text:
            telegram.send_text(sims.ops_chat_id, admin, text)
        elif where == "me" and text and customers:
            telegram.send_text(customers[0].id, customers[0], text)
        else:
            print("  ops <text> | me <text> | quit", flush=True)
        await asyncio.sleep(0.5)
        view.flush()


async def run_demo(data_dir: Path, time_scale: float, interactive: bool = False) -> int:
    """The whole journey against the simulators, the service in this process, then
    everything stopped (kept running with `interactive`); returns the exit status (0
    when every phase happened)."""
    sims = Simulators(data_dir, time_scale=time_scale, http_port=_free_port())
    await sims.start()
    clock = SystemClock()
    view = DemoView(sims.telegram)
    view.watch("ops", sims.ops_chat_id)
    try:
        values = {key.lower(): value for key, value in sims.env().items()}
        values |= DEMO_SETTINGS
        settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
        service = Service(settings, clock=clock)
        await service.start()
        try:
            print(f"OpenClaw Hosted demo · storefront {service.url}/ · logs {data_dir}/demo.log")
            if sims.vps is None:
                print(VPS_UNSUPPORTED)
                return 1

            async def travel(delta: timedelta) -> None:
                clock.travel(delta)  # the billing clock sees it at its next tick

            journey = Journey(
                sims, service.url, view, travel,
                grace=timedelta(days=settings.cancel_grace_days),
                retention=timedelta(days=settings.destroy_after_days),
            )  # fmt: skip
            view.start(journey.status)
            began = time.monotonic()
            try:
                report = await journey.run()
            except JourneyError as error:
                await view.stop()
                print(f"\nThe demo stopped: {error}")
                return 1
            await view.stop()
            print(f"\nThe whole journey took {time.monotonic() - began:.0f} s:")
            print(report.summary())
            print(
                f"\n{len(view.texts('ops'))} messages in the ops group, "
                f"{len(view.texts('customer'))} in Grace's chat; "
                f"admin API: curl -H 'X-API-Key: {sims.admin_api_key}' {service.url}/api/instances"
            )
            if interactive:
                view.start(journey.status)
                await _interactive(sims, view)
                await view.stop()
            return 0
        finally:
            await service.stop()
    finally:
        await sims.stop()
