"""Restart policy: immediate first restart, capped exponential backoff, reset after stable uptime, a budget per
window, then FATAL with the reason; failures of ordinary stages stop the run with their last lines. The rules are
one pure function (stages/verdict.py); the daemon tests below prove the runner applies them."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

from f5guard.schema import RestartPolicy
from f5guard.stages.exits import ExitInfo, classify
from f5guard.stages.verdict import ExitFacts, Fatal, History, Restart, Verdict, judge
from tests.conftest import Project


def crash(now: float, uptime_s: float = 1.0, durable: int | None = None) -> ExitFacts:
    """A long-running stage that exited 3 at ``now``."""
    return ExitFacts(exit=ExitInfo(3), uptime_s=uptime_s, now=now, long_running=True, durable=durable)


def judged(policy: RestartPolicy, *facts: ExitFacts) -> list[Verdict]:
    history, verdicts = History(), []
    for fact in facts:
        verdict, history = judge(fact, history, policy)
        verdicts.append(verdict)
    return verdicts


def delays(verdicts: list[Verdict]) -> list[float]:
    return [v.delay_s if isinstance(v, Restart) else -1.0 for v in verdicts]


def test_backoff_sequence_and_cap() -> None:
    policy = RestartPolicy(backoff_initial_s=1, backoff_factor=2, backoff_max_s=5, budget=100)
    assert delays(judged(policy, *(crash(float(i)) for i in range(6)))) == [0, 1, 2, 4, 5, 5]


def test_stable_uptime_resets_backoff() -> None:
    policy = RestartPolicy(backoff_initial_s=1, stable_after_s=60, budget=100)
    verdicts = judged(policy, crash(0), crash(1), crash(2), crash(100, uptime_s=61))
    assert delays(verdicts) == [0, 1, 2, 0]


def test_budget_per_window_then_fatal() -> None:
    policy = RestartPolicy(budget=3, window_s=10, backoff_initial_s=0)
    verdicts = judged(policy, crash(0), crash(1), crash(2), crash(3))
    assert all(isinstance(v, Restart) for v in verdicts[:3])
    assert isinstance(verdicts[3], Fatal)
    assert (
        verdicts[3].reason == "exit code 3; restart budget exhausted: 3 restarts in the last 10s (restart.budget = 3)"
    )
    assert isinstance(judged(policy, crash(0), crash(1), crash(2), crash(20))[3], Restart), (
        "old restarts leave the window"
    )


def test_exit_classification() -> None:
    assert classify(1, 0, 0, stopped=False).describe() == "exit code 1"
    assert classify(-9, 0, 0, stopped=False).describe() == "killed by SIGKILL"
    assert classify(-9, 3, 4, stopped=False).describe().startswith("killed by the kernel's OOM killer")
    assert classify(-9, None, None, stopped=False).oom is False, "exit -9 alone does not prove OOM"
    assert classify(-15, 0, 0, stopped=True).describe() == "killed by SIGTERM (stop requested)"


CRASHER = """
[[runs]]
name = "r"
[[runs.stages]]
name = "train"
long_running = true
command = ["sh", "-c", "date +%s.%N >> {work}/starts; echo boom >&2; exit 3"]
[runs.stages.restart]
backoff_initial_s = 0.2
backoff_factor = 2
backoff_max_s = 0.5
budget = 4
window_s = 60
"""


def test_crash_loop_becomes_fatal_with_reason(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(CRASHER)
    p.cli("start", check=True)
    run = p.wait_run("r", ("fatal",), timeout=30)
    starts = [float(x) for x in (p.work / "starts").read_text().split()]
    assert len(starts) == 5, "1 start + 4 restarts"
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] < 0.5, f"first restart is immediate: {gaps}"
    assert gaps[2] > gaps[0] and gaps[2] >= 0.35, f"then backoff grows: {gaps}"
    stage = run["stages"][0]
    assert stage["state"] == "fatal" and stage["restarts"] == 4
    assert "exit code 3; restart budget exhausted" in stage["reason"]
    assert stage["last_lines"][-1].endswith("attempt 5 ended: exit code 3") and any(
        "boom" in x for x in stage["last_lines"]
    )
    status = p.cli("status")
    assert status.returncode == 1 and "fatal" in status.stdout and "boom" in status.stdout


def test_failed_stage_stops_the_run_and_keeps_last_lines(make_project) -> None:  # type: ignore[no-untyped-def]
    body = """
