"""/suspend, /resume, /reprovision, /retry, /destroy and the card's buttons.

Destructive actions are stored as a pending confirmation (bot_confirmations) and run
only when an admin presses ✅; the row is deleted as it is used, so a double press
acts once and a button still works after a restart. /destroy asks twice, and says
so when the customer is still paying. Every action goes through AdminActions with
the presser as actor, which records it in `events`.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.admin.common import edit_in_place, instance_or_say, say, usage
from bot.callbacks import CardAction, Confirm
from bot.context import BotContext
from bot.render import code, esc
from core.clock import to_iso
from core.facts import billing_facts
from core.lifecycle import LifecycleError
from core.models import DesiredState, OperationKind, Plan
from core.policy import billing_decision
from db.instances import get_instance

USAGES = {
    "suspend": "/suspend <instance id> <reason>",
    "resume": "/resume <instance id>",
    "reprovision": "/reprovision <instance id>",
    "retry": "/retry <instance id>",
    "destroy": "/destroy <instance id>",
}
CARD_SUSPEND_REASON = "suspended from the /status card"
QUESTIONS = {
    "suspend": "Suspend {id}?",
    "reprovision": "Reprovision {id}? Its server is rebuilt from scratch.",
    "retry": "Retry the failed provisioning of {id}?",
    "destroy": "Destroy {id}? Its server and data are deleted.",
}


async def still_paid(ctx: BotContext, instance_id: str) -> str | None:
    """The warning /destroy shows before asking: the same rule AdminActions.destroy uses."""
    core = ctx.core
    async with core.db.transaction() as conn:
        instance = await core.lifecycle.instance(conn, instance_id)
        billing = await billing_facts(conn, instance)
    decision = billing_decision(billing, core.clock.now(), core.lifecycle.timings)
    if decision.desired_state is DesiredState.ACTIVE and billing.plan is not Plan.MANUAL:
        return f"⚠️ The {billing.plan.value} plan of this instance is still paid."
    return None


def confirm_buttons(confirmation_id: int, yes: str, step: int = 1) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=yes, callback_data=Confirm(id=confirmation_id, yes=True, step=step))
    builder.button(text="✖️ Cancel", callback_data=Confirm(id=confirmation_id, yes=False, step=step))
    return builder.as_markup()


async def ask(ctx: BotContext, action: str, instance_id: str, reason: str, actor: str) -> int:
    async with ctx.core.db.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO bot_confirmations (action, instance_id, reason, requested_by, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (action, instance_id, reason, actor, to_iso(ctx.core.clock.now())),
        )
        return int(cursor.lastrowid or 0)


async def question(ctx: BotContext, action: str, instance_id: str, reason: str) -> str:
    text = QUESTIONS[action].format(id=code(instance_id))
    if reason:
        text += f"\nReason: {esc(reason)}"
    if action == "destroy" and (warning := await still_paid(ctx, instance_id)):
        text += f"\n{esc(warning)}"
    return text


async def run(ctx: BotContext, action: str, instance_id: str, reason: str, actor: str) -> str:
    """Do it through core; the answer to show in place of the question."""
    admin = ctx.core.admin
    try:
        if action == "suspend":
            await admin.suspend(instance_id, reason, actor)
            return f"⏸ {code(instance_id)} suspended: {esc(reason)}"
        if action == "resume":
            await admin.resume(instance_id, actor)
            return f"▶️ {code(instance_id)} resumed."
        if action == "destroy":
            warning = await admin.destroy(instance_id, actor)
            extra = f"\n⚠️ {esc(warning)}" if warning else ""
            return f"⚫ {code(instance_id)} is being destroyed.{extra}"
        kind = OperationKind(action)
        operation = await admin.queue_operation(instance_id, kind, actor)
        return f"🔁 {esc(action)} of {code(instance_id)} queued (operation {operation})."
    except LifecycleError as error:
        return f"❌ {esc(error)}"


def build_router() -> Router:
    router = Router(name="admin.lifecycle")

    async def request(
        message: Message, ctx: BotContext, action: str, args: str, actor: str
    ) -> None:
        parts = args.split(maxsplit=1)
        needs_reason = action == "suspend"
        if not parts or (needs_reason and len(parts) < 2) or (not needs_reason and len(parts) > 1):
            await say(message, usage(USAGES[action]))
            return
        instance_id, reason = parts[0], parts[1].strip() if needs_reason else ""
        if not await instance_or_say(ctx, message, instance_id):
            return
        if action == "resume":
            await say(message, await run(ctx, action, instance_id, "", actor))
            return
        confirmation = await ask(ctx, action, instance_id, reason, actor)
        text = await question(ctx, action, instance_id, reason)
        await say(message, text, confirm_buttons(confirmation, f"✅ {action.capitalize()}"))

    @router.message(Command("suspend", "resume", "reprovision", "retry", "destroy"))
    async def lifecycle_command(
        message: Message, command: CommandObject, ctx: BotContext, actor: str
    ) -> None:
        await request(message, ctx, command.command.lower(), command.args or "", actor)

    @router.callback_query(CardAction.filter(F.action.in_(set(USAGES) - {"destroy"})))
    async def card_button(
        query: CallbackQuery, callback_data: CardAction, ctx: BotContext, actor: str
    ) -> None:
        await query.answer()
        if not isinstance(query.message, Message):
            return
        reason = CARD_SUSPEND_REASON if callback_data.action == "suspend" else ""
        args = f"{callback_data.instance} {reason}".strip()
        await request(query.message, ctx, callback_data.action, args, actor)

    @router.callback_query(Confirm.filter())
    async def confirmed(
        query: CallbackQuery, callback_data: Confirm, ctx: BotContext, actor: str
    ) -> None:
        if not isinstance(query.message, Message):
            await query.answer()
            return
        async with ctx.core.db.transaction() as conn:
            async with conn.execute(
                "SELECT * FROM bot_confirmations WHERE id = ?", (callback_data.id,)
            ) as cursor:
                pending = await cursor.fetchone()
            if pending is not None and pending["step"] != callback_data.step:
                # A second press of a button from an earlier step (destroy's first ✅
                # pressed twice): it must not count as the second confirmation.
                await query.answer("Already answered.")
                return
            final = pending is not None and (pending["action"] != "destroy" or pending["step"] > 1)
            if pending is not None and (final or not callback_data.yes):
                await conn.execute("DELETE FROM bot_confirmations WHERE id = ?", (pending["id"],))
            elif pending is not None:
                await conn.execute(
                    "UPDATE bot_confirmations SET step = 2 WHERE id = ?", (pending["id"],)
                )
        await query.answer()
        if pending is None:
            await edit_in_place(query.message, "This confirmation was already used.", None)
            return
        action, instance_id = pending["action"], pending["instance_id"]
        if not callback_data.yes:
            text = f"Cancelled: {esc(action)} {code(instance_id)}."
            await edit_in_place(query.message, text, None)
        elif not final:
            instance = await get_instance(ctx.core.db, instance_id)
            email = esc(instance["customer_email"]) if instance else ""
            text = f"Really destroy {code(instance_id)} of {email}? This cannot be undone."
            warning = await still_paid(ctx, instance_id)
            text += f"\n{esc(warning)}" if warning else ""
            await edit_in_place(
                query.message, text, confirm_buttons(pending["id"], "💥 Destroy for good", step=2)
            )
        else:
            text = await run(ctx, action, instance_id, pending["reason"], actor)
            await edit_in_place(query.message, text, None)

    return router
