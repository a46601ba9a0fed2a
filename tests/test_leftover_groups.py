"""A new daemon kills the process groups its dead predecessor left, but only on the boot that started them: after
a reboot with a surviving work dir, the recorded group id names someone else's processes."""

from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from f5guard.state import StageStatus, StateDoc, StateStore
from tests.conftest import Project

BODY = """
[[runs]]
name = "r"
[[runs.stages]]
name = "serve"
long_running = true
command = ["sleep", "600"]
"""


def orphan_group() -> tuple[int, psutil.Process]:
    """A process group whose leader is gone and whose member lives on (what a killed trainer's worker is)."""
    leader = subprocess.Popen(["sh", "-c", "sleep 600 & echo $!"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    assert leader.stdout is not None
    member = psutil.Process(int(leader.stdout.readline()))
    leader.stdout.close()
    leader.wait()
    assert os.getpgid(member.pid) == leader.pid
    return leader.pid, member


def left_running(p: Project, pgid: int, boot: str) -> None:
    """The state a daemon that died while ``serve`` ran (as group ``pgid``, on boot ``boot``) leaves."""
    doc = StateDoc()
    record = doc.stage("r", "serve")
    record.state, record.pid, record.boot_id, record.started_at = StageStatus.RUNNING, pgid, boot, time.time()
    p.work.mkdir(parents=True, exist_ok=True)
    StateStore(p.work / "state.json", p.home / ".f5guard").save(doc)


@pytest.mark.parametrize("boot", ["this-boot", "before-the-reboot"])
def test_leftover_groups_are_killed_only_on_their_own_boot(make_project, boot: str) -> None:  # type: ignore[no-untyped-def]
    """Defect: the group was SIGKILLed whatever boot the record came from."""
    p: Project = make_project(BODY)
    p.env["F5GUARD_BOOT_ID"] = "this-boot"
    pgid, member = orphan_group()
    try:
        left_running(p, pgid, boot)
        p.cli("start", check=True)
        p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serving")
        try:
            member.wait(timeout=5)
            killed = True
        except psutil.TimeoutExpired:
            killed = False
        assert killed == (boot == "this-boot"), f"leftover of {boot} killed: {killed}"
    finally:
        if member.is_running():
            member.kill()