[[runs]]
name = "r"
[[runs.stages]]
name = "bad"
command = ["sh", "-c", "for i in 1 2 3; do echo line $i; done; echo 'Traceback: it broke' >&2; exit 7"]
[[runs.stages]]
name = "after"
command = ["touch", "{work}/after-ran"]
"""
    p: Project = make_project(body)
    p.cli("start", check=True)
    run = p.wait_run("r", ("failed",))
    bad, after = run["stages"]
    assert bad["state"] == "failed" and bad["reason"] == "exit code 7"
    assert [x for x in bad["last_lines"] if not x.startswith("[f5guard]")] == [
        "line 1",
        "line 2",
        "line 3",
        "Traceback: it broke",
    ]
    assert after["state"] == "pending" and not (p.work / "after-ran").exists()
    assert "stage 'bad' failed: exit code 7" in run["reason"]
    events = [json.loads(x) for x in (p.work / "logs" / "daemon.jsonl").read_text().splitlines()]
    failed = [e for e in events if e["event"] == "stage failed"]
    assert failed and failed[0]["level"] == "error" and failed[0]["stage"] == "bad"


def test_death_to_restart_is_fast(make_project) -> None:  # type: ignore[no-untyped-def]
    """The waiter thread reaps at once: a kill -9 is followed by a new process well within a second."""
    body = """
[[runs]]
name = "r"
[[runs.stages]]
name = "train"
long_running = true
command = ["sh", "-c", "date +%s.%N >> {work}/starts; exec sleep 600"]
"""
    p: Project = make_project(body)
    p.cli("start", check=True)
    p.wait_for((p.work / "starts").exists, what="first start")

    pid = p.wait_for(
        lambda: p.state().get("runs", {}).get("r", {}).get("stages", {}).get("train", {}).get("pid"),
        what="the trainer pid in state",
    )
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    p.wait_for(lambda: len((p.work / "starts").read_text().split()) == 2, what="restart")
    restarted_at = float((p.work / "starts").read_text().split()[1])
    assert restarted_at - killed_at < 1.0


def test_restarts_that_made_progress_are_not_budgeted() -> None:
    """Colab's OOM killer every ten minutes, each attempt leaving a newer checkpoint: never FATAL for that."""
    policy = RestartPolicy(budget=2, window_s=3600)
    progressing = [crash(float(i), durable=i) for i in range(20)]
    verdicts = judged(policy, *progressing, crash(30.0, durable=19), crash(31.0, durable=19), crash(32.0, durable=19))
    assert all(isinstance(v, Restart) and v.delay_s == 0.0 for v in verdicts[:20])
    assert isinstance(verdicts[20], Restart) and isinstance(verdicts[21], Restart)
    assert isinstance(verdicts[22], Fatal) and "budget exhausted" in verdicts[22].reason


def test_backoff_shows_as_restarting_and_start_retries_a_fatal_run(make_project) -> None:  # type: ignore[no-untyped-def]
    """During a backoff status says "restarting in N s", never "running" with stale figures; once FATAL,
    `start` on the live daemon retries the run (supervisorctl's start does the same for a FATAL program)."""
    body = """
[[runs]]
name = "r"
[[runs.stages]]
name = "flaky"
long_running = true
command = ["sh", "-c", "test -e {work}/fixed && exec sleep 600; echo broken; exit 4"]
[runs.stages.restart]
backoff_initial_s = 3
backoff_factor = 1
budget = 2
"""
    p: Project = make_project(body)
    p.cli("start", check=True)
    p.wait_for(lambda: "restarting in" in p.cli("status").stdout, what="a visible backoff")
    stage = p.status()["runs"][0]["stages"][0]
    assert stage["state"] == "running" and stage["restart_in_s"] is not None and stage["restart_in_s"] <= 3
    p.wait_run("r", ("fatal",), timeout=30)
    (p.work / "fixed").write_text("")
    again = p.cli("start", check=True)
    assert "already running" in again.stdout and "retrying run 'r' from stage 'flaky'" in again.stdout
    p.wait_for(lambda: p.stage_state("r", "flaky") == "running", what="retried")
    assert p.status()["runs"][0]["stages"][0]["restart_in_s"] is None
