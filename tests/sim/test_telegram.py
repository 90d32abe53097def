"""Contract tests: the real aiogram 3.31 against the Telegram Bot API simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiohttp import web

from sim.telegram import TelegramSim
from sim.telegram_model import SimError

TOKEN = "123456:SIM-TOKEN"
BOT_NAME = "openclaw_hosted_bot"


class Confirm(CallbackData, prefix="confirm"):
    action: str
    instance: str


def keyboard(instance: str) -> InlineKeyboardBuilder:
    builder = InlineKeyboardBuilder()
    builder.button(text="Destroy", callback_data=Confirm(action="destroy", instance=instance))
    return builder


def ops_router() -> Router:
    router = Router()

    @router.message(Command("status"))
    async def status(message: Message) -> None:
        await message.answer(f"<b>status</b> for message {message.message_id}", parse_mode="HTML")

    @router.message(Command("destroy"))
    async def destroy(message: Message, command: CommandObject) -> None:
        markup = keyboard(command.args or "").as_markup()
        await message.answer(f"Destroy {command.args}?", reply_markup=markup)

    @router.callback_query(Confirm.filter(F.action == "destroy"))
    async def confirmed(query: CallbackQuery, callback_data: Confirm) -> None:
        await query.answer("Destroying")
        assert isinstance(query.message, Message)
        await query.message.edit_text(
            f"Destroying {callback_data.instance} for {query.from_user.id}"
        )

    return router


def make_bot(sim: TelegramSim, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(sim.url)))


@pytest.fixture(autouse=True)
async def no_task_left_behind() -> AsyncIterator[None]:
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


@pytest.fixture
async def sim() -> AsyncIterator[TelegramSim]:
    simulator = TelegramSim(bot_token=TOKEN, bot_username=BOT_NAME, time_scale=0.01)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def bot(sim: TelegramSim) -> AsyncIterator[Bot]:
    client = make_bot(sim)
    yield client
    await client.session.close()


@contextlib.asynccontextmanager
async def polling(bot: Bot, router: Router) -> AsyncIterator[Dispatcher]:
    """Run a dispatcher inside the test's loop, as app/ does, and stop it cleanly."""
    dp = Dispatcher()
    dp.include_router(router)
    started = asyncio.Event()
    dp.startup.register(started.set)
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False))
    await asyncio.wait({task, asyncio.create_task(started.wait())}, return_when="FIRST_COMPLETED")
    try:
        yield dp
    finally:
        await dp.stop_polling()
        await task


async def test_dispatcher_answers_commands_in_a_supergroup(sim: TelegramSim, bot: Bot) -> None:
    admin = sim.add_user("Ada", username="ada")
    ops = sim.add_group("Ops", admins=[admin])
    async with polling(bot, ops_router()):
        plain = sim.send_command(ops.id, admin, "status")
        reply = await sim.next_bot_message(ops.id)
        assert reply.text == f"status for message {plain.message_id}"
        assert reply.entities == [{"type": "bold", "offset": 0, "length": 6}]
        assert reply.source_text == f"<b>status</b> for message {plain.message_id}"

        sim.send_command(ops.id, admin, "status@other_bot")  # for another bot: not ours
        mentioned = sim.send_command(ops.id, admin, "status", mention=True)
        assert mentioned.text == f"/status@{BOT_NAME}"
        assert mentioned.entities[0] == {"type": "bot_command", "offset": 0, "length": 27}
        reply = await sim.next_bot_message(ops.id)
        assert reply.text == f"status for message {mentioned.message_id}"


