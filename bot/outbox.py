"""The outbox sender: every `notifications` row delivered, in order, within Telegram's limits.

Each recipient (the ops group, each customer) has its own queue, oldest first; a message
waits behind its recipient's older ones, so order holds per recipient while one slow
chat never holds up another. Transient trouble (429, 5xx, network, SMTP) only delays a
row with a capped backoff, so after an outage everything still goes, in order. A chat
that is gone for good (bot kicked or blocked, chat not found) is left, and email takes
over: `ALERT_EMAIL` for the operators, the customer's own address for a customer.
A burst of ops alerts is folded into one digest that stands for each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiosqlite
from aiogram import Bot

from bot.channels import Migrated, Outcome, Rejected, RetryLater, Sent, Unreachable
from bot.channels.email import Email, EmailChannel
from bot.channels.telegram import TelegramChannel, split_html
from bot.context import BotContext
from bot.messages import Alert, Rendered, render_customer, render_digest, render_ops
from bot.ops_chat import ops_chat_id, set_ops_chat_id
from bot.outbox_store import OutboxStore, backoff_s
from bot.pacing import Pacer
from core.clock import from_iso
from core.journal import notify_ops
from core.redaction import redact
from core.settings import secret_values

log = logging.getLogger(__name__)

ACTOR = "outbox"
OPS = "ops"
DIGEST_MIN = 3  # this many ops alerts waiting at once are folded into one digest
DIGEST_MAX = 500
# After a digest the ops chat rests this long, so a storm reads as a few digests.
DIGEST_GAP_S = 30.0
PROBE_EVERY = timedelta(minutes=10)  # how often an unreachable ops chat is tried again
MIN_PASS_S = 0.1  # never re-read the outbox faster than this, whatever is due
IDLE_S = 5.0  # rows written without a wake() are still picked up this soon


@dataclass(frozen=True)
class Paced:
    """Our own wait (a chat's flood limit, Telegram unreachable): not the message's fault."""

    seconds: float
    reason: str


@dataclass
class Job:
    """Rows being delivered as one message; its rendering and the parts already sent are
    kept across passes, so a long message resumes where it stopped and a setup message
    does not mint a new login link each retry."""

    ids: list[int]
    rendered: Rendered
    parts: list[str] = field(default_factory=list)
    sent_parts: int = 0
    chat_id: int | None = None


def recipient_key(row: aiosqlite.Row) -> str:
    return OPS if row["recipient"] == OPS else f"customer:{row['customer_id']}"


class OutboxSender:
    def __init__(
        self,
        ctx: BotContext,
        bot: Bot,
        *,
        email: EmailChannel | None,
        digest_min: int = DIGEST_MIN,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.db = ctx.core.db
        self.clock = ctx.core.clock
        self.telegram = TelegramChannel(bot)
        self.email = email
        self.digest_min = digest_min
        self.store = OutboxStore(self.db, self.clock)
        self.pacer = Pacer(self.clock)
        self._secrets = secret_values(ctx.settings)
        self._jobs: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._delivered = 0
        self._tg_failures = 0
        self._tg_paused_until: datetime | None = None
        self._said: set[str] = set()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next idle tick."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; a failing pass is logged and the loop goes on."""
        while True:
            self._wake.clear()
            delay = 1.0
            try:
                await self.send_due()
                due_in = await self.next_due_in()
                delay = IDLE_S if due_in is None else min(max(due_in, MIN_PASS_S), IDLE_S)
            except Exception:
                log.exception("outbox pass failed")
            sleeper = asyncio.ensure_future(self.clock.sleep(delay))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def next_due_in(self) -> float | None:
        """Seconds until some message may go (0 when one is due), None when none waits."""
        at = await self.store.first_due_at()
        if at is None:
            return None
        return max(0.0, (at - self.clock.now()).total_seconds())

    async def send_due(self) -> int:
        """One pass over what is due; returns how many notifications were delivered."""
        before = self._delivered
        queues: dict[str, list[aiosqlite.Row]] = {}
        for row in await self.store.pending():
            queues.setdefault(recipient_key(row), []).append(row)
        now = self.clock.now()
        for key, queue in queues.items():
            if from_iso(queue[0]["next_attempt_at"]) > now:
                continue  # its oldest waits, so all of it waits: order per recipient
            try:
                if key == OPS:
                    await self._ops(queue)
                else:
                    await self._customer(key, queue)
            except Exception as error:
                log.exception("outbox: delivering to %s failed", key)
                self._jobs.pop(key, None)
                await self.store.later([queue[0]["id"]], f"internal: {error!r}"[:200], seconds=None)
        return self._delivered - before

    # -- the operators ------------------------------------------------------------------

    async def _ops(self, queue: list[aiosqlite.Row]) -> None:
        while queue:
            job = self._jobs.get(OPS)
            if job is None or job.sent_parts == 0:  # unsent: fold in what arrived meanwhile
                job = self._ops_job(queue)
                self._jobs[OPS] = job
            if not await self._deliver_ops(job):
                return
            self._jobs.pop(OPS, None)
            done = set(job.ids)
            queue = [row for row in queue if row["id"] not in done]

    def _ops_job(self, queue: list[aiosqlite.Row]) -> Job:
        batch = queue[:DIGEST_MAX] if len(queue) >= self.digest_min else queue[:1]
        alerts = [Alert(r["kind"], r["body"] or "", r["instance_id"]) for r in batch]
        rendered = render_digest(alerts) if len(alerts) > 1 else render_ops(alerts[0])
        secrets = self._secrets
        clean = Rendered(
            subject=redact(rendered.subject, secrets),
            telegram=redact(rendered.telegram, secrets),
            text=redact(rendered.text, secrets),
            html=redact(rendered.html, secrets),
        )
        return Job([r["id"] for r in batch], clean)

    async def _deliver_ops(self, job: Job) -> bool:
        """True when the job is finished (delivered or refused), False when it waits."""
        chat_id = await ops_chat_id(self.db, self.settings)
        gone = await self.store.ops_gone()
        if gone is not None and gone.get("chat_id") != chat_id:
            gone = None  # recorded for an id the group no longer has
        reason = str(gone["reason"]) if gone is not None else ""
        since = from_iso(str(gone["since"])) if gone is not None else None
        if since is None or self.clock.now() - since >= PROBE_EVERY:
            outcome = await self._telegram(OPS, job, chat_id)
            if isinstance(outcome, Migrated):
                log.warning("ops chat %s migrated to %s; sending there", chat_id, outcome.chat_id)
                await set_ops_chat_id(self.db, outcome.chat_id)
                chat_id = outcome.chat_id
                outcome = await self._telegram(OPS, job, chat_id)
            if isinstance(outcome, Sent):
                if len(job.ids) > 1:
                    self.pacer.hold(chat_id, DIGEST_GAP_S)
                if gone is not None:
                    log.warning("ops chat %s reachable again", chat_id)
                    await self.store.set_ops_gone(None)
                await self._sent(job)
                return True
            if isinstance(outcome, Unreachable):
                log.error(
                    "ops chat %s unreachable (%s): alerts go by email", chat_id, outcome.reason
                )
                await self.store.set_ops_gone(chat_id, outcome.reason)
                reason = outcome.reason
            elif isinstance(outcome, Rejected):
                log.error("ops message refused by Telegram: %s", outcome.reason)
                await self.store.failed(job.ids, outcome.reason)
                return True
            else:
                await self._later(job, outcome)
                return False
        return await self._email_ops(job, reason)

    async def _email_ops(self, job: Job, reason: str) -> bool:
        to = self.settings.alert_email
        if self.email is None or not to:
            self._say_once("ops-no-email", "ops chat unreachable and no SMTP_URL/ALERT_EMAIL")
            await self.store.later(
                job.ids, f"ops chat unreachable ({reason}); no email", seconds=None
            )
            return False
        note = (
            f"This came by email because the bot cannot post in the ops group ({reason}). "
            "Add the bot back to the group; alerts return there within 10 minutes."
        )
        r = job.rendered
        email = Email(to, r.subject, f"{r.text}\n\n-- \n{note}\n", r.html.replace(
            "</body>", f"<hr><p><small>{note}</small></p></body>"
        ))  # fmt: skip
        outcome = await self.email.send(email)
        if isinstance(outcome, Sent):
            await self._sent(job, note="by email: ops chat unreachable")
            return True
        # Alerts are never dropped: a refused ALERT_EMAIL is a setting to fix, so wait.
        if not isinstance(outcome, RetryLater):
            self._say_once(f"ops-email-{type(outcome).__name__}", f"ALERT_EMAIL refused: {outcome}")
        await self.store.later(job.ids, f"email: {outcome}", seconds=None)
        return False

    # -- customers ----------------------------------------------------------------------

    async def _customer(self, key: str, queue: list[aiosqlite.Row]) -> None:
        for row in queue:
            if not await self._customer_row(key, row):
                return

    async def _customer_row(self, key: str, row: aiosqlite.Row) -> bool:
        customer = await self.store.customer(row["customer_id"])
        if customer is None:
            await self.store.failed([row["id"]], "no such customer")
            return True
        chat_id = customer["telegram_chat_id"]
        if chat_id is not None:
            job = self._jobs.get(key)
            if job is None or job.ids != [row["id"]] or job.chat_id != chat_id:
                rendered = await render_customer(self.ctx, row, customer, by_email=False)
                job = self._jobs[key] = Job([row["id"]], rendered, chat_id=chat_id)
            outcome = await self._telegram(key, job, chat_id)
            if isinstance(outcome, Migrated):  # private chats do not migrate, but be safe
                await self.store.set_customer_chat(customer["id"], outcome.chat_id, ACTOR)
                job.chat_id = outcome.chat_id
                outcome = await self._telegram(key, job, outcome.chat_id)
            if isinstance(outcome, Sent):
                await self._sent(job)
                return True
            if isinstance(outcome, Rejected):
                log.error("customer message %s refused by Telegram: %s", row["id"], outcome.reason)
                await self._failed(job, outcome.reason)
                return True
            if not isinstance(outcome, Unreachable):
                await self._later(job, outcome)
                return False
            log.warning("customer %s: Telegram chat gone (%s)", customer["id"], outcome.reason)
            self._jobs.pop(key, None)
            await self.store.set_customer_chat(customer["id"], None, ACTOR)
            customer = await self.store.customer(row["customer_id"]) or customer
        return await self._email_customer(row, customer)

    async def _email_customer(self, row: aiosqlite.Row, customer: aiosqlite.Row) -> bool:
        if self.email is None or not customer["email"]:
            if self.email is None:
                self._say_once("no-smtp", "SMTP_URL is not set: customers without Telegram wait")
            why = "no bound Telegram chat and " + ("no email yet" if self.email else "no SMTP_URL")
            await self.store.later([row["id"]], why, seconds=None)
            return False
        rendered = await render_customer(self.ctx, row, customer, by_email=True)
        outcome = await self.email.send(
            Email(customer["email"], rendered.subject, rendered.text, rendered.html)
        )
        if isinstance(outcome, Sent):
            await self.store.sent([row["id"]], note="by email")
            self._delivered += 1
            return True
        if isinstance(outcome, RetryLater):
            await self.store.later([row["id"]], f"email: {outcome.reason}", seconds=None)
            return False
        reason = getattr(outcome, "reason", str(outcome))
        await self.store.failed([row["id"]], f"email: {reason}")
        async with self.db.transaction() as conn:
            await notify_ops(
                conn, self.clock.now(), "customer_unreachable",
                f"customer {customer['id']}: no Telegram chat and their email was refused "
                f"({reason}); the {row['kind']} message was not delivered",
                customer_id=customer["id"], instance_id=row["instance_id"],
            )  # fmt: skip
        return True

    # -- Telegram, paced ----------------------------------------------------------------

    async def _telegram(self, key: str, job: Job, chat_id: int) -> Outcome | Paced:
        """Send the parts not yet sent; stop at the first that cannot go now."""
        if not job.parts:
            job.parts = split_html(job.rendered.telegram)
        while job.sent_parts < len(job.parts):
            now = self.clock.now()
            if self._tg_paused_until is not None and now < self._tg_paused_until:
                wait = (self._tg_paused_until - now).total_seconds()
                return Paced(wait, "Telegram unreachable; waiting")
            if (wait := self.pacer.wait_s(chat_id)) > 0:
                return Paced(wait, "pacing for Telegram's flood limits")
            outcome = await self.telegram.send(chat_id, job.parts[job.sent_parts])
            if not isinstance(outcome, Sent):
                if isinstance(outcome, RetryLater):
                    self._telegram_trouble(chat_id, outcome)
                return outcome
            self.pacer.sent(chat_id)
            job.sent_parts += 1
            if self._tg_failures:
                log.warning("Telegram reachable again")
            self._tg_failures, self._tg_paused_until = 0, None
        return Sent()

    def _telegram_trouble(self, chat_id: int, outcome: RetryLater) -> None:
        if outcome.seconds is not None:  # 429: this chat only, for as long as Telegram says
            self.pacer.hold(chat_id, outcome.seconds)
            return
        # 5xx or network: Telegram as a whole is in trouble, so the rest of the pass waits too.
        self._tg_failures += 1
        pause = timedelta(seconds=backoff_s(self._tg_failures))
        self._tg_paused_until = self.clock.now() + pause
        if self._tg_failures == 1:  # once per outage, not once per message
            log.warning("Telegram unreachable (%s): messages wait", outcome.reason)

    # -- bookkeeping --------------------------------------------------------------------

    async def _sent(self, job: Job, note: str | None = None) -> None:
        await self.store.sent(job.ids, note=note)
        self._delivered += len(job.ids)
        self._forget(job)

    async def _failed(self, job: Job, reason: str) -> None:
        await self.store.failed(job.ids, reason)
        self._forget(job)

    def _forget(self, job: Job) -> None:
        self._jobs = {key: kept for key, kept in self._jobs.items() if kept is not job}

    async def _later(self, job: Job, outcome: Outcome | Paced) -> None:
        if isinstance(outcome, Paced):
            await self.store.later(job.ids, outcome.reason, seconds=outcome.seconds, counts=False)
        elif isinstance(outcome, RetryLater):
            await self.store.later(job.ids, outcome.reason, seconds=outcome.seconds)
        else:
            await self.store.later(job.ids, f"unexpected: {outcome}", seconds=None)

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.error("outbox: %s", message)
