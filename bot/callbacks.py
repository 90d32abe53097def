"""Every inline button's data: small typed classes with a prefix, packed by aiogram,
which refuses anything over Telegram's 64 bytes."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class ListPage(CallbackData, prefix="lp"):
    """◀ ▶ on /list; `status` is "" for all instances."""

    status: str
    page: int


class CardAction(CallbackData, prefix="ca"):
    """A button on a /status card: asks for confirmation (or shows logs), never acts."""

    action: str
    instance: str


class Confirm(CallbackData, prefix="cf"):
    """Yes/no on a stored confirmation (bot_confirmations.id), single-use."""

    id: int
    yes: bool
    step: int = 1  # destroy asks twice: a press counts only for the step it was shown at


class RolloutConfirm(CallbackData, prefix="ro"):
    """Yes/no on a proposed rollout (rollouts.id, state proposed), single-use."""

    id: int
    yes: bool
