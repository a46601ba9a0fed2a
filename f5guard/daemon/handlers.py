"""One handler per request (control/protocol.py), run on the control thread: the daemon answers from its memory
(the state document it keeps and writes, the supervisor it runs), never from the files it just wrote."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from f5guard import pidfile
from f5guard.control.protocol import (
    Answer,
    Done,
    Refused,
    Request,
    ResetRequest,
    StatusRequest,
    StopRequest,
)
from f5guard.daemon.supervisor import Supervisor
from f5guard.errors import UsageError
from f5guard.schema import Config
from f5guard.state import RunStatus, StageStatus, StateDoc
from f5guard.status.answer import answer_status
from f5guard.status.report import assemble

_FAILED_STAGES = (StageStatus.FATAL, StageStatus.FAILED)


@dataclass
class Live:
    """What the handlers may read and do: the daemon's own view of itself."""

    config: Config
    doc: StateDoc
    supervisor: Supervisor
    info: pidfile.DaemonInfo  # as in the pidfile: pid, host, phase, epoch
    state_path: Path  # the work copy the document is saved to (the report names its source)
    problems: tuple[str, ...]  # state copies that could not be read at start
    stop: Callable[[str], None]  # ask the daemon to stop (the control loop goes on until everything stopped)


def handle(request: Request, live: Live) -> Answer:
    if isinstance(request, StatusRequest):
        report = assemble(live.config, live.doc, live.info, live.state_path, live.problems)
        return answer_status(report, request)
    if isinstance(request, StopRequest):
        live.stop("f5guard stop")
        return Done(f"stopping f5guard (pid {live.info.pid}); a trainer checkpoints and its checkpoint is synced first")
    if isinstance(request, ResetRequest):
        return reset(request, live)
    return retry(live)


def reset(request: ResetRequest, live: Live) -> Answer:
    """Names are checked against the config the daemon runs with (the file may have changed since)."""
    sup = live.supervisor.run(request.run)
    if sup is None:
        known = ", ".join(r.name for r in live.config.runs)
        text = f"no run named {request.run!r} in the config this daemon runs (runs: {known})"
        return Refused(text, UsageError.exit_code)
    if request.stage is not None and sup.run.stage(request.stage) is None:
        known = ", ".join(s.name for s in sup.run.stages)
        return Refused(f"run {request.run!r} has no stage {request.stage!r} (stages: {known})", UsageError.exit_code)
    sup.reset(request.stage)
    what = f"stage {request.stage!r} and every later stage" if request.stage else "every stage"
    return Done(f"reset: {what} of run {request.run!r} will run again.")


def retry(live: Live) -> Answer:
    """Like supervisorctl's ``start`` of a FATAL program: runs that ended FATAL or FAILED start again from their
    failed stage (earlier stages stay done; training resumes from its newest checkpoint)."""
    lines: list[str] = []
    for sup in live.supervisor.runs:
        record = live.doc.runs.get(sup.run.name)
        if record is None or record.state not in (RunStatus.FATAL, RunStatus.FAILED):
            continue
        stages = [s.name for s in sup.run.stages if (r := record.stages.get(s.name)) and r.state in _FAILED_STAGES]
        failed = stages[0] if stages else None
        lines.append(
            f"retrying run {sup.run.name!r} from stage {failed!r}: it was {record.state.value} ({record.reason})"
        )
        sup.reset(failed)
    return Done("\n".join(lines))


__all__ = ["Live", "handle"]
