"""The reconciler: level-triggered, like a Kubernetes controller.

For each instance it compares the desired state with the actual one, runs pending
operations once, and takes the next idempotent step, persisting each outcome before
the next step starts. A crash, a duplicate webhook or an out-of-order event only
means the loop runs again and converges.

The step policy (DESIGN.md): a transient failure is retried 3 more times after about
30 s, 2 min and 8 min, then the instance is `failed` and the operators alerted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import aiosqlite

from core.clock import from_iso, to_iso
from core.models import DesiredState, OperationKind, OperationState, Status
from provisioner import operations, provisioning, transitions
from provisioner.hetzner import ErrorKind, HetznerError
from provisioner.infra import Infra
from provisioner.outcomes import Fail, Next, Outcome, Retry, Wait
from provisioner.rollout import RolloutDriver
from provisioner.ssh import HostKeyMismatch, SshError

log = logging.getLogger(__name__)

Work = Callable[[Infra, aiosqlite.Row], Awaitable[Outcome]]

# Instances with something to do: the work-finding query's cheap first cut.
_CANDIDATES = """
SELECT id FROM instances i WHERE ((i.next_attempt_at IS NULL OR i.next_attempt_at <= ?) AND (
    (i.desired_state = 'active' AND i.status IN ('provisioning', 'suspended'))
 OR (i.desired_state = 'suspended' AND i.status IN ('provisioning', 'active', 'failed'))
 OR (i.desired_state = 'destroyed' AND i.status != 'destroyed')))
 OR EXISTS (SELECT 1 FROM operations o WHERE o.instance_id = i.id
            AND o.state IN ('pending', 'running'))
