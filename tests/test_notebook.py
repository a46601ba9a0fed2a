"""docs/f5guard_colab.ipynb: a valid notebook whose parameters live in one papermill-style cell, and which runs
top to bottom in a real Jupyter kernel (this Python) on the CPU, offline: Drive is a temp folder, the audio a
tiny espeak-ng recording, the models tiny (Whisper, F5-TTS, the Vocos vocoder), nothing is installed."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.f5_fixtures import OFFLINE_ENV
from tests.recipe_audio_support import SENTENCES, build_tiny_whisper, make_recording, need_tools, stage_env

nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "f5guard_colab.ipynb"
PARAMETERS = {"DRIVE", "HOME", "AUDIO", "WORK", "RUN", "INSTALL", "PACKAGE", "PRETRAINED", "LANGUAGE", "SETTINGS",
              "WAIT_S", "SPEAK_TEXT"}  # fmt: skip


def load() -> Any:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def parameters_cell(nb: Any) -> Any:
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell is tagged 'parameters' (papermill's convention)"
    return tagged[0]


def inject(nb: Any, values: dict[str, Any]) -> Any:
    """papermill's convention: a cell tagged 'injected-parameters' right after the 'parameters' cell."""
    unknown = set(values) - PARAMETERS
    assert not unknown, unknown
    cell = nbformat.v4.new_code_cell(
        "\n".join(f"{name} = {value!r}" for name, value in values.items()),
        metadata={"tags": ["injected-parameters"]},
    )
    nb.cells.insert(nb.cells.index(parameters_cell(nb)) + 1, cell)
    return nb


def test_notebook_is_valid_and_parameterised() -> None:
    nb = load()
    cell = parameters_cell(nb)
    assigned: dict[str, Any] = {}
    for statement in ast.parse(cell.source).body:  # plain assignments of literals, nothing else
        assert isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name), ast.dump(statement)
        assigned[statement.targets[0].id] = ast.literal_eval(statement.value)
    assert set(assigned) == PARAMETERS
    assert assigned["INSTALL"] is True and assigned["HOME"].startswith("/content/drive/")
    assert nb.metadata.kernelspec.language == "python"
    from IPython.core.inputtransformer2 import TransformerManager

    codes = [c for c in nb.cells if c.cell_type == "code"]
    for code in codes:
        # plain Python (`sh` shows a failing command's reason), but for the last cell's `!`, run by the notebook
        source = TransformerManager().transform_cell(code.source) if code is codes[-1] else code.source
        compile(source, "cell", "exec")
        assert not code.get("outputs"), "the notebook is committed without outputs"
    # the last cell keeps running until training is done: a running cell keeps Colab from recycling the runtime
    assert codes[-1].source == "!f5guard watch" and nb.cells[-1] is codes[-1]
    sources = "\n".join(c.source for c in nb.cells)
    for what in ("google.colab", '"init"', '"start"', '"status"', '"tail"', '"plot"', '"speak"', "Audio(", "Image("):
        assert what in sources, what


def build_tiny_vocos(path: Path) -> Path:
    """The samples branch's tiny random vocos (f5guard.trainer.tinyvocoder), in a subprocess: torch stays out."""
    proc = subprocess.run([sys.executable, "-m", "f5guard.trainer.tinyvocoder", str(path)], env=stage_env(),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


def tiny_settings(whisper: Path, vocos: Path) -> list[str]:
    """`f5guard init --set` for a CPU run of a few seconds: fast lease, tiny models, a few updates."""
    return [
        'setup.need=["torch"]',  # setup still runs (and checks the GPU); the other imports cost minutes on 2 cores
        "lease.settle_s=0.3",
        "lease.epoch_poll_s=0.2",
        "segment.min_speech_s=0.5",  # espeak-ng sentences are shorter than a podcast's
        f"transcribe.model={whisper}",
        "transcribe.min_chars=0",  # a random Whisper says anything; keep every clip
        "transcribe.no_speech_threshold=1.0",
        "train.model=tiny",
        "train.batch_size_per_gpu=2",
        "train.batch_size_type=sample",
        "train.max_samples=2",
        "train.epochs=2",
        "train.num_warmup_updates=2",
        "train.save_per_updates=2",
        "train.last_per_updates=2",
        "train.num_workers=1",
        "train.threads=1",
        "train.export_every=0",
        "train.sample_every=2",
        "train.sample_text=Xin chào.",
        f"train.vocoder={vocos}",
    ]


def fake_colab(root: Path, record: Path) -> Path:
    """A ``google.colab`` whose ``drive.mount`` records its mount point (Drive itself is a temp folder here)."""
    package = root / "google" / "colab"  # no google/__init__.py: a namespace package, like protobuf's google
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "drive.py").write_text(
        f"def mount(mountpoint):\n    open({str(record)!r}, 'a').write(mountpoint + '\\n')\n"
        "    print('Mounted at', mountpoint)\n"
    )
    return root


