"""Each torture's verdict once more at the end of the run, one line each:
`NAME lost=N PASS|FAIL` (a torture that failed before printing its report counts as
FAIL with what was lost unknown)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.torture.harness import REPORTED

NAMES = {
    "test_crash": "crash",
    "test_chaos": "chaos",
    "test_bad_input": "bad-input",
    "test_secrets": "secrets",
    "test_load": "load",
}
_failed: dict[str, int] = {}
_ran: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    if module not in NAMES or report.skipped:
        return
    if report.when == "call":
        _ran.add(module)
    if report.failed:
        _failed[module] = _failed.get(module, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ran:
        return
    terminalreporter.section("torture")
    for module, name in NAMES.items():
        if module not in _ran:
            continue
        line = REPORTED.get(name)
        if line is None or (_failed.get(module) and line.endswith("PASS")):
            failures = _failed.get(module, 0)
            line = f"{name} lost={failures} {'FAIL' if failures else 'PASS'}"
        terminalreporter.write_line(line)


# The bot's world (real aiogram against the Telegram simulator) for the command fuzzer.
from tests.bot.conftest import make_context, sim, world  # noqa: E402, F401
