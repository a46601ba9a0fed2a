"""``f5guard stop``: ask the daemon to stop (a stop request; SIGTERM to one not serving yet), wait for it to
finish, report how it went, and say whether each run's final checkpoint reached the cloud (``--wait-upload``:
wait, bounded, until it has)."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import click

from f5guard import pidfile
from f5guard.checkpoints.durable import list_durable, no_log
from f5guard.checkpoints.inspect import scan_dir
from f5guard.checkpoints.uploads import Uploads
from f5guard.cli.common import config_option, find_daemon
from f5guard.cloud import note as cloudnote
from f5guard.config import DEFAULT_STOP_GRACE_S
from f5guard.control.client import ask
from f5guard.control.protocol import Done, StopRequest
from f5guard.errors import DaemonError
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.machine import boot_id
from f5guard.schema import Config
from f5guard.state import StateStore
from f5guard.status.cloud import cloud_note, home_store
from f5guard.training.kind import TrainOptions

EXTRA_WAIT_S = 30.0
ANSWER_TIMEOUT_S = 5.0
TRAIN_FLUSH_S = 900.0  # as long as the daemon itself waits for the final sync (training.FLUSH_TIMEOUT_S)
WAIT_UPLOAD_S = 3600.0  # `--wait-upload` without a value: a 5.4 GB checkpoint at ~2 MB/s takes ~45 min
SAY_EVERY_S = 60.0


def _finite(_ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """FloatRange lets NaN through (every comparison with it is false) and inf means never: both are typos."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", param=param)
    return value


@click.command("stop")
@config_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=_finite,
    help="Seconds to wait (default: the longest stage grace period + 30).",
)
@click.option(
    "--wait-upload",
    "wait_upload",
    type=click.FloatRange(min=0, min_open=True),
    is_flag=False,
    flag_value=WAIT_UPLOAD_S,
    default=None,
    callback=_finite,
    metavar="[SECONDS]",
    help=f"Then wait (default {WAIT_UPLOAD_S:.0f} s) until the final checkpoint is in the cloud; exit 1 if not.",
)
def command(config_path: str | None, timeout: float | None, wait_upload: float | None) -> int:
    """Stop the supervisor: children get SIGTERM (a trainer checkpoints), then the lease is released."""
    handle = find_daemon(config_path, find_python=False)
    work, info = handle.work, handle.info
    if handle.note:
        click.echo(f"note: {handle.note}")
    if info is None:
        click.echo("no f5guard daemon runs here; nothing to stop.")
    else:
        _stop(handle.config, work, info, timeout)
    if handle.config is None:
        return 0
    if wait_upload is None:
        for run, line in _final_lines(handle.config):
            click.echo(f"run {run}: {line}")
        return 0
    return _wait_upload(handle.config, wait_upload)


def _stop(config: Config | None, work: WorkLayout, info: pidfile.DaemonInfo, timeout: float | None) -> None:
    if info.pid <= 0:
        raise DaemonError(f"a daemon holds {work.lock} but its pidfile {work.pidfile} is unreadable")
    stages = [s for r in config.runs for s in r.stages] if config else []
    grace = max((s.stop_grace_s for s in stages), default=DEFAULT_STOP_GRACE_S)
    if config is None or any(s.kind == "train" for s in stages):
        grace += TRAIN_FLUSH_S  # the last checkpoint is copied to home and verified before the daemon exits
    wait_s = timeout if timeout is not None else grace + EXTRA_WAIT_S
    started = time.monotonic()
    if pidfile.frozen(info.pid):  # SIGSTOPped: it can answer nothing, and a SIGTERM waits until it runs again
        click.echo(f"the daemon (pid {info.pid}) was stopped by a signal (SIGSTOP); continuing it so it can stop")
        os.kill(info.pid, signal.SIGCONT)
    answer = ask(work.root, StopRequest(), timeout_s=ANSWER_TIMEOUT_S)
    if not isinstance(answer, Done):  # still waiting for the lease (not serving yet), or too busy to answer
        try:
            os.kill(info.pid, signal.SIGTERM)
        except ProcessLookupError:
            click.echo("the daemon had already exited.")
            return
    click.echo(f"stopping f5guard (pid {info.pid}); a trainer checkpoints and its checkpoint is synced first...")
    # The lock goes first, then the process finishes exiting: wait for both, so nothing is left when we return.
    while pidfile.lock_is_held(work.lock) or pidfile.pid_alive(info.pid):
        if time.monotonic() - started > wait_s:
            raise DaemonError(
                f"the daemon (pid {info.pid}) is still stopping after {wait_s:.0f}s; "
                "see `f5guard tail` (run stop again to keep waiting)"
            )
        time.sleep(0.1)
    click.echo(f"stopped in {time.monotonic() - started:.1f}s.")


def _trains(config: Config) -> list[tuple[str, TrainOptions]]:
    return [(run.name, s.options) for run in config.runs for s in run.stages if isinstance(s.options, TrainOptions)]


def _final_lines(config: Config) -> list[tuple[str, str]]:
    """Per run with a train stage: whether its final checkpoint (the newest one on this VM) is in the cloud."""
    doc = StateStore(WorkLayout(config.work).state, HomeLayout(config.home).lease_dir).load().doc
    lines = []
    for name, options in _trains(config):
        run = config.run(name)
        assert run is not None
        newest = scan_dir(Path(options.checkpoint_dir)).newest()
        final = newest.update if newest is not None and newest.kind != "pretrained" else None
        try:
            durables = list_durable(Path(options.home_checkpoints))
        except OSError as err:
            lines.append((name, f"home does not answer ({err.strerror or err}): cannot tell what reached the cloud"))
            continue
        on_home = durables[-1].update if durables else None
        record = doc.runs.get(name)
        recorded = record.training.cloud if record is not None and record.training is not None else None
        note = cloud_note(config, run, recorded, supervised=False)
        lines.append((name, cloudnote.final_line(note, final if final is not None else on_home, on_home, time.time())))
    return lines


def _wait_upload(config: Config, seconds: float) -> int:
    """Wait until every run's newest checkpoint on home is in the cloud with its record (this VM confirms its
    own, as its daemon would have: the next runtime then waits for it rather than resuming below it)."""
    store = home_store(config)
    uploads = Uploads(store, boot_id=boot_id(), fence=lambda: None, log=no_log)
    deadline = time.monotonic() + seconds
    said = 0.0
    while True:
        pending = []
        for name, options in _trains(config):
            home = Path(options.home_checkpoints)
            try:
                durables = list_durable(home)
                if uploads.refresh(durables):
                    durables = list_durable(home)
                    uploads.refresh(durables)
            except OSError:  # a Drive hiccup: look again at the next poll
                pending.append(name)
                continue
            if durables and not uploads.recorded(durables[-1]):
                pending.append(name)
        now = time.monotonic()
        if not pending or now >= deadline or now - said >= SAY_EVERY_S:
            for run, line in _final_lines(config):
                click.echo(f"run {run}: {line}")
            said = now
        if not pending:
            return 0
        if now >= deadline:
            click.echo(f"still uploading after {seconds:.0f} s: {', '.join(pending)}; `f5guard stop --wait-upload` "
                       "again to keep waiting")  # fmt: skip
            return 1
        time.sleep(min(config.store.poll_s, max(0.0, deadline - now)))
