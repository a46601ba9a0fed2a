"""What ``f5guard run --until-done`` exits with: the job's verdict, as a code a batch runner can act on.

SkyPilot's managed jobs relaunch a job on a new VM whenever its cluster was preempted or failed, whatever the
code; while the VM is still up they relaunch only on the codes in ``recover_on_exit_codes`` (and, for any other
non-zero code, ``max_restarts_on_errors`` times, config errors included: f5guard's task sets it to 0). So the
codes split in two: this VM's trouble, which a new VM resuming from the bucket cures (``RECOVER``), and the
job's own verdict, which a new VM would only repeat (done, failed, a config error, a FATAL diagnosis).
A stop by signal before the runs finished is *not* 0: SkyPilot takes a job that exited 0 as succeeded
without looking at the VM, and a preempted VM's shutdown sends exactly that signal.
"""

from __future__ import annotations

from collections.abc import Iterable

from f5guard.errors import ConfigError, F5guardError, HomeUnreachable, LeaseHeld, LeaseLost, UsageError
from f5guard.state import RunStatus

DONE = 0  # every run finished
FAILED = 1  # a run failed (a stage failed; status says which and why)
USAGE = 2  # the config or the command line is wrong (ConfigError, UsageError: their exit code)
LEASE = 3  # another runtime owns home (LeaseHeld, LeaseLost: their exit code)
FATAL = 4  # a run stopped with a diagnosis (FATAL): the same failure would come back on any VM
CRASHED = 70  # EX_SOFTWARE: the daemon itself crashed (a bug): relaunching would loop on it
HOME = 74  # EX_IOERR: home does not answer from this VM (its bucket mount broke): a new VM mounts it anew
INTERRUPTED = 75  # EX_TEMPFAIL: stopped by a signal before the runs finished (the VM shutting down)
KILLED = 137  # 128 + SIGKILL, as the job's shell reports it: the VM's OOM killer, or the VM going away
TERMINATED = 143  # 128 + SIGTERM, when the signal ended the shell before f5guard could answer it

RECOVER: tuple[int, ...] = (HOME, INTERRUPTED, KILLED, TERMINATED)  # SkyPilot's recover_on_exit_codes

MEANING: dict[int, str] = {
    DONE: "every run finished",
    FAILED: "a run failed",
    USAGE: "a config or usage error",
    LEASE: "another runtime owns home",
    FATAL: "a run stopped with a diagnosis (FATAL)",
    CRASHED: "f5guard's daemon crashed",
    HOME: "home does not answer from this VM",
    INTERRUPTED: "stopped by a signal before the runs finished",
    KILLED: "killed (SIGKILL)",
    TERMINATED: "terminated (SIGTERM) before f5guard answered",
}

_FINAL = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.FATAL})


def for_runs(states: Iterable[RunStatus]) -> int | None:
    """The code once every run is final (a FATAL one wins over a failed one); None while one still goes on."""
    seen = list(states)
    if not all(s in _FINAL for s in seen):
        return None
    if RunStatus.FATAL in seen:
        return FATAL
    return FAILED if RunStatus.FAILED in seen else DONE


def for_error(err: F5guardError) -> int:
    """The code for an error that ends the daemon (at start, or a lost lease)."""
    if isinstance(err, (ConfigError, UsageError)):
        return USAGE
    if isinstance(err, (LeaseHeld, LeaseLost)):
        return LEASE
    if isinstance(err, HomeUnreachable):
        return HOME
    return FAILED
