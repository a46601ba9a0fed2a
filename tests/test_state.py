"""The state document: atomic writes, newest valid copy wins, a corrupt copy is survived, newer schemas refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from f5guard.errors import StateError
from f5guard.state import RunStatus, StageStatus, StateDoc, StateStore, doc_from_json

DATA = Path(__file__).parent / "data"


def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "work" / "state.json", tmp_path / "home" / ".f5guard")


def test_old_state_file_still_loads() -> None:
    """A state file written by 0.1.0 (checked in) keeps loading: upgrades never strand a run."""
    doc = doc_from_json(json.loads((DATA / "state-v1.json").read_text()))
    assert doc.epoch == 2 and doc.generation == 7
    assert doc.runs["r1"].state is RunStatus.STOPPED
    assert doc.runs["r1"].stages["a"].state is StageStatus.SKIPPED
    assert doc.runs["r1"].stages["a"].fingerprint == "effe2fcfcf8ae751"


def test_save_writes_work_and_epoch_named_home_copy(tmp_path: Path) -> None:
    s = store(tmp_path)
    doc = StateDoc(epoch=3)
    doc.stage("r", "a").state = StageStatus.DONE
    s.save(doc, mirror=True)
    assert s.work_path.exists() and s.home_path(3).exists()
    assert json.loads(s.home_path(3).read_text())["generation"] == 1
    assert not list(s.work_path.parent.glob(".*.tmp")), "no temp file left behind"
    loaded = s.load()
    assert loaded.source == s.work_path and loaded.doc.runs["r"].stages["a"].state is StageStatus.DONE


def test_newest_valid_copy_wins_and_a_corrupt_one_is_survived(tmp_path: Path) -> None:
    s = store(tmp_path)
    doc = StateDoc(epoch=1)
    s.save(doc, mirror=True)  # generation 1 on both
    doc.stage("r", "a").state = StageStatus.DONE
    s.save(doc, mirror=True)  # generation 2 on both
    # Truncate the work copy, as a VM dying mid-write on a filesystem without atomic rename could.
    s.work_path.write_bytes(s.work_path.read_bytes()[:40])
    loaded = s.load()
    assert loaded.source == s.home_path(1)
    assert loaded.doc.generation == 2 and loaded.doc.runs["r"].stages["a"].state is StageStatus.DONE
    assert len(loaded.problems) == 1 and "is corrupt" in loaded.problems[0] and str(s.work_path) in loaded.problems[0]


def test_higher_epoch_beats_higher_generation(tmp_path: Path) -> None:
    """A takeover's copy (epoch 2) wins over a lower epoch's copy even with more writes behind it."""
    s = store(tmp_path)
    old = StateDoc(epoch=1, generation=50)
    s.save(old, mirror=True)
    new = StateDoc(epoch=2)
    new.stage("r", "a").state = StageStatus.FAILED
    s.write_home(new)
    assert s.load().doc.epoch == 2


def test_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.work_path.parent.mkdir(parents=True)
    s.work_path.write_text(json.dumps({"schema": 99, "generation": 1, "epoch": 1, "runs": {}}))
    with pytest.raises(StateError, match=r"state at .*state.json: written by a newer f5guard \(schema 99 > 1\)"):
        s.load()


def test_daemon_survives_a_corrupt_state_copy(make_project) -> None:  # type: ignore[no-untyped-def]
    """End to end: a garbage work copy is reported in the log and status, home's copy is used, nothing reruns."""
    body = """
[[runs]]
name = "r"
[[runs.stages]]
name = "a"
command = ["sh", "-c", "echo x >> {work}/count; printf a > {work}/a.txt"]
outputs = ["{work}/a.txt"]
"""
    p = make_project(body)
    p.cli("start", check=True)
    p.wait_run("r")
    p.cli("stop", check=True)
    (p.work / "state.json").write_text('{"schema": 1, "runs": {"r": ')
    report = p.status()
    assert any("is corrupt" in problem for problem in report["state"]["problems"])
    p.cli("start", check=True)
    p.wait_run("r")
    assert (p.work / "count").read_text().count("x") == 1
    assert "state copy skipped" in (p.work / "logs" / "daemon.jsonl").read_text()


def test_prune_keeps_current_epoch(tmp_path: Path) -> None:
    s = store(tmp_path)
    for epoch in (1, 2, 3, 4):
        s.write_home(StateDoc(epoch=epoch))
    s.prune_home(4)
    assert [p.name for p in s.home_copies()] == ["state-e0003.json", "state-e0004.json"]


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(
    runs=st.dictionaries(names, st.dictionaries(names, st.sampled_from(list(StageStatus)), max_size=4), max_size=3),
    epoch=st.integers(0, 10**6),
)
def test_roundtrip_any_state(tmp_path_factory: pytest.TempPathFactory, runs: dict, epoch: int) -> None:
    """Whatever runs, stages (Vietnamese names included) and states: save then load gives the same document."""
    tmp = tmp_path_factory.mktemp("rt")
    s = store(tmp)
    doc = StateDoc(epoch=epoch)
    for run, stages in runs.items():
        for stage, state in stages.items():
            doc.stage(run, stage).state = state
    s.save(doc, mirror=True)
    loaded = s.load().doc
    assert loaded.to_json() == doc.to_json()
    shutil.rmtree(tmp)
