"""`openclaw-hosted`: run, demo, sim, migrate, check-config, image build, restore."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

from app import logs
from app.config import load_settings
from app.demo import run_demo, run_simulators
from app.preflight import check_config
from app.provisioning import build_hetzner, build_ssh, provisioner_config
from app.service import AlreadyRunning, Service, run_until_signalled
from core.clock import SystemClock
from core.redaction import redact
from core.rollouts import VERSION
from core.settings import Settings, StorageSettings, secret_values
from db.connection import Database
from monitor.db_backup import BackupError, restore_database
from provisioner.image import build_golden_image

EXIT_CONFIG = 2
# A golden image is built on a stock system image, never on an older golden image.
DEFAULT_BASE_IMAGE = "ubuntu-24.04"


def _settings(args: argparse.Namespace) -> Settings | None:
    """The settings, or None after printing every problem, one line each."""
    settings, problems = load_settings(args.env_file)
    for line in problems:
        print(f"openclaw-hosted: {line}", file=sys.stderr)
    return None if problems else settings


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EXIT_CONFIG
    logs.configure(settings.log_format, secret_values(settings))
    try:
        asyncio.run(run_until_signalled(Service(settings)))
    except AlreadyRunning as exc:
        print(f"openclaw-hosted: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings, problems = load_settings(args.env_file)
    if settings is None:
        for line in problems:
            print(f"problem: {line}")
        print(f"{len(problems)} problem(s) found")
        return EXIT_CONFIG
    print("configuration OK")
    # The key file's problems (load_settings' file_problems) are the SSH key row's ✗.
    return check_config(settings, online=not args.offline)


def cmd_migrate(args: argparse.Namespace) -> int:
    storage = StorageSettings(_env_file=args.env_file)

    async def migrate() -> list[int]:
        db = await Database.open(storage.database_path, migrate=False)
        try:
            return await db.migrate()
        finally:
            await db.close()

    applied = asyncio.run(migrate())
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))} to {storage.database_path}")
    else:
        print(f"{storage.database_path} is up to date")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    storage = StorageSettings(_env_file=args.env_file)
    backup = Path(args.file)
    try:
        kept = asyncio.run(restore_database(backup, storage.database_path, SystemClock().now()))
    except (BackupError, OSError) as exc:  # one line for the operator, not a traceback
        print(f"openclaw-hosted: restore refused: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"restored {backup} to {storage.database_path}")
    if kept is not None:
        print(f"the previous database is kept as {kept}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The journey in a temporary world (or --data-dir); the service's own log lines go
    to demo.log there, so the terminal shows the chats."""
    with tempfile.TemporaryDirectory(prefix="openclaw-demo-") as temporary:
        data_dir = Path(args.data_dir or temporary)
        data_dir.mkdir(parents=True, exist_ok=True)
        with (data_dir / "demo.log").open("a") as log_file:
            logs.configure("text", [], stream=log_file)
            return asyncio.run(run_demo(data_dir, args.time_scale, interactive=args.interactive))


def cmd_sim(args: argparse.Namespace) -> int:
    logs.configure("text", [])
    env_out = Path(args.env_out) if args.env_out else None
    asyncio.run(run_simulators(Path(args.data_dir), args.time_scale, env_out, args.once))
    return 0


async def _build_image(settings: Settings, base_image: str, version: str) -> int:
    secrets = secret_values(settings)
    config = dataclasses.replace(
        provisioner_config(settings), image=base_image, openclaw_version=version
    )
    clock = SystemClock()
    hetzner = build_hetzner(settings, clock)
    ssh = build_ssh(settings)

    def progress(line: str) -> None:
        # Progress on stderr: stdout carries only the result, `>> .env` ready.
        print(f"image build: {redact(line, secrets)}", file=sys.stderr, flush=True)

    try:
        return await build_golden_image(hetzner, ssh, config, clock=clock, log=progress)
    finally:
        hetzner.close()


def cmd_image_build(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EXIT_CONFIG
    logs.configure(settings.log_format, secret_values(settings))
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one line per connection
    base_image = args.base_image
    if base_image is None:
        current = settings.hcloud_image
        base_image = DEFAULT_BASE_IMAGE if current.isdigit() else current
    # A fleet rollout's version (its alert says so), or OPENCLAW_VERSION.
    version = args.version or settings.openclaw_version
    if not VERSION.fullmatch(version):
        print(f"openclaw-hosted: not an OpenClaw version: {version[:40]!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        image_id = asyncio.run(_build_image(settings, base_image, version))
    except KeyboardInterrupt:
        print("openclaw-hosted: image build interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the error, not a traceback: an operator reads this
        message = redact(str(exc) or type(exc).__name__, secret_values(settings))
        print(f"openclaw-hosted: image build failed: {message}", file=sys.stderr)
        return 1
    print(f"HCLOUD_IMAGE={image_id}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="openclaw-hosted", description=__doc__)
    root.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    commands = root.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("run", cmd_run, "run the service"),
        ("check-config", cmd_check_config, "the settings, then each outside service online"),
        ("migrate", cmd_migrate, "apply database migrations"),
        ("demo", cmd_demo, "run everything against the simulators"),
        ("sim", cmd_sim, "start the simulators alone and print a ready .env"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(func=func)
        if name in ("demo", "sim"):
            sub.add_argument(
                "--data-dir",
                default=None if name == "demo" else "data/sim",
                help="where the simulated world lives (demo: a temporary folder)",
            )
            sub.add_argument(
                "--time-scale",
                type=float,
                default=0.05,
                help="outside-world latencies times this (1 = real)",
            )
        if name == "sim":
            sub.add_argument("--once", action="store_true", help="start, show, and stop")
            sub.add_argument("--env-out", help="also write the settings to this file")
        if name == "check-config":
            sub.add_argument(
                "--offline", action="store_true", help="the settings and the SSH key file only"
            )
        if name == "demo":
            sub.add_argument(
                "--interactive",
                action="store_true",
                help="after the journey, type into the ops group and the customer's chat",
            )
    image = commands.add_parser("image", help="the golden image (OpenClaw preinstalled)")
    image_commands = image.add_subparsers(dest="image_command", required=True)
    build = image_commands.add_parser(
        "build", help="build a golden snapshot and print HCLOUD_IMAGE=<id>"
    )
    build.add_argument(
        "--base-image",
        help=f"system image to start from (default: HCLOUD_IMAGE when it is a name, "
        f"else {DEFAULT_BASE_IMAGE})",
    )
    build.add_argument(
        "--version", help="the OpenClaw version to preinstall (default: OPENCLAW_VERSION)"
    )
    build.set_defaults(func=cmd_image_build)
    restore = commands.add_parser(
        "restore", help="put a database backup in place (the service must be stopped)"
    )
    restore.add_argument("file", metavar="FILE", help="a backup made by the service")
    restore.set_defaults(func=cmd_restore)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
