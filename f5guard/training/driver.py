"""The train stage's driver: restore and resume before each attempt, progress and hang detection while it
runs, verified sync to home throughout; after an attempt, the facts only it knows for the one restart judgment
(stages/verdict.py: the trainer's exit event, the durable update, a smaller batch after a CUDA OOM), and the
wrap-up a stop or the end of training needs (the final sync, inference copy and sample), polled, never waited.

Runs in the daemon: no torch. Checkpoints are judged by ``checkpoints.py`` (zip directory + pickled header).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from f5guard import checkpoints
from f5guard.checkpoints import finite
from f5guard.checkpoints.durable import RestoreFailed, list_durable, records, restore
from f5guard.checkpoints.sync import CheckpointSync
from f5guard.cloud import note as cloudnote
from f5guard.cloud.detect import open_configured
from f5guard.cloud.records import Record, from_state, judge, lost_line
from f5guard.errors import TrainingBehind
from f5guard.fsutil import make_dirs
from f5guard.stages.attempt import Attempt
from f5guard.stages.driver import StageDriver, StageRunnerView
from f5guard.stages.verdict import (
    ChangePrecision,
    ExitFacts,
    Finished,
    HalveBatch,
    SaferPrecision,
    SmallerBatch,
    Stopped,
    Verdict,
)
from f5guard.state import (
    BatchOverride,
    LostNote,
    PrecisionOverride,
    QuarantineNote,
    RestoreNote,
    StateStore,
    SupersedeNote,
    TrainingRecord,
    precision_change,
)
from f5guard.trainer.batches import longest_clip_frames
from f5guard.trainer.spec import TrainSpec
from f5guard.trainevents import Checkpoint, Exit, ExitReason, Gate, Ready, Start
from f5guard.training import oom
from f5guard.training.diagnose import KNOWN
from f5guard.training.exporter import EmaExporter
from f5guard.training.hangdump import dump_stacks
from f5guard.training.kind import TrainOptions
from f5guard.training.progress import EventReader, TqdmParser, fold
from f5guard.training.sampler import SampleJob, Sampler

if TYPE_CHECKING:
    from f5guard.checkpoints.durable import DurableCheckpoint

FLUSH_TIMEOUT_S = 900.0  # a 5 GB checkpoint onto Drive; the wrap-up waits this long at a graceful stop
FINAL_EXPORT_TIMEOUT_S = 600.0  # the inference copy of the finished training (reads ~5 GB, writes ~0.7 GB)
FINAL_SAMPLE_TIMEOUT_S = 600.0  # the audio sample of the finished training (Base on a CPU: minutes)
STATE_EVERY_S = 2.0  # how often the training record is saved while training (its figures change every update)
STACK_DUMP_WAIT_S = 3.0
RESTORE_RETRY_S = 30.0
GATE_RETRY_S = 1.0  # the settle period ends on its own clock: look again soon
BEHIND_RETRY_S = 10.0  # a checkpoint on its way through Drive: look for it again (restore runs each time)


class TrainDriver(StageDriver):
    """One train stage in one daemon life."""

    def __init__(self) -> None:
        super().__init__()
        self.reader: EventReader | None = None
        self.tqdm = TqdmParser()
        self.sync: CheckpointSync | None = None
        self.exporter: EmaExporter | None = None
        self.sampler: Sampler | None = None
        self.attempt_started = 0.0
        self.last_event_mono: float | None = None  # the trainer's latest sign of life (hang detection)
        self.started: Start | None = None  # this attempt's start event: what it really runs with
        self.said: Exit | None = None  # this attempt's exit event
        self._last_fold = 0.0
        self._behind_since: float | None = None
        self._attempt_spec: TrainSpec | None = None  # the spec written for the current attempt
        self._lost: LostNote | None = None  # a checkpoint a gone runtime never uploaded (resumed below it)
        self._wrapping: threading.Thread | None = None  # the final sync (and export, sample) after the verdict
        self._gated = False  # the current attempt waits at its start gate (launched while the lease settles)
        self._relaunch: str | None = None  # why f5guard stopped the trainer at its gate (to start it from newer)
        self.ready: Ready | None = None  # this attempt's ready event: loaded, at the gate

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
        make_dirs(local)
        training = self.training(runner)
        settling = runner.ctx.gate()
        if settling is not None and not opts.gated:  # another runtime may be training this home: ownership first
            if training.waiting != settling:
                training.waiting = settling
                runner.mark_dirty()
            return GATE_RETRY_S
        if opts.spec is not None:
            rows = vocab_rows(opts.spec.vocab_path)
            if settling is not None and self._home_incompatible(home, rows):  # setting home's aside is a write:
                training.waiting = settling  # only once home is ours (after the settle period)
                runner.mark_dirty()
                return GATE_RETRY_S
            self._supersede_incompatible(runner, local, home, rows, training)
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
        plan = checkpoints.prepare_resume(local)
        for action in plan.actions:
            self._note(runner, action)
        training.quarantined.extend(
            QuarantineNote(name=q.name, moved_to=q.moved_to, reason=q.reason, at=time.time()) for q in plan.quarantined
        )
        # No idle minute at start: while the lease settles the trainer is launched anyway; it loads everything
        # and waits at its gate (trainevents.Gate), which ``poll`` opens once the settle period is over.
        gate = Gate(opts.gate_path)
        self._gated = settling is not None
        self._relaunch = None
        self.ready = None
        if self._gated:
            gate.close()
            training.waiting = f"{settling}; the trainer loads meanwhile and waits at its gate"
        else:
            gate.open()
            training.waiting = None
        if opts.spec is not None:
            self._attempt_spec = dataclasses.replace(self._with_override(runner, opts.spec, training),
                                                     gate_path=Path(opts.gate_path))  # fmt: skip
            self._attempt_spec.to_json(opts.spec_path)
            self.reader = EventReader(Path(opts.progress_path))
        self.started = self.said = None
        training.update = plan.start_update
        self.last_event_mono = time.monotonic()
        self.attempt_started = time.monotonic()
        if not self._gated:
            self._begin_training(runner)
        return None

    def _begin_training(self, runner: StageRunnerView) -> None:
        """The trainer may train and write now: the checkpoint sync (and the side jobs that follow it) start."""
        opts = self.options(runner)
        if self.sync is None:
            self.sync = CheckpointSync(
                Path(opts.checkpoint_dir),
                Path(opts.home_checkpoints),
                epoch=runner.ctx.epoch,
                keep=opts.keep_durable,
                fence=runner.ctx.fence,
                polling=opts.sync_polling,
                log=runner.log.info,
                tag=runner.ctx.runtime_tag,
                retention_delay_s=runner.ctx.lease.retention_delay_s,
                may_delete=runner.ctx.may_delete,
                store=open_configured(
                    Path(opts.home_checkpoints), runner.ctx.store, delay_s=runner.ctx.lease.retention_delay_s
                ),
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

    def _at_gate(self, runner: StageRunnerView) -> None:
        """While the trainer waits at its gate: open it once the settle period and the wait for lower claims are
        over, unless home meanwhile shows a newer checkpoint than the one it loaded (never backwards): then it
        is stopped (it trained and wrote nothing) and the next attempt restores that one first."""
        training, attempt = self.training(runner), runner.attempt
        settling = runner.ctx.gate()
        if settling is not None:
            loaded = f" (it loaded in {self.ready.startup_s:g} s)" if self.ready and self.ready.startup_s else ""
            text = (
                f"{settling}; the trainer {'waits' if self.ready else 'loads meanwhile and waits'} at its gate{loaded}"
            )
            if training.waiting != text:
                training.waiting = text
                runner.mark_dirty()
            return
        opts = self.options(runner)
        newer = self._newer_on_home(runner, Path(opts.checkpoint_dir), Path(opts.home_checkpoints))
        self._gated = False
        if newer is not None and attempt is not None:
            self._relaunch = f"{newer}: the trainer at its gate starts again from it"
            self._note(runner, self._relaunch)
            attempt.signal(signal.SIGTERM)  # at its gate it ends at once, having trained and written nothing
            return
        Gate(opts.gate_path).open()
        training.waiting = None
        self.last_event_mono = time.monotonic()  # the hang clock starts with training
        loaded = (
            f"; the trainer had loaded in {self.ready.startup_s:g} s" if self.ready and self.ready.startup_s else ""
        )
        self._note(runner, f"settled: the trainer's gate is open{loaded}")
        self._begin_training(runner)
        runner.mark_dirty()

    def _newer_on_home(self, runner: StageRunnerView, local: Path, home: Path) -> str | None:
        """Why the checkpoint the gated trainer loaded is no longer the newest (None: it is): home holds a newer
        durable one, or home's records name one still on its way."""
        newest = checkpoints.scan_dir(local).newest()
        have = newest.update if newest and newest.kind != "pretrained" else 0
        durable = [d for d in list_durable(home) if not finite.known_nonfinite(d.digest)]
        if durable and durable[-1].update > have:
            return f"home now holds the checkpoint at update {durable[-1].update} (newer than update {have} here)"
        verdict = judge(self._records(runner, home), have)
        if verdict.wait_for is not None and not runner.ctx.accept_older:
            return f"home's records now name the checkpoint at update {verdict.wait_for.update} (newer than {have})"
        return None

    def _records(self, runner: StageRunnerView, home: Path) -> list[Record]:
        """What state copies and manifests on home say reached the cloud (never-backwards reads them), less the
        checkpoints restore found non-finite: waiting for one of those would wait for nothing usable."""
        store = StateStore(runner.ctx.work.state, runner.ctx.home.lease_dir)
        superseded = self.training(runner).superseded
        found: list[Record] = [
            r for t, host in store.trainings(runner.run.name, superseded) for r in from_state(t, host)
        ]
        found.extend(records(home))
        broken = {d.update for d in list_durable(home) if finite.known_nonfinite(d.digest)}
        return [r for r in found if r.update not in broken]

    def _behind_home(self, runner: StageRunnerView, local: Path, home: Path) -> float | None:
        """Never backwards: when a state copy or a manifest on home records a checkpoint in the cloud newer than
        any here, it is on its way through Drive. Wait for it (status says so) rather than train from an older
        one, up to ``arrival_timeout_s``; then stop and let the user choose (`--accept-older`). A record of one
        still uploading when its runtime stopped never left that VM: resume at once, and say so in one line."""
        found = self._records(runner, home)
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

    @staticmethod
    def _home_incompatible(home: Path, rows: int | None) -> int | None:
        """The text-embedding rows of home's newest checkpoint when they do not fit the dataset's vocab."""
        durable = list_durable(home)
        if rows is None or not durable:
            return None
        with contextlib.suppress(checkpoints.CheckpointInvalid):
            home_rows = checkpoints.inspect_checkpoint(durable[-1].path).text_rows
            if home_rows not in (None, rows):
                return home_rows or 0
        return None

    def _supersede_incompatible(
        self, runner: StageRunnerView, local: Path, home: Path, rows: int | None, training: TrainingRecord
    ) -> None:
        """Checkpoints whose text embedding does not fit the dataset's vocab can never resume (F5-TTS's size
        mismatch). That happens when new audio brings new characters: keep the old training aside (never
        deleted) and start again from the pretrained model, saying so."""
        if rows is None:
            return
        newest_local = checkpoints.scan_dir(local).newest()
        stale: list[tuple[Path, int]] = []
        if newest_local and newest_local.kind != "pretrained" and newest_local.text_rows not in (None, rows):
            stale.append((local, newest_local.text_rows or 0))
        home_rows = self._home_incompatible(home, rows)
        if home_rows is not None:
            stale.append((home, home_rows))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for folder, old_rows in stale:
            aside = folder.with_name(f"{folder.name}.superseded-{stamp}")
            os.replace(folder, aside)
            make_dirs(folder)
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
        durable = [d for d in list_durable(home) if not finite.known_nonfinite(d.digest)]
        if not durable or durable[-1].update <= local_update:
            return
        restored = restore(home, local, log=runner.log.info, above=local_update)
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
        if self._gated:
            self._at_gate(runner)
            return None  # waiting at the gate is no hang
        if now - self._last_fold >= STATE_EVERY_S:
            self._last_fold = now
            if self.exporter is not None and self.sync is not None:
                self.exporter.poll(self.sync.status().durable)
            if self.sampler is not None and self.sync is not None:
                self._poll_sampler(self.sampler, self.sync.status().durable)
            self._fold(runner)
            runner.mark_dirty()
        hang_s = self.options(runner).hang_minutes * 60
        last = self.last_event_mono or self.attempt_started
        if hang_s > 0 and now - last > hang_s:
            minutes = hang_s / 60
            return f"no training progress for {minutes:g} min (hang_minutes): stacks dumped to the stage log"
        return None

    def _poll_sampler(self, sampler: Sampler, durable: DurableCheckpoint | None) -> None:
        """One heavy side job at a time: no sample starts while an export reads a checkpoint."""
        busy = self.exporter is not None and self.exporter.public()["running"] is not None
        sampler.poll(durable, busy=busy, source=self._exported(durable))

    def _exported(self, durable: DurableCheckpoint | None) -> Path | None:
        """The inference copy of ``durable``'s update when there is one: EMA only, the cheaper file to read."""
        last = self.exporter.last if self.exporter is not None else None
        return last.path if last is not None and durable is not None and last.update == durable.update else None

    def _read_progress(self, runner: StageRunnerView) -> None:
        """Fold the trainer's new events into the run's training record (what status shows)."""
        events = self.reader.poll() if self.reader is not None else self.tqdm.take()
        if not events:
            return
        training = self.training(runner)
        self.last_event_mono = time.monotonic()
        for event in events:
            fold(training, event)
            if isinstance(event, Start):
                self.started = event
            elif isinstance(event, Ready):
                self.ready = event
            elif isinstance(event, Exit) and not (event.reason is ExitReason.RANK_FAILED and self._own_words()):
                self.said = event  # a rank's own nonfinite outranks the launcher's "a rank failed" after it
            elif isinstance(event, Checkpoint) and self.sync is not None:
                self.sync.request()

    def _own_words(self) -> bool:
        return self.said is not None and self.said.reason is ExitReason.NONFINITE

    def _fold(self, runner: StageRunnerView) -> None:
        """Copy the sync's and the side jobs' status into the run's training record (what status shows)."""
        training = self.training(runner)
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

    def before_kill(self, runner: StageRunnerView, attempt: Attempt) -> None:
        """On the kill thread: one labelled block of every thread's stack per process of the hung training
        (training/hangdump.py) into the stage log; then it ends at once: no graceful stop can finish."""
        dump_stacks(attempt.pid, Path(self.options(runner).progress_path).parent, runner.stage_log)
        attempt.signal(signal.SIGKILL)
        attempt.wait(STACK_DUMP_WAIT_S)

    # -- after an attempt ------------------------------------------------------------------------------------
    def durable_update(self, runner: StageRunnerView) -> int | None:
        if self.sync is not None:
            durable = self.sync.status().durable
            return durable.update if durable is not None else None
        return max((d.update for d in list_durable(Path(self.options(runner).home_checkpoints))), default=None)

    def facts(self, runner: StageRunnerView, facts: ExitFacts) -> ExitFacts:
        """The trainer's own last words, the update it reached, home's durable update, and what a CUDA OOM would
        change; the log's lines stay in the facts for a trainer that said nothing (the judgment decides)."""
        self._read_progress(runner)
        return dataclasses.replace(
            facts,
            said=self.said,
            update=self.training(runner).update,
            durable=self.durable_update(runner),
            known=KNOWN,
            smaller_batch=self._smaller_batch(runner),
            safer_precision=self._safer_precision(runner),
            relaunch=self._relaunch,
        )

    def wrap_up(self, runner: StageRunnerView, verdict: Verdict) -> str | None:
        """A stop or the end of training: home must hold the very last checkpoint; the end of training also
        gets its final inference copy and audio sample. On a thread of its own: each can take many minutes."""
        self._fold(runner)
        sync = self.sync
        if sync is None or not isinstance(verdict, (Finished, Stopped)):
            return None
        finished = isinstance(verdict, Finished)
        exporter = self.exporter if finished else None
        sampler = self.sampler if finished else None

        def wrap() -> None:
            if not sync.flush(FLUSH_TIMEOUT_S):
                runner.log.warning("the final checkpoint is not on home yet", status=str(sync.status()))
            self._say_final(runner, sync, "training finished" if finished else "stopping")
            durable = sync.status().durable
            if exporter is not None and not exporter.finish(durable, FINAL_EXPORT_TIMEOUT_S):
                runner.log.warning("the final inference copy was not finished in time; it is abandoned",
                                   timeout_s=FINAL_EXPORT_TIMEOUT_S)  # fmt: skip
            if sampler is not None and not sampler.finish(durable, FINAL_SAMPLE_TIMEOUT_S, self._exported(durable)):
                runner.log.warning("the final audio sample was not finished in time; it is abandoned",
                                   timeout_s=FINAL_SAMPLE_TIMEOUT_S)  # fmt: skip
            runner.ctx.wake.set()

        self._wrapping = threading.Thread(target=wrap, name="f5guard-wrap-up", daemon=True)
        self._wrapping.start()
        steps = ["the final checkpoint to home"]
        steps += ["the inference copy"] if exporter is not None else []
        steps += ["the audio sample"] if sampler is not None else []
        return "finishing: " + ", ".join(steps)

    def wrapped(self, runner: StageRunnerView) -> bool:
        if self._wrapping is not None and self._wrapping.is_alive():
            if time.monotonic() - self._last_fold >= STATE_EVERY_S:
                self._last_fold = time.monotonic()
                self._fold(runner)
                runner.mark_dirty()
            return False
        self._wrapping = None
        self._fold(runner)
        return True

    # -- CUDA out of memory: a smaller batch (training/oom.py) -------------------------------------------------
    def _with_override(self, runner: StageRunnerView, spec: TrainSpec, training: TrainingRecord) -> TrainSpec:
        """The config's spec with the batch an earlier OOM chose and the precision an earlier non-finite loss
        chose, each while the config still says what it said then."""
        return self._batch_override(runner, self._precision_override(runner, spec, training), training)

    def _precision_override(self, runner: StageRunnerView, spec: TrainSpec, training: TrainingRecord) -> TrainSpec:
        override = training.precision_override
        if override is None:
            return spec
        if override["config_precision"] != spec.mixed_precision:
            training.precision_override = None
            self._note(runner, "the config's mixed_precision changed: the precision f5guard set after a "
                               "non-finite loss no longer applies")  # fmt: skip
            return spec
        return dataclasses.replace(spec, mixed_precision=override["precision"])  # type: ignore[arg-type]

    def _batch_override(self, runner: StageRunnerView, spec: TrainSpec, training: TrainingRecord) -> TrainSpec:
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

    def _smaller_batch(self, runner: StageRunnerView) -> SmallerBatch | str | None:
        """What a CUDA OOM of this attempt would change: the halved batch, why there is none (at the floor), or
        None when the batch is not f5guard's to change (command mode) or unknown ("auto" that never said)."""
        spec, setup = self._attempt_spec, self.started.setup if self.started is not None else None
        if spec is None:
            return None
        if setup is not None:
            batch, accum = setup.batch_size_per_gpu, setup.grad_accumulation_steps
        elif isinstance(spec.batch_size_per_gpu, int):
            batch, accum = spec.batch_size_per_gpu, spec.grad_accumulation_steps
        else:
            return None
        floor = oom.batch_floor(spec.batch_size_type, longest_clip_frames(spec.dataset_dir))
        decision = oom.halve(batch, accum, floor, spec.batch_size_type)
        what = oom.unit(spec.batch_size_type)
        if isinstance(decision, oom.AtFloor):
            return f"with batch {batch} {what} x grad_accum {accum}, and {decision.why}"
        return SmallerBatch(batch=decision.batch, accum=decision.accum, from_batch=batch, from_accum=accum, unit=what)

    # -- a non-finite loss: a safer precision (the NaN guard, trainer/nanguard.py) ------------------------------
    def _safer_precision(self, runner: StageRunnerView) -> SaferPrecision | str | None:
        """What a non-finite loss of this attempt would change: fp16 -> bf16 (where the device has it) -> fp32
        ("no"); why there is none (fp32 already); None when the trainer never said what it ran in."""
        setup = self.started.setup if self.started is not None else None
        if self._attempt_spec is None or setup is None:
            return None
        if setup.precision == "fp16":
            return SaferPrecision(to="bf16" if setup.bf16_supported else "no", frm="fp16")
        if setup.precision == "bf16":
            return SaferPrecision(to="no", frm="bf16")
        return "in fp32 too" if self.training(runner).precision_override is not None else "in fp32"

    def apply(self, runner: StageRunnerView, verdict: HalveBatch | ChangePrecision) -> bool:
        """A smaller batch, or a safer precision, for every later attempt of this run (kept in the record, so a
        restarted daemon applies it too)."""
        if self._attempt_spec is None:
            return False
        config = self.options(runner).spec
        assert config is not None
        if isinstance(verdict, ChangePrecision):
            change = verdict.precision
            override = PrecisionOverride(
                precision=change.to, from_precision=change.frm, update=verdict.update, lr=verdict.lr,
                reason=verdict.reason, at=time.time(), config_precision=config.mixed_precision,
            )  # fmt: skip
            self.training(runner).precision_override = override
            self._note(runner, f"{precision_change(override)}: restarting from the newest finite checkpoint "
                               "(kept for this run)")  # fmt: skip
            runner.mark_dirty()
            return True
        config = self.options(runner).spec
        assert config is not None
        half, spec = verdict.batch, self._attempt_spec
        self.training(runner).batch_override = BatchOverride(
            batch_size_per_gpu=half.batch, grad_accumulation_steps=half.accum, from_batch=half.from_batch,
            from_accum=half.from_accum, batch_size_type=spec.batch_size_type, update=verdict.update,
            reason=verdict.reason, at=time.time(), config_batch=config.batch_size_per_gpu,
            config_accum=config.grad_accumulation_steps,
        )  # fmt: skip
        accum = f" x grad_accum {half.accum}" if half.accum != half.from_accum else ""
        self._note(runner, f"batch {half.from_batch} -> {half.batch} {half.unit}{accum} after {verdict.reason} "
                           "(same effective batch; kept for this run)")  # fmt: skip
        runner.mark_dirty()
        return True

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


def vocab_rows(vocab: Path) -> int | None:
    """Text embedding rows a model trained on ``vocab`` has: one per line (F5-TTS's custom tokenizer), plus the
    filler row; None when the vocab is not there yet."""
    try:
        with vocab.open("rb") as handle:
            return sum(1 for _ in handle) + 1
    except OSError:
        return None


__all__ = ["TrainDriver"]
