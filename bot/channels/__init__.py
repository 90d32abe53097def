"""The ways the outbox reaches people, and what a delivery attempt can end in.

Every channel answers one of these outcomes, so the sender decides once, for all
channels, what is retried, what moves, and what is given up on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sent:
    """Delivered."""


@dataclass(frozen=True)
class RetryLater:
    """A transient failure: try again after `seconds` (429's retry_after), or after the
    sender's backoff when None (5xx, network errors, a server that is down)."""

    reason: str
    seconds: float | None = None


@dataclass(frozen=True)
class Migrated:
    """The group became a supergroup with a new id: store it and send there."""

    chat_id: int


@dataclass(frozen=True)
class Unreachable:
    """This destination is gone for good (bot kicked or blocked, chat not found, address
    refused, no channel configured): stop sending there and use another way."""

    reason: str


@dataclass(frozen=True)
class Rejected:
    """This message itself was refused (malformed); retrying it would fail the same way."""

    reason: str


Outcome = Sent | RetryLater | Migrated | Unreachable | Rejected