async def test_button_press_answers_and_edits(sim: TelegramSim, bot: Bot) -> None:
    admin = sim.add_user("Ada")
    ops = sim.add_group("Ops", admins=[admin])
    async with polling(bot, ops_router()):
        sim.send_command(ops.id, admin, "destroy", "inst_a1b2c3d4e5f6")
        question = await sim.next_bot_message(ops.id)
        assert question.button_data == ["confirm:destroy:inst_a1b2c3d4e5f6"]
        with pytest.raises(SimError):
            sim.press_button(ops.id, question.message_id, admin, data="confirm:other:x")

        query = sim.press_button(ops.id, question.message_id, admin, text="Destroy")
        answer = await sim.wait_callback_answer(query.id)
        assert answer["text"] == "Destroying"
        await sim.wait_until(lambda: question.edits or None)
    assert question.text == f"Destroying inst_a1b2c3d4e5f6 for {admin.id}"
    assert question.inline_keyboard is None  # an edit without reply_markup drops the keyboard
    assert question.edits[0].text == "Destroy inst_a1b2c3d4e5f6?"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)  # a query is answered once


async def test_flooding_a_group_gets_429_with_retry_after(sim: TelegramSim, bot: Bot) -> None:
    now = [1000.0]
    sim.monotonic = lambda: now[0]  # a frozen clock: the window cannot slide mid-test
    ops = sim.add_group("Ops")
    for n in range(20):
        await bot.send_message(ops.id, f"alert {n}")
    with pytest.raises(TelegramRetryAfter) as flood:
        await bot.send_message(ops.id, "one too many")
    assert flood.value.retry_after >= 1
    assert "Too Many Requests: retry after" in flood.value.message
    now[0] += 60 * sim.time_scale
    await bot.send_message(ops.id, "after the window")

    user = sim.add_user("Bea")
    sim.send_text(user.id, user, "/start")
    sim.set_flood_limit(user.id, limit=1, window_s=1.0)
    await bot.send_message(user.id, "hello")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(user.id, "hello again")


async def test_kicked_bot_gets_403_and_a_my_chat_member_update(sim: TelegramSim, bot: Bot) -> None:
    owner = sim.add_user("Ada")
    ops = sim.add_group("Ops", owner=owner)
    sim.kick_bot(ops.id)
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the supergroup chat"):
        await bot.send_message(ops.id, "anyone?")
    updates = await bot.get_updates(allowed_updates=["my_chat_member"])
    change = updates[0].my_chat_member
    assert change is not None and change.new_chat_member.status == "kicked"
    assert change.from_user.id == owner.id

    stranger = sim.add_user("Cy")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(stranger.id, "hi")
    sim.block_bot(stranger)
    with pytest.raises(TelegramForbiddenError, match="blocked by the user"):
        await bot.send_message(stranger.id, "hi")


async def test_migrated_group_answers_migrate_to_chat_id(sim: TelegramSim, bot: Bot) -> None:
    owner = sim.add_user("Ada")
    group = sim.add_group("Ops", owner=owner, supergroup=False)
    new_id = sim.migrate_group(group.id)
    with pytest.raises(TelegramMigrateToChat) as moved:
        await bot.send_message(group.id, "status")
    assert moved.value.migrate_to_chat_id == new_id
    assert "group chat was upgraded to a supergroup chat" in moved.value.message
    sent = await bot.send_message(new_id, "status")
    assert sent.chat.type == "supergroup"
    service = [u.message for u in await bot.get_updates() if u.message]
    assert [m.migrate_to_chat_id for m in service] == [new_id, None]
    assert service[1].migrate_from_chat_id == group.id


