"""Reading settings from the environment and `.env`, and saying clearly what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from core.settings import EXPECTED, Settings


def _describe(error: dict[str, object]) -> str:
    loc = error.get("loc") or ("?",)
    name = str(loc[0]).upper()  # type: ignore[index]
    expected = EXPECTED.get(name)
    if error.get("type") == "missing":
        problem = "is missing"
    else:
        # pydantic's msg names the rule, not the value (our own validators never quote it).
        problem = f"is malformed ({error.get('msg')})"
    return f"{name} {problem}" + (f": expected {expected}" if expected else "")


def load_settings(env_file: str | Path | None = ".env") -> tuple[Settings | None, list[str]]:
    """The settings, or every problem found, one line each (no values, no traceback)."""
    try:
        settings = Settings(_env_file=env_file)
    except ValidationError as exc:
        lines = [_describe(dict(e)) for e in exc.errors()]
        return None, list(dict.fromkeys(lines))  # one line per setting, in order
    return settings, file_problems(settings)


def file_problems(settings: Settings) -> list[str]:
    """Checks a schema cannot make: files that must exist and be private."""
    problems = []
    key = settings.ssh_private_key_path
    if not key.is_file():
        problems.append(
            f"SSH_PRIVATE_KEY_PATH is malformed (no file at {key}): expected "
            f"{EXPECTED['SSH_PRIVATE_KEY_PATH']}"
        )
    elif key.stat().st_mode & 0o077:
        problems.append(
            f"SSH_PRIVATE_KEY_PATH is malformed ({key} is readable by others): chmod 600 it"
        )
    elif not os.access(key, os.R_OK):
        problems.append(f"SSH_PRIVATE_KEY_PATH is malformed ({key} is not readable)")
    return problems
