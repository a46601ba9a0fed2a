"""Instrument a live F5-TTS Trainer: progress events, graceful stop and timed saves at update boundaries.

Why ``accelerator.log``: F5-TTS 1.1.22's loop calls it once per micro-step, right after the optimizer and
scheduler stepped, the EMA updated and ``global_update`` was incremented, and right before the loop decides
whether to save. It hands over the finished update's number, loss and lr. So it is the one point where the
state is exactly "update N finished, nothing of N+1 started": saving there through the Trainer's own
``save_checkpoint`` writes precisely what F5-TTS writes at N, and a graceful stop loses no update. (Wrapping
``optimizer.step`` instead fires before the scheduler and EMA step; forcing ``last_per_updates`` to 1 works
too but mutates the Trainer's configuration.) Every hook is an instance attribute; the class is untouched.
The same point sees the loss of every update (the NaN guard, nanguard.py), and every save goes through the
``save_checkpoint`` hook, F5-TTS's own included (never a save of non-finite weights).

Why the start gate sits in ``load_checkpoint``: F5-TTS's ``train`` calls it after the DataLoader, the scheduler
and ``accelerator.prepare`` exist and right before its loop; nothing before it writes to the checkpoint dir
(``log_samples``, the one exception, is off here), and it only reads. So a gated trainer has done all its slow
start (imports, model, dataset, the checkpoint itself) when it waits there, before its first step and first
write; only a pretrained model that must first be placed in the dir waits before loading.

Several ranks (trainer/group.py): F5-TTS calls ``accelerator.log`` on the main rank only, so the ranks meet
at another point: the entry of ``accelerator.accumulate`` for the next batch, when the previous micro-step
finished an update (``sync_gradients``). All ranks pass there after update N is complete, EMA and the loop's
own saves included, and before N+1 starts; there they agree on stop and timed save (collective.py), save
through the Trainer's save_checkpoint (its barrier needs every rank) and raise GracefulStop together.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from f5guard.checkpoints.inspect import LAST_NAME
from f5guard.checkpoints.resume import f5tts_pick
from f5guard.trainer.nanguard import TEST_NAN_ENV, LossWatch, TestNan, nonfinite_parameter
from f5guard.trainer.spec import TrainSpec
from f5guard.trainevents import Checkpoint, EventWriter, Gate, Ready, ResumeCheck, Start, Update, finite

EVENT_INTERVAL_S = 0.5  # at most two update events a second; checkpoint updates are always reported
TEST_OOM_ENV = "F5GUARD_TEST_OOM"  # "update=N,above=FRAMES": a CUDA OOM at update N while the batch is > FRAMES


class GracefulStop(Exception):
    """Raised at an update boundary after model_last.pt holds that update; unwinds Trainer.train."""

    def __init__(self, reason: str, update: int) -> None:
        super().__init__(f"stopped by {reason} at update {update}")
        self.reason = reason
        self.update = update


class StopRequest:
    """Set from a signal handler (which may run at any bytecode); read at the next update boundary."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


