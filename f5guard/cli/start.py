"""``f5guard start``: launch the detached daemon and return once it reports ready (or say why it did not)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import click

from f5guard import pidfile, requests
from f5guard.checkpoints.room import room_problem
from f5guard.cli.common import Context, config_option, open_config
from f5guard.control.client import ask
from f5guard.control.protocol import (
    AlreadyRunning,
    Done,
    Ready,
    RetryRequest,
    StartFailed,
    StopRequest,
    WaitingLease,
)
from f5guard.daemon.launcher import spawn_daemon
from f5guard.errors import DaemonError, NoRoom
from f5guard.machine import boot_id
from f5guard.requests import pending
from f5guard.stages.plan import plan_run
from f5guard.state import RunStatus, StageStatus, StateStore
from f5guard.training.kind import TrainOptions, check_gpu_keys

_FAILED_STAGES = (StageStatus.FATAL, StageStatus.FAILED)

STDIO_TAIL = 15
ANSWER_TIMEOUT_S = 10.0  # a busy control loop answers within a pass
ACCEPT_OLDER_STOP_S = 60.0  # a daemon waiting for a checkpoint runs no trainer: it stops in a second


@click.command("start")
@config_option
@click.option("--takeover", is_flag=True, help="Take the home lease from another runtime (it stops on seeing it).")
@click.option(
    "--accept-older",
    is_flag=True,
    help="Resume from the newest checkpoint that did arrive on home, though state names a newer one.",
)
@click.option("--dry-run", is_flag=True, help="Show what would run and why; start nothing.")
def command(config_path: str | None, takeover: bool, accept_older: bool, dry_run: bool) -> int:
    """Start the supervisor in the background; returns within seconds."""
    ctx = open_config(config_path)
    if dry_run:
        return _dry_run(ctx)
    check_gpu_keys(ctx.config)
    info = pidfile.running_daemon(ctx.work.lock, ctx.work.pidfile)
    if info is not None and accept_older:
        info = _restart_accepting_older(ctx, info)
    if info is not None:
        click.echo(f"f5guard is already running here (pid {info.pid}); see `f5guard status`.")
        _retry_failed_runs(ctx)
        return 0
    _check_room(ctx)
    previous = pidfile.read_exit(ctx.work.exit_note)
    if previous is not None and (previous.crashed or previous.code not in (0,)):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(previous.at))
        click.secho(f"the previous supervisor (pid {previous.pid}) ended at {when}: {previous.reason}", fg="yellow")
    result = spawn_daemon(ctx.config.path, ctx.work.daemon_stdio, takeover=takeover, accept_older=accept_older)
    last = result.last
    if isinstance(last, Ready):
        click.echo(f"f5guard started: pid {last.pid}, epoch {last.epoch}.")
        click.echo(f"  logs   {ctx.work.logs}  (mirrored to {ctx.home.logs})")
        click.echo("  watch  f5guard status · f5guard tail -f · f5guard stop")
        return 0
    if isinstance(last, WaitingLease):
        if last.takeover:
            click.echo(
                f"f5guard started (pid {result.pid}) and is taking over home from {last.holder}: that "
                f"supervisor stops when it sees the new epoch, or is overruled after {last.wait_s:.0f}s. "
                "`f5guard status` shows progress."
            )
        else:
            click.echo(
                f"f5guard started (pid {result.pid}) and waits up to {last.wait_s:.0f}s for the home "
                f"lease: {last.holder} has stopped renewing it. It takes over once that holder is "
                "confirmed gone; `f5guard status` shows progress."
            )
        return 0
    if isinstance(last, AlreadyRunning):
        click.echo(f"f5guard is already running here (pid {last.pid}); see `f5guard status`.")
        return 0
    if isinstance(last, StartFailed):
        err = DaemonError(last.error)
        err.exit_code = last.exit_code
        raise err
    raise DaemonError(_died_message(ctx, result.pid, result.exited))


def _check_room(ctx: Context) -> None:
    """Refuse in one line when home cannot hold a train stage's next checkpoint plus the one kept meanwhile."""
    for run in ctx.config.runs:
        for stage in run.stages:
            options = stage.options
            if isinstance(options, TrainOptions):
                problem = room_problem(Path(options.home_checkpoints), Path(options.checkpoint_dir))
                if problem is not None:
                    raise NoRoom(f"run {run.name!r}: {problem}")


