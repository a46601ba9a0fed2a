"""The train stage's driver: restore and resume before each attempt, progress and hang detection while it
runs, verified sync to home throughout, and FATAL on the same failure at the same update twice (except a CUDA
OOM of the built-in trainer, answered with a smaller batch while one is possible: training/oom.py).

Runs in the daemon: no torch. Checkpoints are judged by ``checkpoints.py`` (zip directory + pickled header).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from f5guard import checkpoints, sdnotify
from f5guard.checkpoints.durable import RestoreFailed, list_durable, records, restore
from f5guard.checkpoints.sync import CheckpointSync
from f5guard.cloud import note as cloudnote
from f5guard.cloud.detect import open_configured
from f5guard.cloud.records import Record, from_state, judge, lost_line
from f5guard.errors import TrainingBehind
from f5guard.stages.driver import StageDriver, StageRunnerView
from f5guard.state import (
    BatchOverride,
    LostNote,
    QuarantineNote,
    RestoreNote,
    StateStore,
    SupersedeNote,
    TrainingRecord,
)
from f5guard.trainer.batches import longest_clip_frames
from f5guard.trainer.spec import TrainSpec
from f5guard.training import oom
from f5guard.training.diagnose import Failure, classify_failure
from f5guard.training.exporter import EmaExporter
from f5guard.training.hangdump import dump_stacks
from f5guard.training.kind import TrainOptions
from f5guard.training.progress import EventReader, Progress, TqdmParser
from f5guard.training.sampler import SampleJob, Sampler

if TYPE_CHECKING:
    from f5guard.checkpoints.durable import DurableCheckpoint
    from f5guard.stages.exits import ExitInfo

FLUSH_TIMEOUT_S = 900.0  # a 5 GB checkpoint onto Drive; the daemon waits this long at a graceful stop
FINAL_EXPORT_TIMEOUT_S = 600.0  # the inference copy of the finished training (reads ~5 GB, writes ~0.7 GB)
FINAL_SAMPLE_TIMEOUT_S = 600.0  # the audio sample of the finished training (Base on a CPU: minutes)
STATE_EVERY_S = 2.0  # how often progress is folded into the state document
STACK_DUMP_WAIT_S = 3.0
RESTORE_RETRY_S = 30.0
GATE_RETRY_S = 1.0  # the settle period ends on its own clock: look again soon
BEHIND_RETRY_S = 10.0  # a checkpoint on its way through Drive: look for it again (restore runs each time)
WAIT_SLICE_S = 10.0  # long waits on the control thread still tell systemd's watchdog the daemon is alive


class TrainDriver(StageDriver):
    """One train stage in one daemon life."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = Progress()
        self.reader: EventReader | None = None
        self.tqdm = TqdmParser()
        self.sync: CheckpointSync | None = None
        self.exporter: EmaExporter | None = None
        self.sampler: Sampler | None = None
        self.failures: list[tuple[str, int | None]] = []
        self.attempt_started = 0.0
        self._last_fold = 0.0
        self._behind_since: float | None = None
        self._durable_before = -1  # the durable update when the previous restart was decided
        self._attempt_spec: TrainSpec | None = None  # the spec written for the current attempt
        self._halved = False  # the last failure was an OOM answered with a smaller batch (a change, not a loop)
        self._lost: LostNote | None = None  # a checkpoint a gone runtime never uploaded (resumed below it)

    # -- helpers ---------------------------------------------------------------------------------------------
    @staticmethod
    def training(runner: StageRunnerView) -> TrainingRecord:
        record = runner.run_record
        if record.training is None:
            record.training = TrainingRecord()
        return record.training

    @staticmethod
    def options(runner: StageRunnerView) -> TrainOptions:
        options = runner.stage.options
        assert isinstance(options, TrainOptions), "a train stage is built by training.kind"
        return options

    def _note(self, runner: StageRunnerView, text: str, **fields: Any) -> None:
        runner.stage_log.note(text)
        runner.log.info(text, **fields)

    # -- before each attempt ---------------------------------------------------------------------------------
    def before_attempt(self, runner: StageRunnerView) -> float | None:
        opts = self.options(runner)
        local = Path(opts.checkpoint_dir)
        home = Path(opts.home_checkpoints)
        local.mkdir(parents=True, exist_ok=True)
        training = self.training(runner)
        gate = runner.ctx.gate()
        if gate is not None:  # another runtime may be training this home: ownership first (lease/hold.py)
            if training.waiting != gate:
                training.waiting = gate
                runner.mark_dirty()
            return GATE_RETRY_S
        if opts.spec is not None:
            self._supersede_incompatible(runner, local, home, vocab_rows(opts.spec.vocab_path), training)
        try:
            self._restore_if_newer(runner, local, home, training)
        except (RestoreFailed, OSError) as err:
            # Starting without what home holds would throw training away: wait for home instead.
            message = err.message if isinstance(err, RestoreFailed) else str(err)
            training.sync_error = f"waiting for home to restore from: {message}"
            runner.log.warning("cannot restore from home yet; retrying", error=message, retry_s=RESTORE_RETRY_S)
            runner.mark_dirty()
            return RESTORE_RETRY_S
        behind = self._behind_home(runner, local, home)
        if behind is not None:
            return behind
        training.waiting = None
        plan = checkpoints.prepare_resume(local)
        for action in plan.actions:
            self._note(runner, action)
        training.quarantined.extend(
            QuarantineNote(name=q.name, moved_to=q.moved_to, reason=q.reason, at=time.time()) for q in plan.quarantined
        )
        if opts.spec is not None:
            self._attempt_spec = self._with_override(runner, opts.spec, training)
            self._attempt_spec.to_json(opts.spec_path)
            self.reader = EventReader(Path(opts.progress_path))
            self.progress.setup = None  # this attempt's start event says what it runs with
        self.progress.update = plan.start_update
        if self._durable_before < 0:  # what home held before the first attempt: only more counts as progress
            self._durable_before = max((d.update for d in list_durable(home)), default=-1)
        self.progress.last_event_mono = time.monotonic()
        self.attempt_started = time.monotonic()
        if self.sync is None:
            self.sync = CheckpointSync(
                local,
                home,
                epoch=runner.ctx.epoch,
                keep=opts.keep_durable,
                fence=runner.ctx.fence,
                polling=opts.sync_polling,
                log=runner.log.info,
                tag=runner.ctx.runtime_tag,
                retention_delay_s=runner.ctx.lease.retention_delay_s,
                may_delete=runner.ctx.may_delete,
                store=open_configured(home, runner.ctx.store, delay_s=runner.ctx.lease.retention_delay_s),
                poll_s=runner.ctx.store.poll_s,
            )
            self.sync.start()
        self.sync.request()
        if self.exporter is None and opts.export_every > 0:
            self.exporter = EmaExporter(
                Path(opts.export_dir),
                opts.export_every,
                Path(opts.export_log),
                log=runner.log.info,
                python=runner.stage.python,  # the stack python: the export imports torch
            )
        if self.sampler is None and opts.sample_every > 0 and opts.spec is not None:
            job = SampleJob(
                opts.spec.model, opts.spec.vocab_path, opts.spec.dataset_dir, opts.sample_text, opts.vocoder
            )
            self.sampler = Sampler(
                Path(opts.sample_dir),
                opts.sample_every,
                job,
                Path(opts.sample_log),
                log=runner.log.info,
                python=runner.stage.python,  # the stack python: the sample imports torch and f5_tts
            )
        return None

    def _behind_home(self, runner: StageRunnerView, local: Path, home: Path) -> float | None:
        """Never backwards: when a state copy or a manifest on home records a checkpoint in the cloud newer than
        any here, it is on its way through Drive. Wait for it (status says so) rather than train from an older
        one, up to ``arrival_timeout_s``; then stop and let the user choose (`--accept-older`). A record of one
        still uploading when its runtime stopped never left that VM: resume at once, and say so in one line."""
        store = StateStore(runner.ctx.work.state, runner.ctx.home.lease_dir)
        superseded = self.training(runner).superseded
        found: list[Record] = [
            r for t, host in store.trainings(runner.run.name, superseded) for r in from_state(t, host)
        ]
        found.extend(records(home))
        newest = checkpoints.scan_dir(local).newest()
        have = newest.update if newest and newest.kind != "pretrained" else 0
        training = self.training(runner)
        verdict = judge(found, have)
        if verdict.wait_for is None or runner.ctx.accept_older:
            self._behind_since = None
            if verdict.lost is not None and (self._lost is None or self._lost["update"] != verdict.lost.update):
                line = lost_line(verdict.lost, have)
                self._lost = LostNote(update=verdict.lost.update, writer=verdict.lost.writer, resumed_from=have,
                                      line=line)  # fmt: skip
                self._note(runner, line)
                runner.mark_dirty()
            return None
        known = verdict.wait_for.update
        now = time.monotonic()
        self._behind_since = self._behind_since or now
        waited = now - self._behind_since
        timeout = runner.ctx.lease.arrival_timeout_s
        if waited >= timeout:
            raise TrainingBehind(
                f"the checkpoint at update {known} that home's records name never arrived here in {timeout:g} s "
                f"(newest here: update {have}); wait and `f5guard start` again, or "
                f"`f5guard stop && f5guard start --accept-older` to resume from update {have}"
            )
        writer = f" ({verdict.wait_for.writer} saw it reach the cloud)" if verdict.wait_for.writer else ""
        text = (
            f"waiting for checkpoint u{known} to arrive from Drive{writer} (newest here: u{have}; "
            f"{timeout - waited:.0f} s left, then `--accept-older` decides)"
        )
        if training.waiting != text:
            training.waiting = text
            self._note(runner, text)
            runner.mark_dirty()
        return BEHIND_RETRY_S

    def _supersede_incompatible(
        self, runner: StageRunnerView, local: Path, home: Path, rows: int | None, training: TrainingRecord
    ) -> None:
        """Checkpoints whose text embedding does not fit the dataset's vocab can never resume (F5-TTS's size
        mismatch). That happens when new audio brings new characters: keep the old training aside (never
        deleted) and start again from the pretrained model, saying so."""
        if rows is None:
            return
        newest_local = checkpoints.scan_dir(local).newest()
        durable = list_durable(home)
        stale: list[tuple[Path, int]] = []
        if newest_local and newest_local.kind != "pretrained" and newest_local.text_rows not in (None, rows):
            stale.append((local, newest_local.text_rows or 0))
        if durable:
            with contextlib.suppress(checkpoints.CheckpointInvalid):
                home_rows = checkpoints.inspect_checkpoint(durable[-1].path).text_rows
                if home_rows not in (None, rows):
                    stale.append((home, home_rows or 0))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for folder, old_rows in stale:
            aside = folder.with_name(f"{folder.name}.superseded-{stamp}")
            os.replace(folder, aside)
            folder.mkdir(parents=True, exist_ok=True)
            text = (
                f"the dataset's vocab changed ({old_rows - 1} -> {rows - 1} tokens): the previous training's "
                f"checkpoints cannot resume with it; kept in {aside}, training starts again"
            )
            training.superseded = SupersedeNote(moved_to=str(aside), old_vocab=old_rows - 1, vocab=rows - 1)
            training.durable_update = training.durable_synced_at = training.durable_size = None
            training.durable_path = None  # what home held belongs to the training set aside
            self._note(runner, text)

    def _restore_if_newer(self, runner: StageRunnerView, local: Path, home: Path, training: TrainingRecord) -> None:
        """A fresh VM (or one behind another runtime) first takes the newest verified checkpoint from home."""
        newest_local = checkpoints.scan_dir(local).newest()
        local_update = newest_local.update if newest_local and newest_local.kind != "pretrained" else -1
        durable = list_durable(home)
        if not durable or durable[-1].update <= local_update:
            return
        restored = restore(home, local, log=runner.log.info)
        if restored is not None:
            training.restored = RestoreNote(update=restored.update, epoch=restored.epoch, at=time.time())
            self._note(
                runner,
                f"restored the checkpoint at update {restored.update} from home ({restored.path.name}, verified)",
            )

    # -- while it runs ---------------------------------------------------------------------------------------
    def on_line(self, runner: StageRunnerView, line: str) -> None:
        if self.options(runner).mode == "command":
            self.tqdm.feed(line)

    def poll(self, runner: StageRunnerView, now: float) -> str | None:
        self._read_progress(runner)
        if now - self._last_fold >= STATE_EVERY_S:
            self._last_fold = now
            if self.exporter is not None and self.sync is not None:
                self.exporter.poll(self.sync.status().durable)
            if self.sampler is not None and self.sync is not None:
                self._poll_sampler(self.sampler, self.sync.status().durable)
            self._fold(runner)
            runner.mark_dirty()
        hang_s = self.options(runner).hang_minutes * 60
        last = self.progress.last_event_mono or self.attempt_started
        if hang_s > 0 and now - last > hang_s:
            self._dump_stacks(runner)
            minutes = hang_s / 60
            return f"no training progress for {minutes:g} min (hang_minutes): stacks dumped to the stage log"
        return None

    def _poll_sampler(self, sampler: Sampler, durable: DurableCheckpoint | None) -> None:
        """One heavy side job at a time: no sample starts while an export reads a checkpoint."""
        busy = self.exporter is not None and self.exporter.public()["running"] is not None
        sampler.poll(durable, busy=busy, source=self._exported(durable))

    def _final_sample(self, sampler: Sampler, durable: DurableCheckpoint | None, timeout: float) -> bool:
        return sampler.finish(durable, timeout, self._exported(durable))

    def _exported(self, durable: DurableCheckpoint | None) -> Path | None:
        """The inference copy of ``durable``'s update when there is one: EMA only, the cheaper file to read."""
        last = self.exporter.last if self.exporter is not None else None
        return last.path if last is not None and durable is not None and last.update == durable.update else None

    def _read_progress(self, runner: StageRunnerView) -> None:
        announced = False
        if self.reader is not None:
            for event in self.reader.poll(self.progress):
                if event.get("event") == "checkpoint":
                    announced = True
        elif self.tqdm.take(self.progress):
            announced = True
        if announced and self.sync is not None:
            self.sync.request()

    def _fold(self, runner: StageRunnerView) -> None:
        """Copy progress and sync status into the run's training record (what status shows)."""
        training = self.training(runner)
        self.progress.fold_into(training)
        training.restarts = runner.record.restarts
        training.last_exit = runner.record.last_failure or runner.record.last_exit
        if self.sync is not None:
            status = self.sync.status()
            durable = status.durable
            if durable is not None:
                training.durable_update = durable.update
                training.durable_synced_at = durable.synced_at
                training.durable_size = durable.size
                training.durable_path = str(durable.path)
            training.sync_warning, training.sync_error = status.warning, status.last_error
            if status.cloud is not None:
                training.cloud = {**status.cloud, "lost": self._lost}
        elif self._lost is not None and training.cloud is not None:
            training.cloud = {**training.cloud, "lost": self._lost}
        if self.exporter is not None:
            training.export = self.exporter.public()
        if self.sampler is not None:
            training.sample = self.sampler.public()

    def _dump_stacks(self, runner: StageRunnerView) -> None:
        attempt = runner.attempt
        if attempt is None:
            return
        dump_stacks(attempt.pid, Path(self.options(runner).progress_path).parent, runner.stage_log)
        # Hung: no graceful stop can finish. It ends at once, as the SIGABRT that used to dump its stacks did.
        attempt.signal(signal.SIGKILL)
        attempt.wait(STACK_DUMP_WAIT_S)

    # -- after an attempt ------------------------------------------------------------------------------------
    def after_exit(self, runner: StageRunnerView, exit: ExitInfo) -> None:
        self._read_progress(runner)
        # Graceful stop or the end of training: home must hold the very last checkpoint.
        sync = self.sync
        if (exit.ok or runner.stopping) and sync is not None and not _wait_alive(sync.flush, FLUSH_TIMEOUT_S):
            runner.log.warning("the final checkpoint is not on home yet", status=str(sync.status()))
        finished = exit.ok and not runner.stopping  # a stop also exits 0: that is not the end of training
        if (exit.ok or runner.stopping) and sync is not None:
            self._say_final(runner, sync, "training finished" if finished else "stopping")
        if finished and self.exporter is not None and sync is not None:
            exporter, durable = self.exporter, sync.status().durable
            if not _wait_alive(lambda timeout: exporter.finish(durable, timeout), FINAL_EXPORT_TIMEOUT_S):
                runner.log.warning("the final inference copy was not finished in time; it is abandoned",
                                   timeout_s=FINAL_EXPORT_TIMEOUT_S)  # fmt: skip
        if finished and self.sampler is not None and sync is not None:
            sampler, durable = self.sampler, sync.status().durable
            if not _wait_alive(lambda timeout: self._final_sample(sampler, durable, timeout), FINAL_SAMPLE_TIMEOUT_S):
                runner.log.warning("the final audio sample was not finished in time; it is abandoned",
                                   timeout_s=FINAL_SAMPLE_TIMEOUT_S)  # fmt: skip
        self._fold(runner)

    def progressed(self, runner: StageRunnerView) -> bool:
        durable = self.sync.status().durable if self.sync is not None else None
        now = durable.update if durable is not None else -1
        before, self._durable_before = self._durable_before, now
        return now > before or self._halved  # a smaller batch is a change: restart at once, outside the budget

    def fatal_reason(self, runner: StageRunnerView, exit: ExitInfo) -> str | None:
        failure: Failure = classify_failure(exit, list(runner.stage_log.last_lines))
        self._halved = False
        if failure.key == "cuda-oom":
            answer = self._after_oom(runner, failure)
            if answer is not None:
                return answer or None  # "": restart with the smaller batch
        key = (failure.key, self.progress.update)
        if key in self.failures:
            return failure.diagnosis(self.progress.update)
        self.failures.append(key)
        self.training(runner).last_failure = failure.label
        return None

    # -- CUDA out of memory: a smaller batch (training/oom.py) -------------------------------------------------
    def _with_override(self, runner: StageRunnerView, spec: TrainSpec, training: TrainingRecord) -> TrainSpec:
        """The config's spec with the batch an earlier OOM chose, while the config still says what it said then."""
        override = training.batch_override
        if override is None:
            return spec
        if (override["config_batch"], override["config_accum"]) != (
            spec.batch_size_per_gpu,
            spec.grad_accumulation_steps,
        ):
            training.batch_override = None
            self._note(runner, "the config's batch_size_per_gpu or grad_accumulation_steps changed: "
                               "the smaller batch f5guard set after a CUDA OOM no longer applies")  # fmt: skip
            return spec
        return dataclasses.replace(
            spec,
            batch_size_per_gpu=override["batch_size_per_gpu"],
            grad_accumulation_steps=override["grad_accumulation_steps"],
        )

    def _after_oom(self, runner: StageRunnerView, failure: Failure) -> str | None:
        """A CUDA OOM of the built-in trainer: "" after halving the batch for the next attempt, a FATAL reason
        at the floor, None when the batch is unknown (then the usual same-failure-twice rule decides)."""
        spec, setup = self._attempt_spec, self.progress.setup
        if spec is None:
            return None  # command mode: the batch is the user's command's
        if setup is not None:
            batch, accum = setup["batch_size_per_gpu"], setup["grad_accumulation_steps"]
        elif isinstance(spec.batch_size_per_gpu, int):
            batch, accum = spec.batch_size_per_gpu, spec.grad_accumulation_steps
        else:
            return None  # "auto", and it died before saying what auto became
        update = self.progress.update
        where = f" at update {update}" if update is not None else " before the first update"
        floor = oom.batch_floor(spec.batch_size_type, longest_clip_frames(spec.dataset_dir))
        decision = oom.halve(batch, accum, floor, spec.batch_size_type)
        if isinstance(decision, oom.AtFloor):
            what = oom.unit(spec.batch_size_type)
            return f"{failure.label}{where} with batch {batch} {what} x grad_accum {accum}, and {decision.why}"
        training = self.training(runner)
        config = self.options(runner).spec
        assert config is not None
        reason = f"{failure.label}{where}"
        training.batch_override = BatchOverride(
            batch_size_per_gpu=decision.batch, grad_accumulation_steps=decision.accum, from_batch=batch,
            from_accum=accum, batch_size_type=spec.batch_size_type, update=update, reason=reason, at=time.time(),
            config_batch=config.batch_size_per_gpu, config_accum=config.grad_accumulation_steps,
        )  # fmt: skip
        training.last_failure = failure.label
        self._note(runner, f"{oom.describe(batch, accum, decision, spec.batch_size_type)} after {reason} "
                           "(same effective batch; kept for this run)")  # fmt: skip
        runner.mark_dirty()
        self._halved = True
        return ""

    def _say_final(self, runner: StageRunnerView, sync: CheckpointSync, when: str) -> None:
        """Whether the final checkpoint reached the cloud, in the stage log (status shows it live after)."""
        newest = checkpoints.scan_dir(Path(self.options(runner).checkpoint_dir)).newest()
        final = newest.update if newest is not None and newest.kind != "pretrained" else None
        status = sync.status()
        on_home = status.durable.update if status.durable is not None else None
        self._note(runner, f"{when}: {cloudnote.final_line(status.cloud, final, on_home, time.time())}")

    def close(self, runner: StageRunnerView) -> None:
        if self.exporter is not None:
            self.exporter.stop()
        if self.sampler is not None:
            self.sampler.stop()
        if self.sync is not None:
            self._fold(runner)
            if runner.stopping:
                self.sync.stop()
            else:  # the daemon stays: its uploads go on, and their records must say when they reach the cloud
                self.sync.linger()
            self.sync = None


def _wait_alive(wait: Callable[[float], bool], timeout_s: float) -> bool:
    """Call ``wait(slice)`` until it returns True or ``timeout_s`` passes, pinging systemd's watchdog between
    slices: the control loop (which normally pings it) is blocked meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        piece = max(0.0, min(WAIT_SLICE_S, left))
        started = time.monotonic()
        if wait(piece):
            return True
        if left <= WAIT_SLICE_S or time.monotonic() - started < piece * 0.9:
            return False  # out of time, or the wait gave up before its slice ended (a full home): a verdict
        sdnotify.watchdog_ping()  # a no-op outside systemd


def vocab_rows(vocab: Path) -> int | None:
    """Text embedding rows a model trained on ``vocab`` has: one per line (F5-TTS's custom tokenizer), plus the
    filler row; None when the vocab is not there yet."""
    try:
        with vocab.open("rb") as handle:
            return sum(1 for _ in handle) + 1
    except OSError:
        return None


__all__ = ["TrainDriver"]
