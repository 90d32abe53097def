"""The one place the bot's routers are composed.

The admin routers sit under one parent that only sees group chats and whose
middleware (`bot.access.AdminGate`) admits only admins in the ops chat; private chats
fall through to the customer router. Handlers receive the `BotContext` as `ctx`
(dispatcher workflow data) and, on the admin side, `actor` ("tg:<user id>").
"""

from __future__ import annotations

from aiogram import Dispatcher, Router

from bot import customer, ops_migration
from bot.access import IN_GROUP_CALLBACK, IN_GROUP_MESSAGE, AdminGate
from bot.admin import fleet, lifecycle, logs, mute, stats, status
from bot.admin import help as help_
from bot.admin import list as list_
from bot.context import BotContext


def build_admin_router(ctx: BotContext) -> Router:
    admin = Router(name="admin")
    admin.message.filter(IN_GROUP_MESSAGE)
    admin.callback_query.filter(IN_GROUP_CALLBACK)
    gate = AdminGate(ctx)
    admin.message.middleware(gate)
    admin.callback_query.middleware(gate)
    admin.include_routers(
        list_.build_router(),
        status.build_router(),
        lifecycle.build_router(),
        logs.build_router(),
        mute.build_router(),
        stats.build_router(),
        fleet.build_router(),
        help_.build_router(),
    )
    return admin


def _customer_router() -> Router:
    router = customer.router
    # A module-level router can be attached to one parent only; tests (and a restart
    # of the bot within one process) build a new dispatcher, so re-home it.
    if router.parent_router is not None:
        router.parent_router.sub_routers.remove(router)
        router._parent_router = None
    return router


def build_dispatcher(ctx: BotContext) -> Dispatcher:
    dp = Dispatcher(name="openclaw-hosted")
    dp["ctx"] = ctx
    # The migration notice first: it comes from no admin, and the gate would drop it.
    dp.include_routers(ops_migration.build_router(), build_admin_router(ctx), _customer_router())
    return dp
