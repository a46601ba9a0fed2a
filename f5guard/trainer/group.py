"""Several ranks of one training (``num_processes`` > 1): the trainer entry launches and supervises them itself.

The entry resolves the count (``"auto"``: ``torch.cuda.device_count()``, which honours CUDA_VISIBLE_DEVICES; 1
without a GPU) because the daemon never imports torch. With N > 1 it becomes this launcher: it prepares the
checkpoint dir once, starts N copies of itself with the environment torchrun would give them (RANK, LOCAL_RANK,
WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so F5-TTS's Accelerator forms the DDP group exactly as
under torchrun (NCCL on GPUs; gloo on CPU, where ACCELERATE_USE_CPU=true is what makes accelerate go
distributed at all), and supervises them.

Why not torchrun or ``accelerate launch`` (both read here, torch 2.9.1 and accelerate 1.15, and run on CPU):

- ``accelerate launch --cpu --num_processes 2`` starts the script once: with ``--cpu`` it takes its
  simple_launcher (its multi-CPU path is mpirun with a hostfile; there is no MPI here), and that lone process
  fails its first collective: "Default process group has not been initialized".
- torchrun starts every worker with ``start_new_session=True``: a signal to the daemon's process group, its
  SIGKILL of what a dead attempt leaves, and the hang diagnosis (SIGABRT to the group) all miss the ranks.
- On SIGTERM torchrun forwards it, gives the ranks a fixed 30 s, SIGKILLs them and exits non-zero: the save of
  a large checkpoint can be cut off, and a graceful stop looks like a failure. Here the daemon's stop_grace_s
  is the only clock.
- When one worker dies torchrun SIGTERMs the others, which this trainer takes for a stop request: they would
  try to save through a collective with a dead peer (on NCCL that hangs until its timeout).

What this launcher guarantees instead:

- The ranks stay in the launcher's process group (the daemon's group signals reach them all) and carry
  F5GUARD_PARENT_PID = the launcher, so each takes SIGTERM if the launcher dies (pdeathsig.py); the launcher
  itself follows the daemon the same way.
- SIGTERM/SIGINT to the launcher (the daemon's stop signals only the group leader) is forwarded to every rank;
  the ranks agree on the stop update (hooks.py, collective.py) and exit 0 together; the launcher exits 0.
- Any rank that exits non-zero or dies kills the rest at once (the group cannot finish a collective without
  it) and the launcher ends the same way: killed by the rank's signal, or its exit code. The daemon then
  restarts the whole group from the newest valid checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from f5guard.pdeathsig import PARENT_ENV
from f5guard.trainer.hooks import StopRequest
from f5guard.trainer.spec import Processes, SpecError
from f5guard.trainevents import EventWriter, Exit, ExitReason, Start, decode, encode

GROUP_ENV = "F5GUARD_GROUP_PLAN"  # set on every rank: the start event the launcher prepared (its JSON line)
POLL_S = 0.1  # how soon a rank's death or a stop signal is acted on


@dataclass(frozen=True)
class Placement:
    """How many ranks, and whether they run on GPUs (one each) or on the CPU (gloo)."""

    processes: int
    gpus: int  # visible CUDA devices; 0: CPU ranks


@dataclass(frozen=True)
class Member:
    """This process is rank ``rank`` of a group of ``world`` started by the launcher."""

    rank: int
    world: int
    plan: Start  # actions and quarantined files of the checkpoint dir, prepared once by the launcher


def member() -> Member | None:
    """The group this process belongs to, from the launcher's environment; None for a lone trainer."""
    text = os.environ.get(GROUP_ENV)
    if text is None:
        return None
    plan = decode(json.loads(text))
    if not isinstance(plan, Start):
        raise SpecError(f"{GROUP_ENV} does not hold a start event: {text[:200]}")
    return Member(rank=int(os.environ["RANK"]), world=int(os.environ["WORLD_SIZE"]), plan=plan)


