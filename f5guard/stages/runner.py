"""Runs one stage: its attempts, restarts of a long-running stage, and the outcome in its state record.

Circus's levels, typed: the supervisor owns runs, a run owns stage runners, a stage runner owns attempts. All
record changes happen on the control thread; attempt threads only wake it. Nothing here waits: killing a hung
attempt, stopping one and the kind's wrap-up (a final sync) run on threads or in other processes, and each
control pass looks whether they are done. After an attempt ends, one function judges what happens next
(stages/verdict.py); this runner applies its verdict.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from f5guard.errors import F5guardError
from f5guard.itemprogress import ENV as ITEMS_ENV
from f5guard.schema import RunConfig, StageConfig
from f5guard.stages.attempt import Attempt
from f5guard.stages.context import RunContext
from f5guard.stages.driver import StageDriver
from f5guard.stages.exits import ExitInfo
from f5guard.stages.fingerprint import check_outputs, record_outputs
from f5guard.stages.plan import Decision
from f5guard.stages.stackpython import ensure_pythonpath, stack_env
from f5guard.stages.stagelog import StageLog
from f5guard.stages.verdict import (
    ChangePrecision,
    ExitFacts,
    Failed,
    Fatal,
    Finished,
    HalveBatch,
    History,
    Restart,
    Stopped,
    Verdict,
    judge,
)
from f5guard.state import RunRecord, StageRecord, StageStatus

FAILURE_LINES = 12


class StageRunner:
    """One stage's execution in this daemon's life; ``finished`` once it reached a final state."""

    def __init__(
        self,
        run: RunConfig,
        decision: Decision,
        record: StageRecord,
        ctx: RunContext,
        run_record: RunRecord,
        driver: StageDriver,
    ) -> None:
        self.run = run
        self.run_record = run_record
        self._dirty = False
        self.stage: StageConfig = decision.stage
        self.decision = decision
        self.record = record
        self.ctx = ctx
        self.driver = driver
        self.history = History()
        self.attempt: Attempt | None = None
        self.restart_at: float | None = None
        self.stopping = False
        self.killing: str | None = None  # why f5guard is killing the running attempt (a hang)
        self.ending: Verdict | None = None  # judged; the kind's wrap-up runs before it takes effect
        self.log = ctx.log.bind(run=run.name, stage=self.stage.name)
        self.stage_log = StageLog(
            ctx.work.stage_log(run.name, self.stage.name),
            max_bytes=ctx.logs.max_bytes,
            backups=ctx.logs.backups,
            redactor=ctx.redactor,
            on_line=self.on_output_line,
        )

    @property
    def finished(self) -> bool:
        return self.record.state not in (StageStatus.RUNNING, StageStatus.PENDING)

    @property
    def items_path(self) -> Path:
        return self.ctx.work.stage_items(self.run.name, self.stage.name)

    def env(self) -> dict[str, str]:
        return stack_env(self._env(), self.stage.python)

    def _env(self) -> dict[str, str]:
        return {
            **self.ctx.base_env,
            **self.stage.env,
            "PYTHONUNBUFFERED": "1",
            "F5GUARD_RUN": self.run.name,
            "F5GUARD_STAGE": self.stage.name,
            "F5GUARD_HOME": str(self.ctx.home.root),
            "F5GUARD_WORK": str(self.ctx.work.root),
            ITEMS_ENV: str(self.items_path),
        }

    def on_output_line(self, line: str) -> None:
        """Every output line (and tqdm redraw), on the pump thread; drivers that parse progress see it."""
        self.driver.on_line(self, line)

    def mark_dirty(self) -> None:
        """The driver changed what status shows: the control loop saves state after this pass."""
        self._dirty = True

    def start(self) -> None:
        r = self.record
        r.move(StageStatus.RUNNING, self.decision.why)
        r.fingerprint = None
        r.restarts, r.last_exit, r.last_failure, r.last_lines = 0, None, None, []
        r.boot_id = self.ctx.boot_id
        r.items_done = r.items_total = r.items_eta_s = None
        self.items_path.unlink(missing_ok=True)  # this run's items only
        self.log.info("stage starting", why=self.decision.why)
        durable = self.driver.durable_update(self)
        self.history = History(durable_seen=durable if durable is not None else -1)
        self._spawn()

    def _spawn(self) -> None:
        self.restart_at = None
        self.record.restart_at = None
        try:
            wait = self.driver.before_attempt(self)
        except (F5guardError, OSError) as err:
            message = err.message if isinstance(err, F5guardError) else f"{err.strerror or err}"
            self._fail(StageStatus.FAILED, f"could not prepare the attempt: {message}")
            return
        if wait is not None:
            self.restart_at = time.monotonic() + wait
            return
        self.record.attempts += 1
        self.stage_log.note(f"attempt {self.record.attempts}: {' '.join(self.stage.command)}")
        try:
            if self.stage.python is not None and self.stage.python.pythonpath is not None:
                ensure_pythonpath(self.stage.python.pythonpath)  # the stack python's view of f5guard
            self.attempt = Attempt(
                self.stage.command,
                env=self.env(),
                cwd=self.stage.cwd,
                log=self.stage_log,
                on_exit=lambda _a: self.ctx.wake.set(),
                self_tied=self.stage.self_tied,
            )
        except OSError as err:
            self.attempt = None
            self._fail(StageStatus.FAILED, f"cannot start {self.stage.command[0]!r}: {err.strerror or err}")
            return
        self.record.pid, self.record.pid_started = self.attempt.pid, self.attempt.create_time
        self.log.info("attempt started", pid=self.attempt.pid, attempt=self.record.attempts)

    def poll(self, now: float) -> bool:
        """Advance on the control thread; True when the record changed."""
        if self.finished:
            return False
        if self.ending is not None:
            if not self.driver.wrapped(self):
                return self._take_dirty()
            verdict, self.ending = self.ending, None
            self._apply(verdict)
            return True
        attempt = self.attempt
        if attempt is not None and attempt.running:
            reason = self.driver.poll(self, now) if self.killing is None else None
            if reason is not None and not self.stopping:
                self._kill(attempt, reason)
            return self._take_dirty()
        if attempt is not None and attempt.exit is not None:
            self._ended(attempt, attempt.exit)
            return True
        if self.restart_at is not None and now >= self.restart_at and not self.stopping:
            self._spawn()
            return True
        return False

    def _take_dirty(self) -> bool:
        dirty, self._dirty = self._dirty, False
        return dirty

    def next_wakeup(self) -> float | None:
        return self.restart_at

    def _kill(self, attempt: Attempt, reason: str) -> None:
        """Kill a hung attempt from a thread of its own (stack dumps and the grace period take seconds); its
        exit is reaped like any other, and the judgment knows why it ended."""
        self.killing = reason
        self.log.warning("killing attempt", reason=reason)
        self.stage_log.note(f"killing attempt: {reason}")

        def kill() -> None:
            try:
                self.driver.before_kill(self, attempt)
            finally:
                attempt.stop(self.stage.stop_grace_s, leader_only=self.stage.long_running)
                self.ctx.wake.set()

        threading.Thread(target=kill, name=f"kill-{attempt.pid}", daemon=True).start()

    def _ended(self, attempt: Attempt, exit: ExitInfo) -> None:
        """Judge the ended attempt, then let the kind wrap up (polled) before the verdict takes effect."""
        self.attempt = None
        r = self.record
        r.pid = r.pid_started = None
        r.last_exit = self.killing or exit.describe()
        self.driver.follow_items(self, time.monotonic())  # the last report lands just before the exit
        self.stage_log.note(f"attempt {r.attempts} ended: {r.last_exit}")
        facts = ExitFacts(
            exit=exit,
            uptime_s=attempt.uptime_s,
            now=time.monotonic(),
            long_running=self.stage.long_running,
            stopping=self.stopping,
            killed_for=self.killing,
            lines=tuple(self.stage_log.last_lines),
        )
        self.killing = None
        verdict, self.history = judge(self.driver.facts(self, facts), self.history, self.stage.restart)
        doing = self.driver.wrap_up(self, verdict)
        if doing is None:
            self._apply(verdict)
            return
        self.ending = verdict
        r.reason = doing  # status: "finishing: ..." while the stage is still running
        self.log.info("wrapping up", doing=doing, verdict=type(verdict).__name__)

    def _apply(self, verdict: Verdict) -> None:
        r = self.record
        if isinstance(verdict, Finished):
            self._succeed()
        elif isinstance(verdict, Stopped):
            self._finish(StageStatus.INTERRUPTED, "stopped before it finished")
        elif isinstance(verdict, Failed):
            self._fail(StageStatus.FAILED, verdict.reason)
        elif isinstance(verdict, Fatal):
            self._fail(StageStatus.FATAL, verdict.reason)
        elif isinstance(verdict, (HalveBatch, ChangePrecision)):
            if not self.driver.apply(self, verdict):
                self._fail(StageStatus.FATAL, f"{verdict.reason}; this stage kind cannot change its batch or precision")
                return
            self._restart(Restart(0.0, f"restart with what changed after {verdict.reason}", verdict.failure))
        else:
            self._restart(verdict)
        r.reason = r.reason if r.state is not StageStatus.RUNNING else self.decision.why

    def _restart(self, verdict: Restart) -> None:
        self.record.restarts += 1
        self.record.last_failure = verdict.failure.label
        self.log.warning("attempt failed; restarting", exit=self.record.last_exit, failure=verdict.failure.label,
                         restart=verdict.reason)  # fmt: skip
        self.stage_log.note(f"restarting: {verdict.reason}")
        if verdict.delay_s <= 0:
            self._spawn()  # in this very pass: state is saved after the new trainer already runs
            return
        self.restart_at = time.monotonic() + verdict.delay_s
        self.record.restart_at = time.time() + verdict.delay_s  # status: "restarting in N s", not "running"
        self.ctx.wake.set()

    def _succeed(self) -> None:
        problems = check_outputs(self.stage.outputs, {})
        if problems:
            self._fail(StageStatus.FAILED, "exited 0 but " + "; ".join(problems))
            return
        r = self.record
        r.outputs = record_outputs(self.stage.outputs)
        r.fingerprint = self.decision.fingerprint.digest
        r.fingerprint_parts = self.decision.fingerprint.parts
        self._finish(StageStatus.DONE, None)
        self.log.info("stage done", duration_s=r.duration_s)

    def _fail(self, state: StageStatus, reason: str) -> None:
        self.record.last_lines = list(self.stage_log.last_lines)[-FAILURE_LINES:]
        self._finish(state, reason)
        self.log.error(f"stage {state.value}", reason=reason, last_lines=self.record.last_lines)

    def _finish(self, state: StageStatus, reason: str | None) -> None:
        self.record.move(state, reason)
        self.driver.close(self)
        self.stage_log.close()
        if self.stage_log.error:  # a full work disk: the log is incomplete, the daemon goes on
            self.log.warning("stage log incomplete", error=self.stage_log.error)

    def request_stop(self, grace_s: float | None = None) -> None:
        """Stop for good (daemon stop, reset): SIGTERM now, SIGKILL after the grace period, from a thread; the
        control loop reaps the exit, the kind wraps up (a final sync), and the stage ends INTERRUPTED."""
        if self.stopping or self.finished:
            return
        self.stopping = True
        self.restart_at = self.record.restart_at = None
        attempt = self.attempt
        if attempt is None:
            if self.ending is None:
                self._finish(StageStatus.INTERRUPTED, "stopped before it finished")
            return
        grace = self.stage.stop_grace_s if grace_s is None else grace_s

        def stop() -> None:
            attempt.stop(grace, leader_only=self.stage.long_running)
            self.ctx.wake.set()

        threading.Thread(target=stop, name=f"stop-{attempt.pid}", daemon=True).start()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop for good and wait for it (a lost lease: the daemon exits right after)."""
        self.request_stop(grace_s)
        while not self.finished:
            self.poll(time.monotonic())
            if not self.finished:
                self.ctx.wake.wait(0.1)
                self.ctx.wake.clear()