ORDER BY i.created_at
"""


def _classify(exc: Exception) -> Outcome:
    """One place turns errors into outcomes: transient → Retry, the rest → Wait or Fail."""
    if isinstance(exc, HetznerError):
        if exc.kind is ErrorKind.PROJECT_LIMIT:
            return Wait(provisioning.LIMIT_WAIT_S, f"project server limit: {exc}")
        if exc.kind in (ErrorKind.TRANSIENT, ErrorKind.CAPACITY):
            return Retry(str(exc))
        return Fail(str(exc))
    if isinstance(exc, HostKeyMismatch):
        return Fail(f"host key mismatch, not connecting: {exc}")
    if isinstance(exc, SshError | OSError | TimeoutError):
        return Retry(f"{type(exc).__name__}: {exc}")
    return Retry(f"unexpected {type(exc).__name__}: {exc}")


class Reconciler:
    def __init__(self, infra: Infra, *, tick_s: float = 5.0) -> None:
        self.infra = infra
        self.records = infra.records
        self.tick_s = tick_s
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(infra.config.concurrency)
        self._alerted_waits: set[tuple[str, str]] = set()
        # Fleet upgrades: the open rollout is moved on at each pass, before the instances.
        self.rollouts = RolloutDriver(infra, self.wake)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Forever: start work for every instance that needs it, then wait for a wake-up."""
        while True:
            self._wake.clear()  # before the pass: a wake during it means look again
            timeout = self.tick_s
            try:
                due = await self.rollouts.tick()
                if due is not None:
                    timeout = min(timeout, due)
            except Exception:
                log.exception("rollout pass failed; trying again")
            try:
                await self.reconcile_all()
            except Exception:
                log.exception("reconcile pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def reconcile_all(self) -> int:
        """Start a task for each instance with work and none running; returns how many."""
        now = to_iso(self.infra.clock.now())
        started = 0
        for row in await self.infra.db.fetch_all(_CANDIDATES, (now,)):
            instance_id = row["id"]
            if instance_id in self._running:
                continue
            task = asyncio.create_task(self._guarded(instance_id), name=f"reconcile {instance_id}")
            self._running[instance_id] = task
            task.add_done_callback(self._forget)
            started += 1
        return started

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._running.items()):
            if running is task:
                del self._running[key]

    async def settle(self) -> None:
        """Run until nothing is left to start or running (tests and the demo use this)."""
        while await self.reconcile_all() or self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def _guarded(self, instance_id: str) -> None:
        async with self._slots:
            try:
                await self.reconcile(instance_id)
            except Exception:
                log.exception("reconcile crashed", extra={"instance_id": instance_id})

    async def reconcile(self, instance_id: str) -> None:
        """Take steps for one instance until it converges, waits, or fails."""
        while True:
            instance = await self.records.load(instance_id)
            # An admin's operation does not wait for a backoff (it is how they intervene).
            operation = await self.records.next_operation(instance_id)
            if operation is not None and self._operation_first(instance, operation):
                await self._run_operation(instance, operation)
                continue
            due = instance["next_attempt_at"]
            if due and from_iso(due) > self.infra.clock.now():
                return
            work = self._work(instance)
            if work is None:
                return
            name, step = work
            try:
                outcome = await step(self.infra, instance)
            except Exception as exc:
                outcome = _classify(exc)
            if not await self._apply(instance, name, outcome):
                return

    @staticmethod
    def _operation_first(instance: aiosqlite.Row, operation: aiosqlite.Row) -> bool:
        """Operations wait while the instance is on its way somewhere, except those that
        are how an admin gets it out of `failed`."""
        if instance["desired_state"] == DesiredState.DESTROYED:
            return True  # they will be canceled
        kind = operation["kind"]
        if instance["status"] == Status.FAILED:
            return kind in (OperationKind.RETRY, OperationKind.REPROVISION) or (
                instance["desired_state"] == DesiredState.ACTIVE
            )
        return instance["status"] in (Status.ACTIVE, Status.SUSPENDED)

    def _work(self, instance: aiosqlite.Row) -> tuple[str, Work] | None:
        desired, status = instance["desired_state"], instance["status"]
        if desired == DesiredState.DESTROYED and status != Status.DESTROYED:
            return "destroy", transitions.destroy
        if desired == DesiredState.SUSPENDED and status in (
            Status.PROVISIONING,
            Status.ACTIVE,
            Status.FAILED,
        ):
            return "suspend", transitions.suspend
        if desired == DesiredState.ACTIVE and status == Status.SUSPENDED:
            return "resume", transitions.resume
        if desired == DesiredState.ACTIVE and status == Status.PROVISIONING:
            step = instance["step"] or provisioning.FIRST_STEP
            return step, provisioning.STEPS[step]
        return None

    async def _apply(self, instance: aiosqlite.Row, step: str, outcome: Outcome) -> bool:
        """Persist an outcome; True when the next step may start right away."""
        instance_id = instance["id"]
        now = self.infra.clock.now()
        if isinstance(outcome, Next):
            if outcome.step is not None:
                await self.records.save(
                    instance_id,
                    step=outcome.step,
                    attempts=0,
                    next_attempt_at=None,
                    last_error=None,
                )
            self._alerted_waits.discard((instance_id, step))
            log.info("step %s done", step, extra={"instance_id": instance_id})
            return True
        if isinstance(outcome, Wait):
            await self.records.save(
                instance_id,
                next_attempt_at=to_iso(now + timedelta(seconds=outcome.after_s)),
                last_error=outcome.reason,
            )
            if (instance_id, step) not in self._alerted_waits:
                self._alerted_waits.add((instance_id, step))
                await self.records.alert(
                    instance_id,
                    "instance_waiting",
                    f"{instance_id} waits at {step}: {outcome.reason}",
                )
            return False
        if isinstance(outcome, Retry):
            attempts = instance["attempts"] + 1
            backoff = self.infra.config.step_backoff_s
            await self.records.append_log(instance_id, f"{step}: {outcome.error}")
            if attempts > len(backoff):
                await self.records.fail(instance_id, step, outcome.error, look_again_s=backoff[-1])
                return False
            retry_at = now + timedelta(seconds=backoff[attempts - 1])
            await self.records.save(
                instance_id,
                attempts=attempts,
                last_error=outcome.error,
                next_attempt_at=to_iso(retry_at),
            )
            log.warning(
                "step %s attempt %d: %s",
                step,
                attempts,
                outcome.error,
                extra={"instance_id": instance_id},
            )
            return False
        await self.records.append_log(instance_id, f"{step}: {outcome.error}")
        look_again = self.infra.config.step_backoff_s[-1]
        await self.records.fail(instance_id, step, outcome.error, look_again_s=look_again)
        return False

    async def _run_operation(self, instance: aiosqlite.Row, operation: aiosqlite.Row) -> None:
        kind = OperationKind(operation["kind"])
        await self.records.start_operation(operation["id"])
        if instance["desired_state"] == DesiredState.DESTROYED:
            state, result = OperationState.CANCELED, "the instance is being destroyed"
        else:
            try:
                state, result = await operations.run_operation(self.infra, instance, operation)
            except Exception as exc:
                state, result = OperationState.FAILED, f"{type(exc).__name__}: {exc}"
        await self.records.finish_operation(operation, state, result)
        if kind is OperationKind.UPGRADE:
            self.wake()  # the rollout waiting for it moves on now, not at the next tick
        log.info(
            "operation %s %s: %s",
            kind.value,
            state.value,
            result,
            extra={"instance_id": instance["id"], "operation_id": operation["id"]},
        )