def kernel_spec(root: Path) -> str:
    """A kernelspec for this very interpreter (not whatever `python3` means on PATH)."""
    spec = root / "kernels" / "f5guard-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "f5guard test", "language": "python"}))
    return spec.name


def outputs(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for v in out.get("data", {}).values())
        parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def cell_with(nb: Any, text: str) -> Any:
    return next(c for c in nb.cells if c.cell_type == "code" and text in c.source)


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_notebook_runs_offline_on_cpu(make_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    need_tools()
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    drive = tmp_path / "drive" / "MyDrive"
    make_recording(drive / "raw_audio" / "Giọng đọc" / "bài 1.wav", SENTENCES[:4], gap_s=0.8)
    whisper = build_tiny_whisper(tmp_path / "tiny-whisper.pt")
    vocos = build_tiny_vocos(tmp_path / "tiny-vocos")
    # the fixture's teardown stops the daemon and fails the test on any process left behind
    p: Project = make_project("[[runs]]\nname='x'\n[[runs.stages]]\nname='x'\ncommand=['true']\n")
    home = p.home
    params = {
        "DRIVE": str(tmp_path / "drive"),
        "HOME": str(home),
        "AUDIO": str(drive / "raw_audio"),
        "WORK": str(p.work),
        "INSTALL": False,
        "SETTINGS": tiny_settings(whisper, vocos),
        "PRETRAINED": "none",  # no download; the tiny model trains from scratch
        "WAIT_S": 600,
        "SPEAK_TEXT": "Xin chào các bạn.",
    }
    nb = inject(load(), params)
    jupyter = tmp_path / "jupyter"
    kernel = kernel_spec(jupyter)
    for name in [k for k in os.environ if k.startswith(("F5GUARD_", "NOTIFY_SOCKET"))]:
        monkeypatch.delenv(name)
    for name, value in {**OFFLINE_ENV, "OMP_NUM_THREADS": "1", "JUPYTER_PATH": str(jupyter),
                        "JUPYTER_PLATFORM_DIRS": "1", "MPLBACKEND": "Agg"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    root = str(Path(__file__).resolve().parent.parent)  # the kernel and f5guard's subprocesses import this tree
    colab = fake_colab(tmp_path / "colab", tmp_path / "mounts.txt")
    paths = (root, str(colab), os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(x for x in paths if x))
    # `!f5guard watch` finds the command on PATH, as `uv tool install` puts it on Colab's (INSTALL is False here)
    monkeypatch.setenv("PATH", os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"])))
    cwd = tmp_path / "content"
    cwd.mkdir()
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}, allow_errors=False
    )
    failure: Exception | None = None
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        failure = err
    finally:
        config = home / "f5guard.toml"
        if config.exists():  # the fixture stops the daemon this config names
            p.config.write_text(config.read_text())
        (tmp_path / "executed.ipynb").write_text(nbformat.writes(nb))

    assert (tmp_path / "mounts.txt").read_text() == f"{tmp_path / 'drive'}\n", "Drive mounted once, at DRIVE"
    assert "wrote " in outputs(cell_with(nb, '"init"')) and "set by f5guard init --set" in config.read_text()
    assert "f5guard started: pid" in outputs(cell_with(nb, 'f5guard("start")'))
    status = outputs(cell_with(nb, 'f5guard("status")'))
    assert "f5guard running" in status and "run Giọng đọc" in status, status
    assert "daemon ready" in outputs(cell_with(nb, '"tail"'))
    plot = cell_with(nb, '"plot"')
    assert any("image/png" in o.get("data", {}) for o in plot.outputs), outputs(plot)[-2000:]
    assert failure is None, failure
    for text in ("newest_sample()\nif", '"speak"'):
        cell = cell_with(nb, text)
        assert any("<audio" in str(o.get("data", {}).get("text/html", "")) for o in cell.outputs), outputs(cell)
    watched = outputs(nb.cells[-1])
    assert "watching Giọng đọc" in watched and watched.rstrip().endswith("run Giọng đọc done"), watched[-3000:]
    played = outputs(cell_with(nb, "newest_sample()\nif")).splitlines()[0]  # the newest when the cell ran
    assert played in {str(p) for p in (home / "runs" / "Giọng đọc" / "samples").glob("u*.wav")}, played
    assert (p.work / "speak" / "Giọng đọc.wav").stat().st_size > 44, "speak wrote the wav the notebook played"
