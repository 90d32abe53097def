"""What a step returns: retrying is a value, not a flag buried in a loop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Next:
    """This step is done; go on with `step` (None: the transition is complete)."""

    step: str | None


@dataclass(frozen=True)
class Retry:
    """A transient failure: counts against the step policy's attempts."""

    error: str


@dataclass(frozen=True)
class Wait:
    """Not a failure (capacity in the project, a server still booting): look again later."""

    after_s: float
    reason: str


@dataclass(frozen=True)
class Fail:
    """Give up now: `failed`, alert, server kept for debugging."""

    error: str


Outcome = Next | Retry | Wait | Fail
