"""`openclaw-hosted`: run, demo, sim, migrate, check-config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app import logs
from app.config import load_settings
from app.demo import run_demo, run_simulators
from app.service import AlreadyRunning, Service, run_until_signalled
from core.settings import StorageSettings, secret_values
from db.connection import Database

EXIT_CONFIG = 2


def cmd_run(args: argparse.Namespace) -> int:
    settings, problems = load_settings(args.env_file)
    if problems or settings is None:
        for line in problems:
            print(f"openclaw-hosted: {line}", file=sys.stderr)
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
    if problems or settings is None:
        for line in problems:
            print(f"problem: {line}")
        print(f"{len(problems)} problem(s) found")
        return EXIT_CONFIG
    print("configuration OK")
    return 0


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


def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure("text", [])
    asyncio.run(run_demo(Path(args.data_dir), args.time_scale, args.once))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    logs.configure("text", [])
    env_out = Path(args.env_out) if args.env_out else None
    asyncio.run(run_simulators(Path(args.data_dir), args.time_scale, env_out, args.once))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="openclaw-hosted", description=__doc__)
    root.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    commands = root.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("run", cmd_run, "run the service"),
        ("check-config", cmd_check_config, "report every settings problem at once"),
        ("migrate", cmd_migrate, "apply database migrations"),
        ("demo", cmd_demo, "run everything against the simulators"),
        ("sim", cmd_sim, "start the simulators alone and print a ready .env"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(func=func)
        if name in ("demo", "sim"):
            sub.add_argument(
                "--data-dir", default="data/sim", help="where the simulated world lives"
            )
            sub.add_argument(
                "--time-scale",
                type=float,
                default=0.05,
                help="outside-world latencies times this (1 = real)",
            )
            sub.add_argument("--once", action="store_true", help="start, show, and stop")
        if name == "sim":
            sub.add_argument("--env-out", help="also write the settings to this file")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
