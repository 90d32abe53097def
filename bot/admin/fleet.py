"""/upgrade <version>, /rollout [pause|resume|abort], /fleet: fleet upgrades from the ops
group.

/upgrade asks first (✅ on a stored proposal, `rollouts` in state `proposed`, so the
button still works after a restart and works once); the rollout then runs by itself in
the reconciler, and the group hears of the canary passing, a halt and the end.
/rollout shows where it is; /fleet shows every active instance by OpenClaw version and
by OS update status, as the resource checks last read them.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.admin.common import edit_in_place, say, usage
from bot.callbacks import RolloutConfirm
from bot.context import BotContext
from bot.render import code, esc
from core.fleet import FleetView, fleet_view
from core.lifecycle import LifecycleError
from core.rollout_admin import RolloutAdmin
from core.rollout_store import Progress, RolloutStore, describe_plan
from core.rollouts import MemberState, RolloutPlan, RolloutState, versions_text

UPGRADE_USAGE = "/upgrade <version>, e.g. /upgrade 2026.9.6"
ROLLOUT_USAGE = "/rollout [pause | resume | abort]"
STATE_EMOJI = {
    RolloutState.RUNNING: "🚀",
    RolloutState.PAUSED: "⏸",
    RolloutState.HALTED: "🛑",
    RolloutState.ABORTED: "✖️",
    RolloutState.DONE: "🏁",
}
COUNTED = (
    (MemberState.UPGRADED, "upgraded"),
    (MemberState.UPGRADING, "upgrading"),
    (MemberState.ROLLING_BACK, "rolling back"),
    (MemberState.ROLLED_BACK, "rolled back"),
    (MemberState.FAILED, "failed"),
    (MemberState.SKIPPED, "skipped"),
)
IDS_SHOWN = 10


def rollout_admin(ctx: BotContext) -> RolloutAdmin:
    core = ctx.core
    return RolloutAdmin(core.db, core.clock, ctx.settings.openclaw_version, core.lifecycle.wake)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(code(i) for i in ids[:IDS_SHOWN])
    return shown + (f" +{len(ids) - IDS_SHOWN}" if len(ids) > IDS_SHOWN else "")


def progress_text(progress: Progress) -> str:
    rollout = progress.rollout
    emoji = STATE_EMOJI.get(rollout.state, "🚀")
    lines = [
        f"{emoji} <b>Rollout {rollout.id}</b>: OpenClaw {esc(rollout.previous_version)} →"
        f" {esc(rollout.version)}, {esc(rollout.state.value)}"
        + (f" ({esc(rollout.phase.value)})" if rollout.state is not RolloutState.DONE else ""),
        esc(describe_plan(rollout)),
    ]
    if rollout.halt_reason and rollout.state is RolloutState.HALTED:
        lines.append(f"Halted: {esc(rollout.halt_reason)}")
    if rollout.waiting_for and rollout.state is RolloutState.RUNNING:
        lines.append(f"Waiting for {esc(rollout.waiting_for)}")
    counts = [f"{label} {len(progress.members.get(state, []))}" for state, label in COUNTED]
    lines.append(" · ".join([*counts, f"to do {progress.remaining}"]))
    for state, label in COUNTED[2:5]:
        if progress.members.get(state):
            lines.append(f"{label.capitalize()}: {_ids(progress.members[state])}")
    if progress.left_out:
        lines.append(f"Left out (muted or suspended): {_ids(progress.left_out)}")
    lines += ["Active instances by version:", esc(versions_text(progress.versions))]
    if rollout.state is RolloutState.RUNNING:
        lines.append("/rollout pause · /rollout abort")
    elif rollout.state in (RolloutState.PAUSED, RolloutState.HALTED):
        lines.append("/rollout resume · /rollout abort")
    return "\n".join(lines)


def fleet_text(view: FleetView) -> str:
    lines = [
        "<b>Fleet</b>: active instances",
        f"New servers get OpenClaw {esc(view.target_version)}.",
        "<b>By OpenClaw version</b>",
        esc(versions_text(view.versions)),
        "<b>OS updates</b> (from the resource checks)",
        f"Up to date: {view.up_to_date}",
    ]
    if view.security_updates:
        pending = sorted(view.security_updates.items(), key=lambda item: -item[1])
        shown = ", ".join(f"{code(i)} ({n})" for i, n in pending[:IDS_SHOWN])
        lines.append(f"Security updates pending: {len(pending)}: {shown}")
    if view.other_updates:
        lines.append(f"Other updates pending: {len(view.other_updates)}")
    if view.reboot_required:
        lines.append(f"Reboot required: {len(view.reboot_required)}: {_ids(view.reboot_required)}")
    if view.os_unknown:
        lines.append(f"Not checked yet: {len(view.os_unknown)}")
    if view.oldest_check:
        lines.append(f"Oldest reading: {esc(view.oldest_check[:16].replace('T', ' '))} UTC")
    if view.rollout is not None:
        rollout = view.rollout
        lines.append(
            f"Rollout {rollout.id} to {esc(rollout.version)}: {esc(rollout.state.value)} (/rollout)"
        )
    return "\n".join(lines)


def _buttons(rollout_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text="✅ Upgrade", callback_data=RolloutConfirm(id=rollout_id, yes=True))
    builder.button(text="✖️ Cancel", callback_data=RolloutConfirm(id=rollout_id, yes=False))
    return builder.as_markup()


def build_router() -> Router:
    router = Router(name="admin.fleet")

    @router.message(Command("upgrade"))
    async def upgrade(
        message: Message, command: CommandObject, ctx: BotContext, actor: str
    ) -> None:
        args = (command.args or "").split()
        if len(args) != 1:
            await say(message, usage(UPGRADE_USAGE))
            return
        settings = ctx.settings
        plan = RolloutPlan(
            version=args[0],
            batch_size=settings.rollout_batch_size,
            max_failures=settings.rollout_max_failures,
            soak_s=settings.rollout_soak_s,
        )
        admin = rollout_admin(ctx)
        if (problem := plan.problem()) is not None:
            await say(message, f"❌ {esc(problem)}")
            return
        if (current := await admin.store.open()) is not None:
            await say(message, f"❌ Rollout {current.id} is {esc(current.state.value)}: /rollout")
            return
        proposal = await admin.propose(plan, actor)
        to_do = len(await admin.store.candidates(proposal))
        text = (
            f"Upgrade the fleet to OpenClaw {esc(plan.version)}? New servers get"
            f" {esc(proposal.previous_version)} now; {to_do} active instances to upgrade.\n"
            f"{esc(describe_plan(proposal))}."
        )
        await say(message, text, _buttons(proposal.id))

    @router.callback_query(RolloutConfirm.filter())
    async def confirmed(
        query: CallbackQuery, callback_data: RolloutConfirm, ctx: BotContext, actor: str
    ) -> None:
        await query.answer()
        if not isinstance(query.message, Message):
            return
        admin = rollout_admin(ctx)
        try:
            if not callback_data.yes:
                cancelled = await admin.cancel(callback_data.id, actor)
                text = f"Cancelled: the upgrade to OpenClaw {esc(cancelled.version)}."
            else:
                rollout = await admin.confirm(callback_data.id, actor)
                text = (
                    f"🚀 Rollout {rollout.id} to OpenClaw {esc(rollout.version)} started."
                    " /rollout shows where it is."
                )
        except LifecycleError as error:
            text = f"❌ {esc(error)}"
        await edit_in_place(query.message, text, None)

    @router.message(Command("rollout"))
    async def rollout(
        message: Message, command: CommandObject, ctx: BotContext, actor: str
    ) -> None:
        args = (command.args or "").split()
        verb = args[0].lower() if args else ""
        if len(args) > 1 or verb not in ("", "pause", "resume", "abort"):
            await say(message, usage(ROLLOUT_USAGE))
            return
        admin = rollout_admin(ctx)
        if verb:
            try:
                await getattr(admin, verb)(actor)
            except LifecycleError as error:
                await say(message, f"❌ {esc(error)}")
                return
        current = await admin.store.open() or await admin.store.latest()
        if current is None:
            await say(message, "No rollout yet. /upgrade &lt;version&gt; starts one.")
            return
        await say(message, progress_text(await admin.store.progress(current)))

    @router.message(Command("fleet"))
    async def fleet(message: Message, ctx: BotContext) -> None:
        store = RolloutStore(ctx.core.db, ctx.core.clock)
        await say(message, fleet_text(await fleet_view(store, ctx.settings.openclaw_version)))

    return router