def resolve(requested: Processes, gpus: int | None = None) -> Placement:
    """The rank count for ``num_processes``; ``gpus`` defaults to what torch sees (imports torch unless 1).

    An explicit N above the visible GPUs would give two ranks one device index that does not exist: refused.
    Without a GPU, N CPU ranks over gloo are allowed (tests, and a check of the setup before paying for GPUs).
    """
    if requested == 1:
        return Placement(processes=1, gpus=0 if gpus is None else gpus)
    if gpus is None:
        gpus = _visible_gpus()
    if requested == "auto":
        return Placement(processes=max(1, gpus), gpus=gpus)
    if gpus and requested > gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        raise SpecError(
            f'num_processes = {requested} but only {gpus} GPU(s) are visible{where}: lower it or use "auto"'
        )
    return Placement(processes=requested, gpus=gpus)


def _visible_gpus() -> int:
    import torch  # the entry imports it moments later anyway

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def free_port() -> int:
    """A TCP port for rank 0's rendezvous store (torchrun --standalone picks its port the same way)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank_env(rank: int, placement: Placement, port: int, plan: Start, threads: int | None) -> dict[str, str]:
    n = placement.processes
    env = dict(os.environ)
    env.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n),
        "GROUP_RANK": "0", "ROLE_RANK": str(rank), "ROLE_WORLD_SIZE": str(n),
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        PARENT_ENV: str(os.getpid()), GROUP_ENV: json.dumps(encode(plan)),
    })  # fmt: skip
    if placement.gpus == 0:
        env["ACCELERATE_USE_CPU"] = "true"  # else accelerate sees no GPU and trains each rank on its own
    if threads is None and "OMP_NUM_THREADS" not in env:  # N ranks x all cores each would thrash the CPU
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    return env


class Group:
    """N ranks started from ``argv``; ``wait`` supervises them until all are done or one failed."""

    def __init__(self, argv: list[str], placement: Placement, plan: Start, threads: int | None) -> None:
        port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for rank in range(placement.processes):
                env = rank_env(rank, placement, port, plan, threads)
                # stdout/stderr inherited: every rank's output reaches the daemon's stage log, like one trainer's
                self.procs.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in self.procs:
            proc.wait()

    def wait(self, stop: StopRequest, progress: EventWriter) -> int:
        """0 when every rank exited 0; else -signal or the exit code of the first rank that failed."""
        forwarded: str | None = None
        try:
            while True:
                if stop.reason is not None and stop.reason != forwarded:
                    forwarded = stop.reason
                    self._forward(_signal_of(stop.reason))
                codes = [proc.poll() for proc in self.procs]
                failed = next((r for r, code in enumerate(codes) if code not in (None, 0)), None)
                if failed is not None:
                    code = codes[failed]
                    assert code is not None
                    self.kill()
                    how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
                    detail = f"rank {failed} (pid {self.procs[failed].pid}) {how}; the other ranks were killed"
                    progress.emit(Exit(ExitReason.RANK_FAILED, detail=detail, processes=len(self.procs)))
                    print(f"f5guard.trainer: {detail}", file=sys.stderr, flush=True)
                    return code
                if all(code == 0 for code in codes):
                    return 0
                time.sleep(POLL_S)
        finally:
            self.kill()  # an exception here (or in the caller's thread) must not leave ranks behind

    def _forward(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)


def _signal_of(reason: str) -> signal.Signals:
    try:
        return signal.Signals[reason.upper()]
    except KeyError:
        return signal.SIGTERM


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def die_like(code: int) -> None:
    """End this process the way its rank ended: a negative code is a signal (the daemon then reports
    "killed by SIGKILL", and proves an OOM kill, as for a lone trainer); otherwise exit with the code."""
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):
            os.kill(os.getpid(), -code)
            time.sleep(1.0)  # the signal is delivered; one that does not end a process falls through
        os._exit(128 - code)
    os._exit(code)
