"""The supervisor: walks each run's stages in order, skipping what is up to date, one control pass at a time.

A pass reaps exited attempts, compares what should run with what runs, then acts. Runs go one after another
(one GPU on Colab); a run stops at its first failed stage and keeps the stage's last lines in state.
"""

from __future__ import annotations

import time

from f5guard.config import KINDS
from f5guard.schema import Config, RunConfig, Scope, StageConfig
from f5guard.stages.context import RunContext
from f5guard.stages.driver import StageDriver
from f5guard.stages.plan import decide
from f5guard.stages.runner import StageRunner
from f5guard.state import RunRecord, RunStatus, StageStatus, StateDoc

_FINAL_RUN = (RunStatus.DONE, RunStatus.FAILED, RunStatus.FATAL)


def make_driver(stage: StageConfig) -> StageDriver:
    """The driver the stage's kind plugs in (config.KINDS); the generic one for a kind the table lacks."""
    kind = KINDS.get(stage.kind)
    return kind.driver() if kind is not None and kind.driver is not None else StageDriver()


class RunSupervisor:
    """Moves one run through its stages."""

    def __init__(self, run: RunConfig, doc: StateDoc, ctx: RunContext) -> None:
        self.run = run
        self.doc = doc
        self.ctx = ctx
        self.index = 0
        self.upstream: str | None = None  # first home stage that (re)ran in this pass: later stages follow it
        self.current: StageRunner | None = None
        self.stopping = False
        self.reset_from: tuple[str | None] | None = None  # a reset waiting for the running stage to stop
        self.log = ctx.log.bind(run=run.name)

    @property
    def record(self) -> RunRecord:
        return self.doc.run(self.run.name)

    @property
    def finished(self) -> bool:
        return self.record.state in _FINAL_RUN

    @property
    def idle(self) -> bool:
        """Nothing of this run is running or stopping."""
        return self.current is None

    def begin(self) -> None:
        """Start a fresh pass over the run (daemon start, or after a reset)."""
        self.index, self.upstream, self.current = 0, None, None
        self.record.state, self.record.reason = RunStatus.PENDING, None

    def step(self, now: float) -> bool:
        changed = False
        if self.record.state is RunStatus.PENDING and not self.stopping:
            self.record.state, changed = RunStatus.RUNNING, True
        if self.current is not None:
            changed |= self.current.poll(now)
            if not self.current.finished:
                return changed
            current, self.current = self.current, None
            if self.stopping:
                self._stopped()
                return True
            if self.reset_from is not None:
                (stage_name,), self.reset_from = self.reset_from, None
                self._apply_reset(stage_name)
                return True
            state = current.record.state
            if state is StageStatus.DONE:
                self.index += 1
            else:
                self.record.state = RunStatus.FATAL if state is StageStatus.FATAL else RunStatus.FAILED
                self.record.reason = f"stage {current.stage.name!r} {state.value}: {current.record.reason}"
                return True
        if self.stopping:
            return changed
        while self.current is None and self.index < len(self.run.stages):
            stage = self.run.stages[self.index]
            record = self.doc.stage(self.run.name, stage.name)
            try:
                decision = decide(stage, record, self.ctx.boot_id, self.upstream)
            except Exception as err:  # noqa: BLE001 - an input nobody foresaw fails this run visibly, not the daemon
                self._cannot_plan(stage.name, err)
                return True
            if not decision.run:
                record.move(StageStatus.SKIPPED, decision.why)
                self.log.info("stage skipped", stage=stage.name, why=decision.why)
                self.index += 1
                changed = True
                continue
            if stage.scope is Scope.HOME and self.upstream is None:
                self.upstream = stage.name
            self.current = StageRunner(self.run, decision, record, self.ctx, self.record, make_driver(stage))
            self.current.start()
            return True
        if self.current is None and self.record.state is RunStatus.RUNNING:
            self.record.state = RunStatus.DONE
            self.log.info("run done")
            changed = True
        return changed

    def _cannot_plan(self, stage: str, err: Exception) -> None:
        record = self.doc.stage(self.run.name, stage)
        record.move(
            StageStatus.FAILED,
            f"could not decide whether it must run: {type(err).__name__}: {' '.join(str(err).split())}",
        )
        self.record.state, self.record.reason = RunStatus.FAILED, f"stage {stage!r} failed: {record.reason}"
        self.log.exception("stage could not be planned", stage=stage, error=record.reason)

    def request_stop(self) -> None:
        """Stop for good without waiting: the running stage is asked to stop; ``idle`` tells when it has."""
        self.stopping = True
        if self.current is not None:
            self.current.request_stop()
        else:
            self._stopped()

    def _stopped(self) -> None:
        if self.record.state in (RunStatus.RUNNING, RunStatus.PENDING):
            self.record.state, self.record.reason = RunStatus.STOPPED, "supervisor stopped"

    def stop(self, grace_s: float | None = None) -> None:
        """Stop for good and wait (a lost lease: the daemon exits right after)."""
        self.stopping = True
        if self.current is not None:
            self.current.stop(grace_s)
            self.current = None
        self._stopped()

    def reset(self, stage_name: str | None) -> None:
        """Invalidate ``stage_name`` (or the whole run) and every stage after it, then begin again; a running
        stage among them is asked to stop first, and the reset applies once it has (no wait here)."""
        names = [s.name for s in self.run.stages]
        start = names.index(stage_name) if stage_name else 0
        if self.current is not None and names.index(self.current.stage.name) >= start:
            self.reset_from = (stage_name,)
            self.current.request_stop()
            self.log.info("run reset requested; stopping the running stage first", from_stage=names[start])
            return
        self._apply_reset(stage_name)

    def _apply_reset(self, stage_name: str | None) -> None:
        names = [s.name for s in self.run.stages]
        start = names.index(stage_name) if stage_name else 0
        for name in names[start:]:
            record = self.doc.stage(self.run.name, name)
            record.fingerprint, record.outputs = None, {}
            record.move(StageStatus.PENDING, "reset by user")
        if self.current is None:
            self.begin()
        self.log.info("run reset", from_stage=names[start])


class Supervisor:
    """Owns every run of the config; runs go in config order, one at a time."""

    def __init__(self, config: Config, doc: StateDoc, ctx: RunContext) -> None:
        self.runs = [RunSupervisor(run, doc, ctx) for run in config.runs]
        self.doc = doc
        for name in list(doc.runs):
            if config.run(name) is None:
                del doc.runs[name]  # a run removed from the config leaves state too
        for sup in self.runs:
            sup.begin()

    def step(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        changed = False
        for sup in self.runs:
            if sup.finished and sup.idle:
                continue
            changed |= sup.step(now)
            if not (sup.finished and sup.idle) and not sup.stopping:
                break  # one run at a time: the next waits for this one
        return changed

    @property
    def idle(self) -> bool:
        """Nothing runs or is stopping (after ``request_stop``: the daemon may exit)."""
        return all(sup.idle for sup in self.runs)

    def next_wakeup(self) -> float | None:
        times = [sup.current.next_wakeup() for sup in self.runs if sup.current is not None]
        return min((t for t in times if t is not None), default=None)

    def request_stop(self) -> None:
        for sup in self.runs:
            sup.request_stop()

    def stop(self, grace_s: float | None = None) -> None:
        for sup in self.runs:
            sup.stop(grace_s)

    def run(self, name: str) -> RunSupervisor | None:
        return next((s for s in self.runs if s.run.name == name), None)
