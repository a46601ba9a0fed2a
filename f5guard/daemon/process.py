"""The daemon: owns the work dir (flock) and the home lease, runs the supervisor loop, writes state.

``python -m f5guard.daemon`` is what ``f5guard start`` spawns detached; ``f5guard run --foreground`` runs the
same loop attached (systemd: sd_notify READY/WATCHDOG/STOPPING when NOTIFY_SOCKET is set); with
``--until-done`` it exits once every run is final, its code saying how (daemon/exitcodes.py: a batch job's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from filelock import FileLock, Timeout

from f5guard import __version__, pidfile, requests, sdnotify
from f5guard.checkpoints.durable import highest_durable_epoch
from f5guard.config import load_config
from f5guard.daemon import exitcodes, logs
from f5guard.daemon.configwatch import ConfigWatch
from f5guard.daemon.launcher import ReadyChannel
from f5guard.daemon.mirror import mirror_file, mirror_tree
from f5guard.daemon.supervisor import Supervisor
from f5guard.errors import DaemonError, F5guardError, HomeUnreachable, LeaseLost
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.lease.claims import Claim
from f5guard.lease.hold import HomeLease
from f5guard.machine import boot_id, hostname
from f5guard.redact import Redactor
from f5guard.schema import Config
from f5guard.stages.attempt import kill_leftover_group
from f5guard.stages.context import RunContext
from f5guard.state import DaemonNote, StageStatus, StateDoc, StateStore
from f5guard.status.answer import answer_requests, note_work_dir
from f5guard.training.kind import TrainOptions

TICK_S = 0.5
STATE_MIRROR_S = 10.0
CONFIG_POLL_S = 5.0  # how often the daemon looks whether its config file was edited
FINAL_UPLOADS_S = 7200.0  # --until-done: how long the finished daemon waits for its last uploads' records


class _StopBeforeReady(Exception):
    """A stop signal while the daemon still waits for the lease: leave at once."""


class Daemon:
    """One supervisor process for one config (work dir + home)."""

    def __init__(
        self,
        config: Config,
        *,
        takeover: bool = False,
        foreground: bool = False,
        accept_older: bool = False,
        until_done: bool = False,
    ) -> None:
        self.accept_older = accept_older
        self.until_done = until_done  # a batch job: exit once every run is final (daemon/exitcodes.py)
        self._finished_at: float | None = None  # --until-done: when every run was first seen final (monotonic)
        self.config = config
        self.takeover = takeover
        self.foreground = foreground
        self.work = WorkLayout(config.work)
        self.home = HomeLayout(config.home)
        self.ready = ReadyChannel()
        self.wake = threading.Event()
        self.stop_requested: str | None = None
        self.requests_waiting = True
        self.status_waiting = False
        self.boot = boot_id()
        self.started_at = time.time()
        self.log = logs.get_logger()  # rebound once logging is configured (after the work lock is ours)
        self.lease: HomeLease | None = None
        self.serving = False
        self.exit_reason: str | None = None  # one line for the exit note: why this life ended
        self._write_problem: str | None = None  # the last home write failed (read-only, full): status says so
        self.store = StateStore(self.work.state, self.home.lease_dir, mirror_interval_s=STATE_MIRROR_S)

    # -- life cycle -------------------------------------------------------------------------------------
    def main(self) -> int:
        """Run until stopped; returns the process exit code. Every startup failure reaches ``start``."""
        try:
            self.work.root.mkdir(parents=True, exist_ok=True)
            self.home.lease_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            return self._startup_failed(DaemonError(f"cannot create {err.filename}: {err.strerror}"))
        work_lock = FileLock(str(self.work.lock), timeout=1.0)
        try:
            work_lock.acquire()
        except Timeout:
            other = pidfile.read(self.work.pidfile)
            self.ready.send("already-running", pid=other.pid if other else None)
            self.ready.close()
            if self.foreground:  # no start pipe to tell: systemd's journal must not see a silent clean exit
                print(f"f5guard: a daemon (pid {other.pid if other else '?'}) already runs in {self.work.root}",
                      file=sys.stderr)  # fmt: skip
                return 1
            return 0
        code, reason, crashed = 1, "it failed to start", False
        try:
            code = self._main_locked()
            reason = self.exit_reason or ("stopped" if code == 0 else "it failed to start")
        except Exception as err:
            reason, crashed = f"crashed: {type(err).__name__}: {' '.join(str(err).split())}", True
            self.log.exception("daemon crashed", error=reason)
            raise
        finally:
            pidfile.write_exit(
                self.work.exit_note, pidfile.ExitNote(time.time(), os.getpid(), reason, code, crashed=crashed)
            )
            with contextlib.suppress(OSError):
                self.work.pidfile.unlink()
            work_lock.release()
        return code

    def _main_locked(self) -> int:
        logs.configure(self.work.daemon_log, self.config.logs, console=self.foreground)
        self.log = logs.get_logger()
        redactor = Redactor([stage.env for run in self.config.runs for stage in run.stages])
        logs.set_redactor(redactor)
        self.log.info(
            "daemon starting",
            pid=os.getpid(),
            host=hostname(),
            config=str(self.config.path),
            version=__version__,
            takeover=self.takeover,
        )
        self._write_pidfile("starting")
        self._install_signals()
        try:
            self.lease = HomeLease(self.home, self.config.lease, work=str(self.work.root))
            self.store.runtime = self.lease.me.name
            floor = max(
                self.store.highest_epoch(),
                *(highest_durable_epoch(self.home.checkpoints(r.name)) for r in self.config.runs),
            )
            epoch = self.lease.acquire(takeover=self.takeover, floor_epoch=floor, on_wait=self._waiting_for_lease)
        except _StopBeforeReady:
            self.log.info("stopped while waiting for the lease")
            if self.lease is not None:
                self.lease.release()
            return 0
        except F5guardError as err:
            return self._startup_failed(err)
        except OSError as err:
            return self._startup_failed(DaemonError(f"cannot claim home at {self.home.claims}: {err}"))
        self.serving = True
        try:
            loaded = self.store.load()
        except F5guardError as err:
            self.lease.release()
            return self._startup_failed(err)
        for problem in loaded.problems:
            self.log.warning("state copy skipped", problem=problem)
        doc = loaded.doc
        doc.epoch = epoch
        doc.daemon = DaemonNote(
            pid=os.getpid(),
            host=hostname(),
            started_at=self.started_at,
            boot_id=self.boot,
            version=__version__,
            runtime=self.lease.me.name,
        )
        self._reap_leftovers(doc)
        supervisor = Supervisor(self.config, doc, self._run_context(redactor, epoch, self.lease))
        self._write_pidfile("ready", epoch=epoch)
        note_work_dir(self.config)
        self.log.info("daemon ready", epoch=epoch, state_from=str(loaded.source) if loaded.source else None)
        self.log.info("stack python", python=self.config.python.path, how=self.config.python.how)
        self.ready.send("ready", pid=os.getpid(), epoch=epoch, log=str(self.work.daemon_log))
        self.ready.close()
        sdnotify.notify(f"READY=1\nSTATUS=supervising {len(self.config.runs)} run(s), epoch {epoch}")
        return self._serve(supervisor, doc)

    def _run_context(self, redactor: Redactor, epoch: int, lease: HomeLease) -> RunContext:
        return RunContext(
            work=self.work,
            home=self.home,
            logs=self.config.logs,
            redactor=redactor,
            boot_id=self.boot,
            wake=self.wake,
            log=self.log,
            base_env=dict(os.environ),
            epoch=epoch,
            fence=lease.check,
            gate=lease.training_gate,
            may_delete=lease.may_delete,
            lease=self.config.lease,
            store=self.config.store,
            accept_older=self.accept_older,
            runtime_tag=lease.me.tag,
        )

    def _startup_failed(self, err: F5guardError) -> int:
        self.exit_reason = f"failed to start: {err.message}"
        self.log.error("daemon failed to start", error=err.message)
        self.ready.send("failed", error=err.message, exit_code=err.exit_code)
        self.ready.close()
        print(f"f5guard: {err.message}", file=sys.stderr)
        return exitcodes.for_error(err) if self.until_done else err.exit_code

    def _waiting_for_lease(self, holder: Claim) -> None:
        wait = self.config.lease.duration_s + self.config.lease.takeover_slack_s
        self.log.warning("waiting for the home lease", holder=holder.describe(), wait_s=wait, takeover=self.takeover)
        self._write_pidfile("waiting-lease")
        self.ready.send("waiting-lease", holder=holder.describe(), wait_s=wait, takeover=self.takeover)

    # -- the control loop ---------------------------------------------------------------------------------
    def _serve(self, supervisor: Supervisor, doc: StateDoc) -> int:
        assert self.lease is not None
        self._save(doc, home=True)
        self.store.prune_home(doc.epoch)
        watchdog = sdnotify.watchdog_interval_s()
        next_lease = next_mirror = next_watchdog = next_config = 0.0
        config_watch = ConfigWatch(self.config)
        exit_code = 0
        while not self.stop_requested:
            now = time.monotonic()
            if now >= next_lease:
                next_lease = now + self.config.lease.epoch_poll_s
                lost = self._check_lease(supervisor, doc)
                if lost is not None:
                    return lost
            if now >= next_config:
                next_config = now + CONFIG_POLL_S
                if config_watch.poll():
                    doc.daemon["config_note"] = config_watch.note
                    self.log.warning("config file changed", note=config_watch.note)
                    self._save(doc)
            self._answer_clients(supervisor)
            changed = supervisor.step(now)
            if changed:
                self._save(doc)
            if self.until_done and (verdict := self._verdict(doc, now)) is not None:
                exit_code, self.stop_requested = verdict, f"every run finished: {exitcodes.MEANING[verdict]}"
                continue
            if now >= next_mirror:
                next_mirror = now + self.config.logs.mirror_interval_s
                self._mirror(doc)
            if watchdog and now >= next_watchdog:
                next_watchdog = now + watchdog
                sdnotify.watchdog_ping()
            timeout = TICK_S
            wake_at = supervisor.next_wakeup()
            if wake_at is not None:
                timeout = max(0.0, min(timeout, wake_at - time.monotonic()))
            if not changed:
                self.wake.wait(timeout)
            self.wake.clear()
        self.log.info("daemon stopping", reason=self.stop_requested)
        self.exit_reason = f"stopped ({self.stop_requested})"
        if self.until_done and self._finished_at is None:  # a signal before the end: never 0 (that is success)
            exit_code = exitcodes.INTERRUPTED
        self._write_pidfile("stopping", epoch=doc.epoch)
        sdnotify.notify("STOPPING=1")
        supervisor.stop()
        self._save(doc, home=True)
        self._mirror(doc)
        self.lease.release()
        self.log.info("daemon stopped")
        return exit_code

    def _verdict(self, doc: StateDoc, now: float) -> int | None:
        """``--until-done``: the exit code once every run is final and this VM's last checkpoints are recorded in
        the cloud (the next runtime reads those records; at most ``FINAL_UPLOADS_S``), else None."""
        verdict = exitcodes.for_runs(r.state for r in doc.runs.values())
        if verdict is None:
            return None
        if self._finished_at is None:
            self._finished_at = now
        return verdict if self._uploads_settled(now - self._finished_at) else None

    def _uploads_settled(self, waited_s: float) -> bool:
        """Whether no sync still waits for an upload (or the wait is over). Only a train stage loads the sync
        module: without it nothing lingers."""
        sync = sys.modules.get("f5guard.checkpoints.sync")
        waiting = sync.lingering() if sync is not None else 0
        if waiting and waited_s < FINAL_UPLOADS_S:
            if waited_s == 0:
                self.log.info("every run finished; waiting for the last uploads to reach the cloud", syncs=waiting)
            return False
        if waiting:
            self.log.warning("the last uploads are not recorded in the cloud; leaving anyway", waited_s=waited_s)
        return True

    def _check_lease(self, supervisor: Supervisor, doc: StateDoc) -> int | None:
        """None while the lease is ours; the exit code after stopping everything when it was lost."""
        assert self.lease is not None
        try:
            self.lease.check()
            self._home_trouble(doc, self._write_problem)
        except HomeUnreachable as err:
            self._home_trouble(doc, err.message)
        except LeaseLost as err:
            self.log.error("lease lost; stopping every child and exiting", reason=err.message)
            self.exit_reason = f"lease lost: {err.message}"
            supervisor.stop()
            self.store.save(doc, mirror=False)
            self.lease.release()
            return exitcodes.for_error(err) if self.until_done else err.exit_code
        return None

    def _answer_clients(self, supervisor: Supervisor) -> None:
        """Requests the CLI left in files: resets (SIGUSR1) and status fast-path questions (SIGUSR2)."""
        if self.requests_waiting:
            self.requests_waiting = False
            self._apply_requests(supervisor)
        if self.status_waiting:
            self.status_waiting = False
            answer_requests(self.config)

    def _home_trouble(self, doc: StateDoc, problem: str | None) -> None:
        """Say once when home stops answering and once when it is back; status shows it meanwhile."""
        if doc.daemon.get("home_problem") == problem:
            return
        if problem:
            self.log.warning("home cannot be written; training continues locally", problem=problem)
        else:
            self.log.info("home reachable again; lease renewed")
        doc.daemon["home_problem"] = problem
        self._save(doc)

    def _save(self, doc: StateDoc, *, home: bool | None = None) -> None:
        try:
            self.store.save(doc, mirror=False)
        except OSError as err:
            self.log.error("cannot write state", path=str(self.work.state), error=str(err))
        self._mirror_state(doc, force=bool(home))

    def _mirror_state(self, doc: StateDoc, *, force: bool) -> None:
        assert self.lease is not None
        if not (force or self.store.home_due()):
            return
        try:
            self.lease.check()  # fencing: never overwrite a newer owner's view of home
            self.store.write_home(doc)
            self._write_problem = None
        except HomeUnreachable:
            pass  # the control loop reports it; the home copy catches up when home answers
        except LeaseLost:
            self.wake.set()
        except OSError as err:  # Drive hiccups, a full or read-only home: training goes on, home catches up later
            self.log.warning("cannot write state to home", path=str(self.store.home_path(doc.epoch)), error=str(err))
            self._write_problem = f"cannot write state to home: {err.strerror or err} ({err.filename or ''})"
            self._home_trouble(doc, self._write_problem)

    def _mirror(self, doc: StateDoc) -> None:
        self._mirror_state(doc, force=False)
        try:
            mirror_tree(self.work.logs, self.home.runtime_logs(doc.epoch, self.store.runtime))
            for run in self.config.runs:  # `f5guard plot` reads these, also on a fresh VM
                for stage in run.stages:
                    if isinstance(stage.options, TrainOptions) and stage.options.mode == "builtin":
                        copy = self.home.progress_copy(run.name, doc.epoch, self.store.runtime)
                        mirror_file(Path(stage.options.progress_path), copy)
        except OSError as err:
            self.log.warning("cannot mirror logs to home", error=str(err))

    def _apply_requests(self, supervisor: Supervisor) -> None:
        for path, request in requests.pending(self.work.requests):
            if request is None:
                self.log.warning("unreadable request dropped", path=str(path))
            elif (sup := supervisor.run(request.run)) is None:
                self.log.warning("reset request for an unknown run dropped", run=request.run)
            elif request.stage is not None and sup.run.stage(request.stage) is None:
                self.log.warning("reset request for an unknown stage dropped", run=request.run, stage=request.stage)
            else:
                sup.reset(request.stage)
            requests.done(path)

    def _reap_leftovers(self, doc: StateDoc) -> None:
        """Stages that were running when the last daemon died: kill what is left of them, mark interrupted."""
        for run_name, run in doc.runs.items():
            for stage_name, record in run.stages.items():
                if record.state is not StageStatus.RUNNING:
                    continue
                if record.pid and kill_leftover_group(record.pid, record.pid_started):
                    self.log.warning("killed a leftover process group", run=run_name, stage=stage_name, pgid=record.pid)
                record.state, record.pid, record.pid_started = StageStatus.INTERRUPTED, None, None
                record.reason = "its supervisor stopped or died while it ran"

    # -- plumbing -------------------------------------------------------------------------------------------
    def _write_pidfile(self, phase: str, epoch: int = 0) -> None:
        pidfile.write(
            self.work.pidfile,
            pidfile.DaemonInfo(
                pid=os.getpid(),
                host=hostname(),
                started_at=self.started_at,
                boot_id=self.boot,
                config=str(self.config.path),
                version=__version__,
                epoch=epoch,
                phase=phase,
            ),
        )

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self.stop_requested = signal.Signals(signum).name
            self.wake.set()
            if not self.serving:
                raise _StopBeforeReady

        def poke(_signum: int, _frame: FrameType | None) -> None:
            self.requests_waiting = True
            self.wake.set()

        def asked(_signum: int, _frame: FrameType | None) -> None:
            self.status_waiting = True
            self.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, poke)
        signal.signal(signal.SIGUSR2, asked)  # the `f5guard status` fast path
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal must not stop training


def run_daemon(
    config_path: Path, *, takeover: bool, foreground: bool, accept_older: bool = False, until_done: bool = False
) -> int:
    try:
        config = load_config(config_path)
    except F5guardError as err:
        ReadyChannel().send("failed", error=err.message, exit_code=err.exit_code)
        print(f"f5guard: {err.message}", file=sys.stderr)
        return exitcodes.for_error(err) if until_done else err.exit_code
    daemon = Daemon(config, takeover=takeover, foreground=foreground, accept_older=accept_older, until_done=until_done)
    return daemon.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f5guard.daemon", description="the detached daemon entry")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--takeover", action="store_true")
    parser.add_argument("--accept-older", action="store_true")
    parser.add_argument("--foreground", action="store_true")
    args = parser.parse_args(argv)
    os.chdir("/")  # never keep a notebook's folder (or an unmounting Drive) busy
    return run_daemon(args.config, takeover=args.takeover, foreground=args.foreground, accept_older=args.accept_older)