def _restart_accepting_older(ctx: Context, info: pidfile.DaemonInfo) -> pidfile.DaemonInfo | None:
    """``--accept-older`` is the answer to a daemon that waits for a checkpoint (or gave up waiting): stop it and
    start one that accepts what is here. Never while a stage process runs (a trainer would lose its progress):
    then the running daemon is returned, untouched."""
    doc = StateStore(ctx.work.state, ctx.home.lease_dir).load().doc
    busy = [f"{run}/{name}" for run, record in doc.runs.items() for name, stage in record.stages.items()
            if stage.state is StageStatus.RUNNING and stage.pid]  # fmt: skip
    if busy or info.pid <= 0:
        click.echo(f"--accept-older changes nothing now: {busy[0] if busy else 'a stage'} is running (it is for a "
                   "daemon that waits for a checkpoint).")  # fmt: skip
        return info
    click.echo(
        f"restarting the daemon (pid {info.pid}) with --accept-older: it resumes from the newest checkpoint here"
    )
    if not isinstance(ask(ctx.work.root, StopRequest(), timeout_s=ANSWER_TIMEOUT_S), Done):
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)  # not serving yet (still waiting for the lease)
    deadline = time.monotonic() + ACCEPT_OLDER_STOP_S
    while pidfile.lock_is_held(ctx.work.lock) or pidfile.pid_alive(info.pid):
        if time.monotonic() > deadline:
            raise DaemonError(f"the daemon (pid {info.pid}) did not stop within {ACCEPT_OLDER_STOP_S:.0f}s; "
                              "`f5guard stop`, then `f5guard start --accept-older`")  # fmt: skip
        time.sleep(0.1)
    return None


def _died_message(ctx: Context, pid: int, exited: int | None) -> str:
    how = "is still starting after 30 s" if exited is None else f"exited with status {exited} before it was ready"
    note = pidfile.read_exit(ctx.work.exit_note)
    if note is not None and note.pid == pid:  # its own word: its output may be cut short (a full disk)
        return f"the daemon (pid {pid}) {how}: {note.reason} (full output: {ctx.work.daemon_stdio})"
    try:
        lines = ctx.work.daemon_stdio.read_text(errors="replace").strip().splitlines()[-STDIO_TAIL:]
    except OSError:
        lines = []
    last = lines[-1].strip() if lines else "no output"
    return f"the daemon (pid {pid}) {how}: {last} (full output: {ctx.work.daemon_stdio})"


def _dry_run(ctx: Context) -> int:
    """Plan like the daemon would at start, pending resets included, and print it like ``dvc status``: which
    stages need the network, and the inputs found but not read (a FIFO, a dangling symlink) with why."""
    doc = StateStore(ctx.work.state, ctx.home.lease_dir).load().doc
    for _path, request in pending(ctx.work.requests):
        if request is None or (run := ctx.config.run(request.run)) is None:
            continue
        names = [s.name for s in run.stages]
        start = names.index(request.stage) if request.stage in names else 0
        for name in names[start:]:
            record = doc.stage(run.name, name)
            record.fingerprint = None
            record.move(StageStatus.PENDING, "reset requested")
    from f5guard.recipe.network import network_need
    from f5guard.stages.fingerprint import skipped

    most = 5  # inputs found but not read, listed per stage
    boot = boot_id()
    for run in ctx.config.runs:
        click.echo(f"run {run.name}:")
        for decision in plan_run(run, doc.runs[run.name].stages if run.name in doc.runs else {}, boot):
            verdict = f"would run: {decision.why}" if decision.run else "up to date"
            need = network_need(decision.stage) if decision.run else None
            click.echo(f"  {decision.stage.name}: {verdict}" + (f" · needs the network: {need}" if need else ""))
            passed = skipped(decision.fingerprint.parts["inputs"])  # only regular files are read
            for path, reason in passed[:most]:
                click.echo(f"    not read: {path}: {reason}")
            if len(passed) > most:
                click.echo(f"    not read: {len(passed) - most} more")
    click.echo(f"python: {ctx.config.python.path} ({ctx.config.python.how})")  # the training stack runs in it
    return 0


def _retry_failed_runs(ctx: Context) -> None:
    """Like supervisorctl's ``start`` of a FATAL program: runs that ended FATAL or FAILED start again from
    their failed stage (earlier stages stay done; training resumes from its newest checkpoint). The daemon
    decides from its own state; one that does not answer finds the same resets queued within seconds."""
    answer = ask(ctx.work.root, RetryRequest(), timeout_s=ANSWER_TIMEOUT_S)
    if isinstance(answer, Done):
        if answer.text:
            click.echo(answer.text)
        return
    doc = StateStore(ctx.work.state, ctx.home.lease_dir).load().doc
    for run in ctx.config.runs:
        record = doc.runs.get(run.name)
        if record is None or record.state not in (RunStatus.FATAL, RunStatus.FAILED):
            continue
        failed = next(
            (s.name for s in run.stages if (r := record.stages.get(s.name)) and r.state in _FAILED_STAGES), None
        )
        requests.submit(ctx.work.requests, requests.ResetRequest(run=run.name, stage=failed, created_at=time.time()))
        click.echo(f"retrying run {run.name!r} from stage {failed!r}: it was {record.state.value} ({record.reason})")