async def test_edits_that_change_nothing_and_too_long_text(sim: TelegramSim, bot: Bot) -> None:
    ops = sim.add_group("Ops")
    markup = keyboard("inst_x").as_markup()
    sent = await bot.send_message(ops.id, "Destroy?", reply_markup=markup)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "Destroy?", chat_id=ops.id, message_id=sent.message_id, reply_markup=markup
        )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=ops.id, message_id=sent.message_id, reply_markup=markup
        )
    edited = await bot.edit_message_reply_markup(chat_id=ops.id, message_id=sent.message_id)
    assert isinstance(edited, Message) and edited.reply_markup is None and edited.edit_date

    await bot.send_message(ops.id, "x" * 4096)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(ops.id, "x" * 4097)
    # The limit applies to the text after HTML is parsed, not to the markup.
    await bot.send_message(ops.id, "<b>" + "x" * 4090 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(ops.id, "<b>unbalanced", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(ops.id, "a <notatag> b", parse_mode="HTML")
    emoji = await bot.send_message(ops.id, "🚀 <i>ok</i> &lt;3", parse_mode="HTML")
    assert emoji.text == "🚀 ok <3"
    assert emoji.entities is not None and emoji.entities[0].offset == 3  # UTF-16 units
    too_big = InlineKeyboardButton(text="x", callback_data="x" * 65)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(
            ops.id, "?", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[too_big]])
        )


async def test_long_polling_with_offset_and_limit(sim: TelegramSim, bot: Bot) -> None:
    user = sim.add_user("Ada")
    assert await bot.get_updates(timeout=0) == []
    waiting = asyncio.create_task(bot.get_updates(timeout=10))
    await sim.wait_until(lambda: sim.polling or None)
    sim.send_text(user.id, user, "/start tok_abc")
    first = await waiting
    assert [u.message.text for u in first if u.message] == ["/start tok_abc"]
    again = await bot.get_updates(timeout=0)  # not confirmed yet: delivered again
    assert [u.update_id for u in again] == [first[0].update_id]
    assert await bot.get_updates(offset=first[0].update_id + 1, timeout=0) == []

    for n in range(3):
        sim.send_text(user.id, user, f"message {n}")
    page = await bot.get_updates(limit=2)
    assert len(page) == 2
    rest = await bot.get_updates(offset=page[-1].update_id + 1)
    assert [u.message.text for u in rest if u.message] == ["message 2"]


async def test_two_pollers_get_409(sim: TelegramSim, bot: Bot) -> None:
    other = make_bot(sim)
    try:
        # Raw: the waiting request is the one Telegram terminates.
        waiting = asyncio.create_task(bot.get_updates(timeout=10))
        await sim.wait_until(lambda: sim.polling or None)
        assert await other.get_updates(timeout=0) == []
        with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
            await waiting
        # A dispatcher polls again after its 409, which terminates the raw poller's request.
        async with polling(bot, ops_router()):
            await sim.wait_until(lambda: sim.polling or None)
            with pytest.raises(TelegramConflictError):
                await other.get_updates(timeout=10)
        assert sim.conflicts >= 2
    finally:
        await other.session.close()


async def test_documents_commands_chats_and_members(sim: TelegramSim, bot: Bot) -> None:
    admin = sim.add_user("Ada", username="ada")
    ops = sim.add_group("Ops", admins=[admin], username="oc_ops")
    sent = await bot.send_document(
        ops.id, BufferedInputFile(b'{"ok": true}', filename="backup.json"), caption="Backup"
    )
    assert sent.document is not None and sent.document.file_name == "backup.json"
    stored = sim.bot_messages(ops.id)[-1].document
    assert stored is not None and stored.content == b'{"ok": true}'
    assert stored.mime_type == "application/json"
    downloaded = await bot.download(sent.document.file_id)
    assert downloaded is not None and downloaded.read() == b'{"ok": true}'

    assert await bot.set_my_commands([BotCommand(command="status", description="Status")])
    assert [c.command for c in await bot.get_my_commands()] == ["status"]
    assert (await bot.get_chat("@oc_ops")).id == ops.id
    member = await bot.get_chat_member(ops.id, admin.id)
    assert member.status == "administrator"
    assert (await bot.get_chat_member(ops.id, bot.id)).status == "member"

    assert await bot.delete_message(ops.id, sent.message_id)
    assert sim.transcript(ops.id)[-1].deleted
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ops.id, sent.message_id)
    assert await bot.leave_chat(ops.id)
    with pytest.raises(TelegramForbiddenError, match="bot is not a member"):
        await bot.send_message(ops.id, "still here?")