class TrainerHooks:
    """Owns the wrappers around one Trainer instance and the per-run counters they share."""

    def __init__(self, trainer: Any, spec: TrainSpec, progress: EventWriter, stop: StopRequest, *,
                 start: Start, verify_resume: bool = False, gate: Gate | None = None,
                 place: Callable[[], str] | None = None, started_at: float | None = None) -> None:  # fmt: skip
        """``start``: what the entry knows before training (model, samples, setup); totals are added here.
        ``gate``: wait there after loading (trainevents.Gate); ``place``: puts the pretrained model in the
        checkpoint dir (a write: after the gate) and says so; ``started_at``: when the process started."""
        self.trainer = trainer
        self.spec = spec
        self.progress = progress
        self.stop = stop
        self.start_event = start
        self.verify_resume = verify_resume
        self.update: int | None = None  # the last finished update (None before load_checkpoint)
        self.total_updates: int | None = None
        self.updates_per_epoch: int | None = None
        self._loss: float | None = None
        self._lr: float | None = None
        self._last_save = time.monotonic()
        self._reported: tuple[int, float] | None = None  # (update, monotonic time) of the last update event
        self._test_oom = _test_oom(os.environ.get(TEST_OOM_ENV))
        self.group = False  # one rank of several: stop and timed saves are decided at _accumulate, together
        self._boundary: int | None = None  # group: the update the ranks finished at the latest boundary
        self._last_saved: int | None = None  # the update model_last.pt holds (saved in this run)
        self._start = 0  # the update training resumed at
        self.gate = gate if gate is not None and not gate.is_open() else None
        self._place = place
        self._started_at = time.time() if started_at is None else started_at
        self.losses = LossWatch(spec.nan_patience)
        self._test_nan = TestNan.parse(os.environ.get(TEST_NAN_ENV))

    def install(self) -> None:
        t = self.trainer
        self._orig_load: Callable[[], int] = t.load_checkpoint
        self._orig_save: Callable[..., None] = t.save_checkpoint
        self._orig_log: Callable[..., None] = t.accelerator.log
        t.load_checkpoint = self._load_checkpoint
        t.save_checkpoint = self._save_checkpoint
        t.accelerator.log = self._log
        if self._test_nan is not None:
            self._test_nan.install(t, self.spec.mixed_precision, lambda: (self.update or 0) + 1)
        if t.accelerator.num_processes > 1:
            self.group = True
            self._orig_accumulate: Callable[..., Any] = t.accelerator.accumulate
            t.accelerator.accumulate = self._accumulate

    # ------------------------------------------------------------------------------ the three hooks
    def _load_checkpoint(self) -> int:
        """Report where training starts; called by train() after the dataloader and scheduler exist. A gated
        trainer waits here: after loading its checkpoint (reading only), before its first step and first write;
        when loading needs the pretrained model placed first (a write), it waits before that."""
        if self._place is not None:
            if self.gate is not None:
                self._wait_at_gate(None, None)
            self.start_event = dataclasses.replace(self.start_event,
                                                   actions=(*self.start_event.actions, self._place()))  # fmt: skip
        ckpt_dir = Path(self.spec.checkpoint_dir)
        names = sorted(os.listdir(ckpt_dir)) if ckpt_dir.is_dir() else []
        loaded = f5tts_pick(names)
        start = int(self._orig_load())
        if self.gate is not None:
            self._wait_at_gate(start, loaded)
        self.update = self._start = start
        self.total_updates = _total_updates(self.trainer.scheduler)
        if self.group:
            self.total_updates = _group_total_updates(self.trainer, self.spec.epochs) or self.total_updates
        if self.total_updates is not None:
            self.updates_per_epoch = max(1, self.total_updates // self.spec.epochs)
        self._reported = (start, time.monotonic())
        self.progress.emit(dataclasses.replace(
            self.start_event, start_update=start, total_updates=self.total_updates,
            updates_per_epoch=self.updates_per_epoch, epochs=self.spec.epochs, checkpoint=loaded,
        ))  # fmt: skip
        if self.verify_resume and loaded is not None and start > 0:
            from f5guard.trainer.verify import compare_with_checkpoint

            check = compare_with_checkpoint(self.trainer, ckpt_dir / loaded)
            if self.group:  # every rank loaded the file: equal means equal on all of them
                from f5guard.trainer.collective import every_rank

                parts = ("model_equal", "optimizer_equal", "scheduler_equal")
                agreed = every_rank([bool(check[k]) for k in parts], self.trainer.accelerator.device)
                check.update(zip(parts, agreed, strict=True), ranks=self.trainer.accelerator.num_processes)
            self.progress.emit(ResumeCheck(**check))
        if self.stop.reason is not None and not self.group:  # stop before any update: nothing new to save
            raise GracefulStop(self.stop.reason, start)
        return start

    def _log(self, values: dict[str, Any], step: int | None = None, *args: Any, **kwargs: Any) -> None:
        """The loop's per-update report: an update boundary (see the module docstring)."""
        self._orig_log(values, step, *args, **kwargs)
        if step is None or "loss" not in values or not self.trainer.accelerator.sync_gradients:
            return  # a gradient-accumulation micro-step, or a log call that is not the loop's
        if self._test_oom is not None:
            _maybe_test_oom(self._test_oom, int(step), int(self.trainer.batch_size_per_gpu))
        self.update, self._loss, self._lr = (
            int(step),
            float(values["loss"]),
            float(values.get("lr", math.nan)),
        )
        loss_ok = math.isfinite(self._loss)
        if not loss_ok or self._reported is None or time.monotonic() - self._reported[1] >= EVENT_INTERVAL_S:
            self._emit_update()  # a non-finite loss is always reported: status shows what stopped training
        self.losses.see(self.update, self._loss, finite(self._lr))  # NonFinite: stop before the loop saves
        if self.spec.throttle_s > 0:
            time.sleep(self.spec.throttle_s)
        if self.group:
            return  # the ranks decide together at the next _accumulate
        if self.stop.reason is not None:
            self._save_checkpoint(self.update, last=True)
            if self.update % self.spec.save_per_updates == 0:  # the loop would have saved it next
                self._save_checkpoint(self.update)
            raise GracefulStop(self.stop.reason, self.update)
        minutes = self.spec.save_every_minutes
        due = minutes > 0 and time.monotonic() - self._last_save >= minutes * 60
        if due and self.update % self.trainer.last_per_updates != 0:  # else the loop saves it anyway
            self._save_checkpoint(self.update, last=True)

    def _save_checkpoint(self, update: int, last: bool = False) -> None:
        """F5-TTS's own save, then the event: a `checkpoint` event means the file is complete. Never a save of
        non-finite parameters (nanguard.py): that stops training instead, with nothing written."""
        broken = nonfinite_parameter(self.trainer)
        if broken is not None:
            raise self.losses.broken_parameters(update, finite(self._lr), broken)
        self._orig_save(update, last=last)
        name = LAST_NAME if last else f"model_{update}.pt"
        path = Path(self.spec.checkpoint_dir) / name
        if not last and self.trainer.keep_last_n_checkpoints == 0:
            return  # F5-TTS writes no numbered files then
        if last:
            self._last_save = time.monotonic()
            self._last_saved = update
        if update == self.update and (self._reported is None or self._reported[0] != update):
            self._emit_update()  # the reader's latest update matches the checkpoint exactly
        size = path.stat().st_size if path.exists() else None
        self.progress.emit(Checkpoint(file=name, update=update, last=last, size=size))

    def _accumulate(self, *args: Any, **kwargs: Any) -> Any:
        """Group only: every rank enters here per batch; after a finished update it is a boundary."""
        if self.trainer.accelerator.sync_gradients:  # still the previous micro-step's flag (True before any)
            self._boundary = self._start if self._boundary is None else self._boundary + 1
            self._group_boundary(self._boundary)
        return self._orig_accumulate(*args, **kwargs)

    def _group_boundary(self, update: int) -> None:
        from f5guard.trainer.collective import any_rank

        minutes = self.spec.save_every_minutes
        due = minutes > 0 and time.monotonic() - self._last_save >= minutes * 60
        stop, due = any_rank([self.stop.reason is not None, due], self.trainer.accelerator.device)
        fresh = update not in (self._last_saved, self._start)  # the loop may have saved it already
        if stop:
            if fresh:
                self._save_checkpoint(update, last=True)
            raise GracefulStop(self.stop.reason or "a stop seen by another rank", update)
        if due and fresh:
            self._save_checkpoint(update, last=True)

    # ------------------------------------------------------------------------------ helpers
    def _wait_at_gate(self, start: int | None, loaded: str | None) -> None:
        """Ready, then wait until the daemon opens the gate; a stop meanwhile ends training with nothing saved."""
        assert self.gate is not None
        self.progress.emit(Ready(start_update=start, checkpoint=loaded,
                                 startup_s=round(time.time() - self._started_at, 3)))  # fmt: skip
        if not self.gate.wait(lambda: self.stop.reason is not None):
            raise GracefulStop(self.stop.reason or "a stop", start or 0)
        self.gate = None
        self._last_save = time.monotonic()  # the waiting was no training: timed saves count from here

    def _emit_update(self) -> None:
        assert self.update is not None
        now = time.monotonic()
        rate = None
        if self._reported is not None and now > self._reported[1] and self.update > self._reported[0]:
            rate = round((self.update - self._reported[0]) / (now - self._reported[1]), 4)
        epoch = (self.update - 1) // self.updates_per_epoch + 1 if self.updates_per_epoch and self.update else None
        nonfinite = None if self._loss is None or math.isfinite(self._loss) else str(self._loss)
        self.progress.emit(Update(update=self.update, loss=finite(self._loss), lr=finite(self._lr),
                                  updates_per_s=rate, epoch=epoch, loss_nonfinite=nonfinite))  # fmt: skip
        self._reported = (self.update, now)


def _test_oom(text: str | None) -> tuple[int, int] | None:
    """Parse F5GUARD_TEST_OOM ("update=N,above=FRAMES"); tests inject a GPU's OOM on a CPU with it."""
    if not text:
        return None
    try:
        fields = dict(part.split("=", 1) for part in text.split(","))
        return int(fields["update"]), int(fields["above"])
    except (KeyError, ValueError) as err:
        raise ValueError(f"{TEST_OOM_ENV} must look like 'update=N,above=FRAMES', got {text!r}") from err


def _maybe_test_oom(plan: tuple[int, int], update: int, batch: int) -> None:
    """Raise what torch raises when a batch does not fit, with its wording, as update ``update`` ends."""
    at, above = plan
    if update >= at and batch > above:
        import torch

        raise torch.cuda.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 14.74 GiB of which "
            f"1.02 GiB is free. (injected by {TEST_OOM_ENV} at update {update}, batch {batch} > {above})"
        )


def _group_total_updates(trainer: Any, epochs: int) -> int | None:
    """Updates with N ranks: F5-TTS sizes its scheduler before accelerate splits the batches over the ranks (and
    accelerate then steps it N times per update), so the scheduler counts N times too many. The prepared
    DataLoader (accelerate keeps it in ``_dataloaders``) has each rank's batches per epoch."""
    loaders = getattr(trainer.accelerator, "_dataloaders", None)
    try:
        return int(math.ceil(len(loaders[-1]) / trainer.grad_accumulation_steps) * epochs)  # type: ignore[index]
    except (TypeError, IndexError, AttributeError):
        return None


def _total_updates(scheduler: Any) -> int | None:
    """F5-TTS builds SequentialLR(warmup, decay) with decay.total_iters = total - warmup; read it back."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it in an AcceleratedScheduler
    try:
        state = inner.state_dict()
        return int(state["_milestones"][0]) + int(state["_schedulers"][-1]["total_iters"])
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None
