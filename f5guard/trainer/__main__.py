"""``python -m f5guard.trainer --spec SPEC.json``: one F5-TTS training run that resumes and stops cleanly.

Exit codes: 0 finished or stopped gracefully (SIGTERM/SIGINT), 1 training failed, 2 bad spec or inputs.
Graceful stop: SIGTERM (or SIGINT) to this process or its whole process group: it finishes the current update,
saves model_last.pt there through F5-TTS's own save_checkpoint, and exits 0.
With ``num_processes`` > 1 this process launches and supervises the ranks (trainer/group.py); a rank that
fails takes the group down and this process ends like it (see group.die_like).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from f5guard.checkpoints.inspect import scan_dir
from f5guard.checkpoints.resume import place_pretrained, prepare_resume
from f5guard.errors import F5guardError
from f5guard.pdeathsig import follow_supervisor
from f5guard.trainer import group, stackdump
from f5guard.trainer.hooks import GracefulStop, StopRequest, TrainerHooks
from f5guard.trainer.nanguard import NonFinite
from f5guard.trainer.spec import SpecError, TrainSpec
from f5guard.trainevents import EventWriter, Exit, ExitReason, Gate, Quarantined, Start

# Nothing at train time needs the network (logger off, no sample logging, local pretrained): make any
# attempt fail fast instead of hanging on a Colab VM with a flaky connection.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "WANDB_SILENT": "true",
}
VERIFY_ENV = "F5GUARD_TRAIN_VERIFY_RESUME"
RESUMABLE_SEED = 666  # what every F5-TTS entry passes: the batch order that resume skips through


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f5guard.trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="training spec JSON (see f5guard.trainer.spec.TrainSpec)")
    args = parser.parse_args(argv)
    started_at = time.time()
    stop = StopRequest()
    _install_signal_handlers(stop)  # first: a stop during the slow imports must not be lost
    follow_supervisor()  # SIGTERM (a graceful stop) if the daemon that started us dies
    stackdump.register(stackdump.role_here())  # before the slow imports: a hang there is dumped too
    try:
        spec = TrainSpec.from_json(args.spec)
    except SpecError as err:
        print(f"f5guard.trainer: {err}", file=sys.stderr)
        return err.exit_code
    rank = group.member()
    try:
        progress = EventWriter(spec.progress_path, write=rank is None or rank.rank == 0)
    except OSError as err:
        print(
            f"f5guard.trainer: could not open progress file {spec.progress_path}: {err.strerror}",
            file=sys.stderr,
        )
        return 1
    run = _Run(spec, progress, stop, args.spec, rank, started_at)
    try:
        return run.run()
    except NonFinite as err:  # nothing was saved: the daemon restarts from the newest (finite) checkpoint
        progress.emit(Exit(ExitReason.NONFINITE, update=err.update, detail=err.what, lr=err.lr))
        print(f"f5guard.trainer: {err}: stopped without saving", file=sys.stderr)
        return 1
    except F5guardError as err:
        progress.emit(Exit(ExitReason.ERROR, update=run.update, detail=err.message))
        print(f"f5guard.trainer: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:  # noqa: BLE001 - any training failure: record it for the supervisor, exit 1
        progress.emit(Exit(_failure_reason(err), update=run.update, detail=f"{type(err).__name__}: {_one_line(err)}"))
        traceback.print_exc()
        return 1
    finally:
        progress.close()
        if run.trainer is not None:  # after the except clauses: their tracebacks no longer pin the DataLoader
            from f5guard.trainer.workers import release_workers

            release_workers(run.trainer)


def _install_signal_handlers(stop: StopRequest) -> None:
    main_pid = os.getpid()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != main_pid:
            return  # a forked DataLoader worker that inherited this handler: the main process decides
        stop.set(signal.Signals(signum).name.lower())

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)  # Ctrl-C mid torch.save would truncate model_last.pt


class _Run:
    """One training run; keeps the hooks so a failure can still report the last finished update."""

    def __init__(self, spec: TrainSpec, progress: EventWriter, stop: StopRequest, spec_path: str,
                 rank: group.Member | None = None, started_at: float | None = None) -> None:  # fmt: skip
        self.spec, self.progress, self.stop, self.spec_path, self.rank = spec, progress, stop, spec_path, rank
        self.started_at = time.time() if started_at is None else started_at
        self.hooks: TrainerHooks | None = None
        self.trainer: Any | None = None

    @property
    def update(self) -> int | None:
        return self.hooks.update if self.hooks is not None else None

    def run(self) -> int:
        spec, progress = self.spec, self.progress
        spec.check_inputs()
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
        gate = Gate(spec.gate_path) if spec.gate_path is not None and self.rank is None else None
        place: Callable[[], str] | None = None
        if self.rank is not None:  # the launcher prepared the checkpoint dir once, for every rank
            plan = self.rank.plan
        else:
            placement = group.resolve(spec.num_processes)
            if placement.processes > 1:
                if gate is not None and not gate.wait(lambda: self.stop.reason is not None):
                    self.progress.emit(Exit(ExitReason.STOPPED, detail=self.stop.reason, processes=placement.processes))
                    return 0  # a group waits before it prepares and starts its ranks: nothing written yet
                return self._launch(placement, _prepare(spec))
            if gate is not None and not gate.is_open():
                # The daemon prepared the checkpoint dir before it launched us; nothing is written before the gate.
                plan, place = _look(spec)
            else:
                plan = _prepare(spec)

        # torch + f5_tts: seconds of imports, after the spec and the checkpoint dir were checked
        from f5guard.trainer.build import build_dataset, build_trainer
        from f5guard.trainer.hardware import probe, resolve
        from f5guard.trainer.workers import shield_workers

        spec, setup = resolve(spec, probe())  # "auto" precision and batch, for the GPU this process sees
        self.spec = spec
        trainer, n_params = build_trainer(spec)
        # what accelerate made of it: "autocast" is whether the forward really runs under torch.autocast
        setup = dataclasses.replace(setup, precision=str(trainer.accelerator.mixed_precision),
                                    autocast=bool(trainer.accelerator.native_amp))  # fmt: skip
        dataset = build_dataset(spec)
        start = dataclasses.replace(
            plan, model=spec.model, params=n_params, samples=len(dataset), setup=setup,
            processes=self.rank.world if self.rank is not None else 1,
        )  # fmt: skip
        verify = os.environ.get(VERIFY_ENV) == "1"
        self.hooks = TrainerHooks(trainer, spec, progress, self.stop, start=start, verify_resume=verify,
                                  gate=gate, place=place, started_at=self.started_at)  # fmt: skip
        self.hooks.install()
        self.trainer = trainer
        shield_workers()
        try:
            trainer.train(dataset, num_workers=spec.num_workers, resumable_with_seed=RESUMABLE_SEED)
        except GracefulStop as stopped:
            progress.emit(Exit(ExitReason.STOPPED, update=stopped.update, detail=stopped.reason))
            return 0
        progress.emit(Exit(ExitReason.FINISHED, update=self.hooks.update))
        return 0

    def _launch(self, placement: group.Placement, plan: Start) -> int:
        stackdump.name_role(f"launcher of {placement.processes} ranks")
        if self.stop.reason is not None:  # asked to stop before any rank started: nothing to save
            self.progress.emit(Exit(ExitReason.STOPPED, detail=self.stop.reason, processes=placement.processes))
            return 0
        argv = [sys.executable, "-m", "f5guard.trainer", "--spec", self.spec_path]
        ranks = group.Group(argv, placement, plan, self.spec.threads)
        return ranks.wait(self.stop, self.progress)


def _prepare(spec: TrainSpec) -> Start:
    """Quarantine what cannot resume and place the pretrained model: the start event's actions and files."""
    plan = prepare_resume(spec.checkpoint_dir)
    actions = list(plan.actions)
    if plan.chosen is None and spec.pretrained is not None:
        placed = place_pretrained(spec.pretrained, spec.checkpoint_dir)
        actions.append(f"placed {spec.pretrained} as {placed.name}")
    quarantined = tuple(Quarantined(name=q.name, moved_to=q.moved_to, reason=q.reason) for q in plan.quarantined)
    return Start(start_update=0, actions=tuple(actions), quarantined=quarantined)


def _look(spec: TrainSpec) -> tuple[Start, Callable[[], str] | None]:
    """A gated trainer's plan, read only: where it would start, and how to place the pretrained model when the
    checkpoint dir holds nothing to load (done after the gate: placing it is a write)."""
    if scan_dir(spec.checkpoint_dir).newest() is not None or spec.pretrained is None:
        return Start(start_update=0), None
    pretrained = spec.pretrained

    def place() -> str:
        placed = place_pretrained(pretrained, spec.checkpoint_dir)
        return f"placed {pretrained} as {placed.name}"

    return Start(start_update=0), place


def _failure_reason(err: BaseException) -> ExitReason:
    """CUDA out of memory is a reason of its own: the daemon answers it with a smaller batch."""
    text = str(err)
    if type(err).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text:
        return ExitReason.CUDA_OOM
    return ExitReason.ERROR


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:500]


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is saved, reported, closed and the workers are gone; skipping the interpreter's teardown
    # (seconds of torch's C++ destructors after the exit event) lets a supervisor see the exit at once.
    group.die_like(code)
