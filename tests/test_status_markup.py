"""Status prints paths, names and error text as they are: rich markup in them (a folder named "[red]x[/]", an
error quoting "[/]") neither breaks the view nor forges a part of it."""

from __future__ import annotations

import io
from pathlib import Path

from f5guard.config import load_config
from f5guard.state import StageStatus, StateDoc, StateStore, TrainingRecord
from f5guard.status.render import make_console, render_status
from f5guard.status.report import build_report
from tests.conftest import write_config

FORGED = "[bold green]all checkpoints safe[/]"


def test_markup_in_paths_names_and_errors_is_printed_literally(tmp_path: Path) -> None:
    """Defect: home/work paths, stage reasons and training warnings went into rich markup unescaped."""
    root = tmp_path / "[red]x[/]"
    (root / "home").mkdir(parents=True)
    dataset = root / "data"
    dataset.mkdir()
    body = f"""
[[runs]]
name = "voice"
[[runs.stages]]
name = "prep[red]"
command = ["true"]
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{root}/ckpts"
command = ["true"]
"""
    write_config(root / "f5guard.toml", root / "home", root / "work", body)
    config = load_config(root / "f5guard.toml", find_python=False)
    doc = StateDoc()
    prep = doc.stage("voice", "prep[red]")
    prep.state, prep.reason, prep.last_lines = StageStatus.FAILED, f"exit code 1: {FORGED}", ["Error: [/] in a line"]
    doc.run("voice").training = TrainingRecord(sync_error=f"cannot copy to home: {FORGED}", waiting="[/]")
    (root / "work").mkdir()
    StateStore(root / "work" / "state.json", root / "home" / ".f5guard").save(doc)

    report = build_report(config)
    for color in (False, True):
        buffer = io.StringIO()
        render_status(report, make_console(200, file=buffer, color=color))  # markup errors would raise here
    buffer = io.StringIO()
    render_status(report, make_console(200, file=buffer, color=False))
    text = buffer.getvalue()
    assert f"home  {root}/home" in text and f"work  {root}/work" in text
    assert "prep[red]" in text
    assert f"exit code 1: {FORGED}" in text
    assert f"sync error: cannot copy to home: {FORGED}" in text
    assert "not training yet: [/]" in text
    assert "Error: [/] in a line" in text
