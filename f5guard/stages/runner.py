"""Runs one stage: its attempts, restarts of a long-running stage, and the outcome in its state record.

Circus's levels, typed: the supervisor owns runs, a run owns stage runners, a stage runner owns attempts. All
record changes happen on the control thread; attempt threads only wake it.
"""

from __future__ import annotations

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
from f5guard.stages.restart import RestartTracker
from f5guard.stages.stackpython import ensure_pythonpath, stack_env
from f5guard.stages.stagelog import StageLog
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
        self.tracker = RestartTracker(self.stage.restart)
        self.attempt: Attempt | None = None
        self.restart_at: float | None = None
        self.stopping = False
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
        r.state, r.fingerprint, r.reason = StageStatus.RUNNING, None, self.decision.why
        r.started_at, r.finished_at, r.duration_s = time.time(), None, None
        r.restarts, r.last_exit, r.last_failure, r.last_lines = 0, None, None, []
        r.boot_id = self.ctx.boot_id
        r.items_done = r.items_total = r.items_eta_s = None
        self.items_path.unlink(missing_ok=True)  # this run's items only
        self.log.info("stage starting", why=self.decision.why)
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
        if self.attempt is not None and self.attempt.running:
            reason = self.driver.poll(self, now)
            dirty, self._dirty = self._dirty, False
            if reason is not None:
                self.log.warning("killing attempt", reason=reason)
                self.stage_log.note(f"killing attempt: {reason}")
                attempt = self.attempt
                attempt.stop(self.stage.stop_grace_s, leader_only=self.stage.long_running)
                self._after_exit(attempt.exit or ExitInfo(-9), attempt.uptime_s, override=reason)
                return True
            return dirty
        if self.attempt is not None and self.attempt.exit is not None:
            self._after_exit(self.attempt.exit, self.attempt.uptime_s)
            return True
        if self.restart_at is not None and now >= self.restart_at:
            self._spawn()
            return True
        return False

    def next_wakeup(self) -> float | None:
        return self.restart_at

    def _after_exit(self, exit: ExitInfo, uptime_s: float, override: str | None = None) -> None:
        self.attempt = None
        r = self.record
        r.pid = r.pid_started = None
        r.last_exit = override or exit.describe()
        self.driver.follow_items(self, time.monotonic())  # the last report lands just before the exit
        self.driver.after_exit(self, exit)
        self.stage_log.note(f"attempt {r.attempts} ended: {r.last_exit}")
        if self.stopping:
            self._finish(StageStatus.INTERRUPTED, "stopped before it finished")
        elif exit.ok and override is None:
            self._succeed()
        elif not self.stage.long_running:
            self._fail(StageStatus.FAILED, r.last_exit)
        else:
            self._maybe_restart(exit, uptime_s, r.last_exit)

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

    def _maybe_restart(self, exit: ExitInfo, uptime_s: float, described: str) -> None:
        fatal = self.driver.fatal_reason(self, exit)
        if fatal is not None:
            self._fail(StageStatus.FATAL, fatal)
            return
        verdict = self.tracker.on_failure(uptime_s, time.monotonic(), progressed=self.driver.progressed(self))
        if not verdict.restart:
            self._fail(StageStatus.FATAL, f"{described}; {verdict.reason}")
            return
        self.record.restarts += 1
        self.record.last_failure = described
        self.log.warning("attempt failed; restarting", exit=described, restart=verdict.reason)
        self.stage_log.note(f"restarting: {verdict.reason}")
        if verdict.delay_s <= 0:
            self._spawn()  # in this very pass: state is saved after the new trainer already runs
            return
        self.restart_at = time.monotonic() + verdict.delay_s
        self.record.restart_at = time.time() + verdict.delay_s  # status: "restarting in N s", not "running"
        self.ctx.wake.set()

    def _fail(self, state: StageStatus, reason: str) -> None:
        self.record.last_lines = list(self.stage_log.last_lines)[-FAILURE_LINES:]
        self._finish(state, reason)
        self.log.error(f"stage {state.value}", reason=reason, last_lines=self.record.last_lines)

    def _finish(self, state: StageStatus, reason: str | None) -> None:
        r = self.record
        r.state, r.reason, r.pid = state, reason, None
        r.finished_at = time.time()
        r.duration_s = round(r.finished_at - (r.started_at or r.finished_at), 3)
        self.driver.close(self)
        self.stage_log.close()
        if self.stage_log.error:  # a full work disk: the log is incomplete, the daemon goes on
            self.log.warning("stage log incomplete", error=self.stage_log.error)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop for good (daemon stop, reset, lost lease): INTERRUPTED, reruns on the next pass."""
        self.stopping = True
        if self.attempt is not None:
            attempt = self.attempt
            attempt.stop(self.stage.stop_grace_s if grace_s is None else grace_s, leader_only=self.stage.long_running)
            self._after_exit(attempt.exit or ExitInfo(-9, stopped=True), attempt.uptime_s)
        elif not self.finished:
            self._finish(StageStatus.INTERRUPTED, "stopped before it finished")
