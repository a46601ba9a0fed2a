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

from f5guard import __version__, pidfile, requests
from f5guard.checkpoints.durable import highest_durable_epoch
from f5guard.config import load_config
from f5guard.control import sdnotify
from f5guard.control.protocol import AlreadyRunning, Ready, StartFailed, WaitingLease
from f5guard.control.server import ControlServer
from f5guard.daemon import exitcodes, handlers, logs
from f5guard.daemon.configwatch import ConfigWatch
from f5guard.daemon.launcher import ReadyChannel
from f5guard.daemon.mirror import AppendMirror, Mirrorer, mirror_tree
from f5guard.daemon.supervisor import Supervisor
from f5guard.errors import DaemonError, F5guardError, HomeUnreachable, LeaseLost
from f5guard.fsutil import keep_root, missing_root
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.lease.claims import Claim
from f5guard.lease.hold import HomeLease
from f5guard.machine import boot_id, hostname
from f5guard.redact import Redactor
from f5guard.schema import Config
from f5guard.stages import lineage
from f5guard.stages.attempt import kill_leftover_group
from f5guard.stages.context import RunContext
from f5guard.state import DaemonNote, StageStatus, StateDoc, StateStore
from f5guard.status.answer import note_work_dir

TICK_S = 0.5
STATE_MIRROR_S = 10.0
CONFIG_POLL_S = 5.0  # how often the daemon looks whether its config file was edited
MIRROR_CLOSE_S = 60.0  # at exit, the last copy of the logs to home may take this long (Drive)
REAP_S = 2.0  # how often orphans re-parented to the daemon (lineage.py) are collected
ADOPTED_GRACE_S = 3.0  # SIGTERM to SIGKILL for processes that left their stage's group, at stop
# Signals whose default action ends a process without a word. SIGQUIT asks to stop (it means "quit"); the rest
# carry no meaning for a supervisor (a stray `kill -ALRM`, a profiler's timer) and are noted, then ignored.
# A Python handler, not SIG_IGN: an ignored signal would stay ignored in every stage the daemon starts.
_STRAY_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT", "SIGXCPU", "SIGTRAP")
    if hasattr(signal, name)
) + tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
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
        self.requests_waiting = True  # resets queued in files while no daemon ran (requests.py)
        self.control = ControlServer(self.work.root, self.wake.set)
        self.mirror: Mirrorer | None = None  # copies logs and progress to home on its own thread (once serving)
        self._appended: dict[tuple[str, str], AppendMirror] = {}
        self.info: pidfile.DaemonInfo | None = None  # what the pidfile says, kept to answer status from memory
        self.problems: tuple[str, ...] = ()  # state copies that could not be read at start
        self.boot = boot_id()
        self.started_at = time.time()
        self.log = logs.get_logger()  # rebound once logging is configured (after the work lock is ours)
        self.lease: HomeLease | None = None
        self.serving = False
        self.exit_reason: str | None = None  # one line for the exit note: why this life ended
        self._write_problem: str | None = None  # the last home write failed (read-only, full): status says so
        self._lock_id: tuple[int, int] | None = None  # the work dir's lock file we hold (pidfile.file_id)
        self.supervisor: Supervisor | None = None
        self.stray_signals: list[str] = []  # noted by the handler, logged by the control loop
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
            self.ready.send(AlreadyRunning(other.pid if other else None))
            self.ready.close()
            if self.foreground:  # no start pipe to tell: systemd's journal must not see a silent clean exit
                print(f"f5guard: a daemon (pid {other.pid if other else '?'}) already runs in {self.work.root}",
                      file=sys.stderr)  # fmt: skip
                return 1
            return 0
        self._lock_id = pidfile.file_id(self.work.lock)
        keep_root(self.work.root)  # from now on a vanished work dir or home is noticed, never quietly recreated
        keep_root(self.home.root)
        lineage.become_subreaper()  # orphans of our stages come to us, not to PID 1 (lineage.py)
        os.environ[lineage.MARKER_ENV] = lineage.marker()  # every process we start carries it
        pidfile.reserve_exit_room(self.work.exit_note)
        code, reason, crashed = 1, "it failed to start", False
        try:
            code = self._main_locked()
            reason = self.exit_reason or ("stopped" if code == 0 else "it failed to start")
        except _StopBeforeReady:
            code, reason = 0, "stopped before it was ready"
        except BaseException as err:
            what = f"{type(err).__name__}: {' '.join(str(err).split())}".rstrip(": ")
            reason, crashed = f"crashed: {what}", True
            with contextlib.suppress(Exception):
                self.log.exception("daemon crashed", error=reason)
            self._end_children(grace_s=5.0)
            raise
        finally:
            self.control.close()
            self._end_children(grace_s=ADOPTED_GRACE_S, supervisor=False)
            if self.owns_work():  # a successor in a recreated work dir keeps its pidfile and exit note
                note = pidfile.ExitNote(time.time(), os.getpid(), reason, code, crashed=crashed)
                if not pidfile.write_exit(self.work.exit_note, note):
                    print(f"f5guard: cannot write {self.work.exit_note}; the daemon ended: {reason}", file=sys.stderr)
                pidfile.remove_if_mine(self.work.pidfile, os.getpid(), self.started_at)
            work_lock.release()
        return code

    def owns_work(self) -> bool:
        """The lock file in the work dir is still the one we hold (nobody deleted or replaced the work dir)."""
        return self._lock_id is not None and pidfile.file_id(self.work.lock) == self._lock_id

    def _end_children(self, grace_s: float, *, supervisor: bool = True) -> None:
        """Whatever is left of what this daemon started: the stages (after a crash), then the processes that
        left their stage's group (re-parented to us, or carrying our marker). Never raises."""
        if supervisor and self.supervisor is not None:
            with contextlib.suppress(Exception):
                self.supervisor.stop(grace_s)
        with contextlib.suppress(Exception):
            left = {p.pid: p for p in lineage.adopted() + lineage.marked(lineage.marker())}
            if left:
                self.log.warning("ending processes that left their stage", pids=sorted(left))
                lineage.end(list(left.values()), grace_s)

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
        self.problems = loaded.problems
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
        self.supervisor = supervisor
        try:
            self.control.start()
        except OSError as err:  # a work dir that cannot hold a socket: status reads files, stop signals
            self.log.warning("cannot listen for clients", path=str(self.control.path), error=str(err))
        self._write_pidfile("ready", epoch=epoch)
        note_work_dir(self.config)
        self.log.info("daemon ready", epoch=epoch, state_from=str(loaded.source) if loaded.source else None)
        self.log.info("stack python", python=self.config.python.path, how=self.config.python.how)
        self.ready.send(Ready(os.getpid(), epoch, str(self.work.daemon_log)))
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
        self.ready.send(StartFailed(err.message, err.exit_code))
        self.ready.close()
        print(f"f5guard: {err.message}", file=sys.stderr)
        return exitcodes.for_error(err) if self.until_done else err.exit_code

    def _waiting_for_lease(self, holder: Claim) -> None:
        wait = self.config.lease.duration_s + self.config.lease.takeover_slack_s
        self.log.warning("waiting for the home lease", holder=holder.describe(), wait_s=wait, takeover=self.takeover)
        self._write_pidfile("waiting-lease")
        self.ready.send(WaitingLease(holder.describe(), wait, self.takeover))

    # -- the control loop ---------------------------------------------------------------------------------
    def _serve(self, supervisor: Supervisor, doc: StateDoc) -> int:
        assert self.lease is not None
        self._save(doc, home=True)
        self.store.prune_home(doc.epoch)
        epoch = doc.epoch
        self.mirror = Mirrorer(lambda: self._mirror_files(epoch))
        watchdog = sdnotify.watchdog_interval_s()
        next_lease = next_mirror = next_watchdog = next_config = next_reap = 0.0
        config_watch = ConfigWatch(self.config)
        exit_code = 0
        stopping = False
        while not (stopping and supervisor.idle):
            if self.stop_requested and not stopping:
                stopping = True  # the loop goes on (status answers) until every stage stopped and synced
                exit_code = self._begin_stop(supervisor, doc, exit_code)
            now = time.monotonic()
            if not self.owns_work():
                return self._work_lost(supervisor)
            if now >= next_reap:
                next_reap = now + REAP_S
                self._housekeeping()
            if now >= next_lease:
                next_lease = now + self.config.lease.epoch_poll_s
                lost = self._check_lease(supervisor, doc)
                if lost is not None:
                    return lost
            if now >= next_config:
                next_config = now + CONFIG_POLL_S
                self._poll_config(config_watch, doc)
            self._answer_clients(supervisor, doc)
            changed = supervisor.step(now)
            if changed:
                self._save(doc)
            if not stopping and (verdict := self._verdict(doc, now)) is not None:
                exit_code, self.stop_requested = verdict, f"every run finished: {exitcodes.MEANING[verdict]}"
                continue
            if now >= next_mirror:
                next_mirror = now + self.config.logs.mirror_interval_s
                self._mirror(doc)
            if watchdog and now >= next_watchdog:
                next_watchdog = now + watchdog
                sdnotify.watchdog_ping()
            if not changed:
                self._sleep(supervisor)
            self.wake.clear()
        self._save(doc, home=True)
        self._mirror_state(doc, force=True)
        self._close_mirror()
        self.lease.release()
        self.log.info("daemon stopped")
        return exit_code

    def _sleep(self, supervisor: Supervisor) -> None:
        """Until the next tick, a stage's own wake-up time (a restart's backoff), or a wake (a client, an exit)."""
        timeout = TICK_S
        wake_at = supervisor.next_wakeup()
        if wake_at is not None:
            timeout = max(0.0, min(timeout, wake_at - time.monotonic()))
        self.wake.wait(timeout)

    def _poll_config(self, config_watch: ConfigWatch, doc: StateDoc) -> None:
        """Now and then: resets queued in files by a client that found no daemon answering, and config edits."""
        self.requests_waiting = True
        if config_watch.poll():
            doc.daemon["config_note"] = config_watch.note
            self.log.warning("config file changed", note=config_watch.note)
            self._save(doc)

    def _begin_stop(self, supervisor: Supervisor, doc: StateDoc, exit_code: int) -> int:
        """Ask every stage to stop; the exit code to leave with (``--until-done``: a signal before every run was
        final is never 0, which would mean success)."""
        self.log.info("daemon stopping", reason=self.stop_requested)
        self.exit_reason = f"stopped ({self.stop_requested})"
        if self.until_done and self._finished_at is None:
            exit_code = exitcodes.INTERRUPTED
        self._write_pidfile("stopping", epoch=doc.epoch)
        sdnotify.notify("STOPPING=1")
        supervisor.request_stop()
        return exit_code

    def _close_mirror(self) -> None:
        if self.mirror is not None and not self.mirror.close(MIRROR_CLOSE_S):
            self.log.warning("the last copy of the logs to home did not finish in time", timeout_s=MIRROR_CLOSE_S)

    def _housekeeping(self) -> None:
        """Collect orphans that died re-parented to us; say which stray signals were ignored."""
        lineage.reap_adopted()
        if self.stray_signals:
            signals, self.stray_signals = self.stray_signals, []
            self.log.warning("ignored signals: they do not stop f5guard (SIGTERM or `f5guard stop` does)",
                             signals=signals)  # fmt: skip

    def _work_lost(self, supervisor: Supervisor) -> int:
        """Someone deleted (or replaced) the work dir: whatever runs there now is not ours to touch. Stop our
        stages at once (a trainer's last save would land in a successor's folder), release home, exit."""
        assert self.lease is not None
        self.exit_reason = f"its work dir {self.work.root} was deleted or replaced while it ran"
        self.log.error("work dir deleted or replaced; stopping every child and exiting", work=str(self.work.root))
        supervisor.stop(grace_s=0.0)
        self.lease.release()
        return 1

    def _verdict(self, doc: StateDoc, now: float) -> int | None:
        """``--until-done``: the exit code once every run is final and this VM's last checkpoints are recorded in
        the cloud (the next runtime reads those records; at most ``FINAL_UPLOADS_S``), else None."""
        if not self.until_done:
            return None
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
        if self.home_gone():
            self._home_trouble(doc, f"home is gone: {self.home.root} does not exist (Drive unmounted?)")
            return None  # nothing is written there until it is back; the heartbeat resumes then
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
            self._close_mirror()
            self.lease.release()
            return exitcodes.for_error(err) if self.until_done else err.exit_code
        return None

    def _answer_clients(self, supervisor: Supervisor, doc: StateDoc) -> None:
        """Requests on the control socket (one handler each: daemon/handlers.py), and resets queued in files."""
        if self.requests_waiting:
            self.requests_waiting = False
            self._apply_requests(supervisor)
        pending = self.control.pending()
        if not pending:
            return
        assert self.info is not None
        live = handlers.Live(self.config, doc, supervisor, self.info, self.work.state, self.problems, self._stop)
        for request in pending:
            request.answer(handlers.handle(request.request, live))

    def _stop(self, reason: str) -> None:
        self.stop_requested = reason
        self.wake.set()

    def home_gone(self) -> bool:
        """Home's folder is not there (Drive unmounted): it is never recreated on the local disk."""
        return missing_root(self.home.root) is not None

    def _home_trouble(self, doc: StateDoc, problem: str | None) -> None:
        """Say once when home stops answering and once when it is back; status shows it meanwhile. Only the work
        copy is saved here: mirroring to home could fail again and come back here (it once recursed to death)."""
        if doc.daemon.get("home_problem") == problem:
            return
        if problem:
            self.log.warning("home cannot be written; training continues locally", problem=problem)
        else:
            self.log.info("home reachable again; lease renewed")
        doc.daemon["home_problem"] = problem
        if self.owns_work():
            try:
                self.store.save(doc, mirror=False)
            except OSError as err:
                self.log.error("cannot write state", path=str(self.work.state), error=str(err))

    def _save(self, doc: StateDoc, *, home: bool | None = None) -> None:
        if not self.owns_work():
            return  # the control loop stops us on its next pass; never write into a successor's work dir
        try:
            self.store.save(doc, mirror=False)
        except OSError as err:  # a full work disk: say so where status reads (the home copy is newer now)
            problem = f"cannot write {self.work.state}: {err.strerror or err}"
            if doc.daemon.get("work_problem") != problem:
                self.log.error("cannot write state", path=str(self.work.state), error=str(err))
                doc.daemon["work_problem"] = problem
                home = True
        else:
            if doc.daemon.get("work_problem"):
                self.log.info("the work dir can be written again")
                doc.daemon["work_problem"] = None
                with contextlib.suppress(OSError):
                    self.store.save(doc, mirror=False)
                home = True
        self._mirror_state(doc, force=bool(home))

    def _mirror_state(self, doc: StateDoc, *, force: bool) -> None:
        assert self.lease is not None
        if not (force or self.store.home_due()) or self.home_gone():
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
            # The final path, not err.filename: that is a temp name, new each time (one problem must read as one).
            self._write_problem = (
                f"cannot write state to home: {err.strerror or err} ({self.store.home_path(doc.epoch)})"
            )
            self._home_trouble(doc, self._write_problem)

    def _mirror(self, doc: StateDoc) -> None:
        self._mirror_state(doc, force=False)
        if self.mirror is not None and not self.home_gone():
            self.mirror.request()

    def _mirror_files(self, epoch: int) -> None:
        """On the mirror thread: the logs, and what the stage kinds append (`f5guard plot` reads the trainer's
        progress copies, also on a fresh VM), each only as far as it grew."""
        if self.home_gone():
            return  # never recreated on the local disk (Drive unmounted): the copies catch up when it is back
        try:
            mirror_tree(self.work.logs, self.home.runtime_logs(epoch, self.store.runtime))
            for run in self.config.runs:
                for stage in run.stages:
                    for local, folder in stage.options.home_copies() if stage.options is not None else ():
                        key = (local, folder)
                        if key not in self._appended:
                            stem = f"e{epoch:04d}-{self.store.runtime}"
                            self._appended[key] = AppendMirror(Path(local), Path(folder), stem)
                        self._appended[key].step()
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
        """Stages that were running when the last daemon died: kill what is left of them, mark interrupted.

        Only on the boot that started them: after a reboot (a work dir that survived it) the recorded process
        group id names nothing of ours, and may name someone else's group."""
        for run_name, run in doc.runs.items():
            for stage_name, record in run.stages.items():
                if record.state is not StageStatus.RUNNING:
                    continue
                if record.pid and record.boot_id != self.boot:
                    self.log.info("a leftover of another boot is not ours to kill", run=run_name, stage=stage_name,
                                  pgid=record.pid, boot_id=record.boot_id)  # fmt: skip
                elif record.pid and kill_leftover_group(record.pid, record.pid_started):
                    self.log.warning("killed a leftover process group", run=run_name, stage=stage_name, pgid=record.pid)
                record.move(StageStatus.INTERRUPTED, "its supervisor stopped or died while it ran")
        # What a killed daemon of this work dir started and that left its stage's group (lineage.py).
        left = lineage.orphans_of_dead_daemons(str(self.work.root))
        if left:
            self.log.warning("killing processes a dead daemon left", pids=[p.pid for p in left])
            lineage.kill_now(left)

    # -- plumbing -------------------------------------------------------------------------------------------
    def _write_pidfile(self, phase: str, epoch: int = 0) -> None:
        self.info = pidfile.DaemonInfo(
            pid=os.getpid(),
            host=hostname(),
            started_at=self.started_at,
            boot_id=self.boot,
            config=str(self.config.path),
            version=__version__,
            epoch=epoch,
            phase=phase,
        )
        if self.owns_work():  # never into a successor's recreated work dir
            pidfile.write(self.work.pidfile, self.info)

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self.stop_requested = signal.Signals(signum).name
            self.wake.set()
            if not self.serving:
                raise _StopBeforeReady

        def stray(signum: int, _frame: FrameType | None) -> None:
            self.stray_signals.append(_signal_name(signum))
            self.wake.set()

        for number in _STRAY_SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(number, stray)
        signal.signal(signal.SIGTERM, stop)  # systemd's stop, and `f5guard stop` before the daemon serves
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGQUIT, stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal must not stop training
        for poke in (signal.SIGUSR1, signal.SIGUSR2):  # an older client's poke (before the socket) must not kill us
            signal.signal(poke, signal.SIG_IGN)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals between SIGRTMIN and SIGRTMAX have no names of their own
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"


def run_daemon(
    config_path: Path, *, takeover: bool, foreground: bool, accept_older: bool = False, until_done: bool = False
) -> int:
    try:
        config = load_config(config_path)
    except F5guardError as err:
        ReadyChannel().send(StartFailed(err.message, err.exit_code))
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