async def test_tokens_methods_and_injected_server_errors(sim: TelegramSim, bot: Bot) -> None:
    stranger = make_bot(sim, token="999:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await stranger.session.close()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}/bot{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        ops = sim.add_group("Ops")
        markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
        body = {"chat_id": ops.id, "text": "json body", "reply_markup": markup}
        async with http.post(f"{sim.url}/bot{TOKEN}/sendMessage", json=body) as resp:
            assert (await resp.json())["result"]["reply_markup"] == markup

    sim.fail_next("sendMessage", 2, error_code=502, description="Bad Gateway")
    for _ in range(2):
        with pytest.raises(TelegramServerError, match="Bad Gateway"):
            await bot.send_message(ops.id, "deploy")
    await bot.send_message(ops.id, "deploy")

    assert await bot.get_me() == await bot.me()
    assert (await bot.get_me()).username == BOT_NAME


async def test_privacy_mode_and_webhook_delivery(sim: TelegramSim, bot: Bot) -> None:
    member = sim.add_user("Ada")
    ops = sim.add_group("Ops", members=[member])
    sim.send_text(ops.id, member, "chatter the bot does not see")
    asked = await bot.send_message(ops.id, "Which instance?")
    sim.send_text(ops.id, member, "inst_x", reply_to=asked.message_id)
    updates = await bot.get_updates()
    assert [u.message.text for u in updates if u.message] == ["inst_x"]
    assert updates[0].message and updates[0].message.reply_to_message
    await bot.get_updates(offset=updates[-1].update_id + 1)

    received: list[tuple[dict[str, object], str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/tg", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
        assert await bot.set_webhook(url, secret_token="s3cret")
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        sim.send_command(ops.id, member, "status")
        await sim.wait_until(lambda: received or None)
        update, secret = received[0]
        assert secret == "s3cret" and "/status" in str(update)
        assert await bot.delete_webhook(drop_pending_updates=True)
    finally:
        await runner.cleanup()


async def test_http_control_api(sim: TelegramSim, bot: Bot) -> None:
    async with aiohttp.ClientSession(base_url=sim.url) as http:
        user = await (await http.post("/_sim/users", json={"first_name": "Ada", "id": 42})).json()
        chat = await (await http.post("/_sim/chats", json={"title": "Ops", "admins": [42]})).json()
        sent = await http.post(
            f"/_sim/chats/{chat['id']}/messages", json={"user_id": 42, "text": "/destroy inst_x"}
        )
        assert (await sent.json())["entities"][0]["type"] == "bot_command"
        async with polling(bot, ops_router()):
            nxt = await (
                await http.get(f"/_sim/chats/{chat['id']}/next_bot_message?timeout=5")
            ).json()
            assert nxt["text"] == "Destroy inst_x?" and nxt["from_bot"]
            press = await http.post(
                f"/_sim/chats/{chat['id']}/messages/{nxt['message_id']}/press",
                json={"user_id": user["id"], "text": "Destroy"},
            )
            query_id = (await press.json())["callback_query_id"]
            await sim.wait_callback_answer(query_id)
            await sim.wait_until(lambda: sim.message(chat["id"], nxt["message_id"]).edits or None)
        transcript = await (await http.get(f"/_sim/chats/{chat['id']}/transcript")).json()
        assert [m["from_bot"] for m in transcript] == [False, True]
        faults = await http.post(f"/_sim/chats/{chat['id']}/faults", json={"kicked": True})
        assert faults.status == 200
        missing = await http.get("/_sim/chats/1/transcript")
        assert missing.status == 400


async def test_stop_releases_a_pending_long_poll(sim: TelegramSim, bot: Bot) -> None:
    waiting = asyncio.create_task(bot.get_updates(timeout=30))
    await sim.wait_until(lambda: sim.polling or None)
    await sim.stop()
    assert await waiting == []
