"""/stats: the business on one screen.

MRR counts active monthly subscriptions at PRICE_MONTHLY_USD (a lifetime purchase is
0 MRR). Server cost is the sum of the Hetzner monthly prices recorded for servers
that still exist, in EUR and in USD at EUR_USD. Paddle takes 5 % + $0.50 of every
transaction: one per monthly subscription per month. Margin = MRR − servers − fees.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.admin.common import say
from bot.context import BotContext
from bot.render import STATUS_EMOJI, esc, eur, usd
from core.models import Status
from db.instances import count_by_status

PADDLE_FEE_RATE = 0.05
PADDLE_FEE_FIXED_USD = 0.50


@dataclass(frozen=True)
class Stats:
    by_status: dict[str, int]
    paying_monthly: int
    past_due: int
    mrr_usd: float
    servers: int
    server_cost_eur: float
    server_cost_usd: float
    paddle_fees_usd: float
    margin_usd: float
    lifetime_sold: int
    lifetime_cap: int


async def compute_stats(ctx: BotContext) -> Stats:
    db, settings = ctx.core.db, ctx.settings
    subs = await db.fetch_one(
        "SELECT SUM(status = 'active') AS active, SUM(status = 'past_due') AS past_due "
        "FROM subscriptions WHERE plan = 'monthly' AND refunded_at IS NULL"
    )
    servers = await db.fetch_one(
        "SELECT COUNT(server_monthly_price_eur) AS n, "
        "COALESCE(SUM(server_monthly_price_eur), 0) AS eur FROM instances WHERE status != ?",
        (Status.DESTROYED.value,),
    )
    sold = await db.fetch_one("SELECT COUNT(*) AS n FROM purchases WHERE refunded_at IS NULL")
    paying = int(subs["active"] or 0) if subs else 0
    mrr = paying * settings.price_monthly_usd
    cost_eur = float(servers["eur"]) if servers else 0.0
    cost_usd = cost_eur * settings.eur_usd
    fees = paying * (settings.price_monthly_usd * PADDLE_FEE_RATE + PADDLE_FEE_FIXED_USD)
    return Stats(
        by_status=await count_by_status(db),
        paying_monthly=paying,
        past_due=int(subs["past_due"] or 0) if subs else 0,
        mrr_usd=mrr,
        servers=int(servers["n"]) if servers else 0,
        server_cost_eur=cost_eur,
        server_cost_usd=cost_usd,
        paddle_fees_usd=fees,
        margin_usd=mrr - cost_usd - fees,
        lifetime_sold=int(sold["n"]) if sold else 0,
        lifetime_cap=settings.lifetime_cap,
    )


def render_stats(stats: Stats, eur_usd: float) -> str:
    counts = " · ".join(
        f"{STATUS_EMOJI[status]} {esc(status)} {stats.by_status.get(status, 0)}"
        for status in Status
    )
    return "\n".join(
        [
            "<b>Stats</b>",
            f"Instances: {counts}",
            f"MRR: {usd(stats.mrr_usd)} ({stats.paying_monthly} monthly paying,"
            f" {stats.past_due} past due)",
            f"Servers: {eur(stats.server_cost_eur)} = {usd(stats.server_cost_usd)} a month"
            f" ({stats.servers} servers, EUR_USD {eur_usd:g})",
            f"Paddle fees: {usd(stats.paddle_fees_usd)} a month",
            f"Margin: {usd(stats.margin_usd)} a month",
            f"Lifetime: {stats.lifetime_sold} / {stats.lifetime_cap}",
        ]
    )


def build_router() -> Router:
    router = Router(name="admin.stats")

    @router.message(Command("stats"))
    async def stats_command(message: Message, ctx: BotContext) -> None:
        await say(message, render_stats(await compute_stats(ctx), ctx.settings.eur_usd))

    return router
