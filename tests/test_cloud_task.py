"""`f5guard cloud`: a Colab config becomes a SkyPilot managed job (tests/../f5guard/skyjob/), checked by SkyPilot's
own loader offline, and refused with one line where it cannot work.

SkyPilot is not in the test extra: skypilot 0.14.1 resolves with the rest only by downgrading the training stack
(transformers 5.24 -> 4.57, datasets 5.2 -> 2.14, huggingface-hub 1.33 -> 0.36, click 8.5 -> 8.1: measured with
`uv pip compile`). The SkyPilot test builds its own venv from the package registry once per machine (uv, ~17 s
with uv's cache warm, ~450 MB) under ~/.cache/f5guard-tests, then loads each task in ~4 s, inside a network
namespace with no network where `unshare -n` works (no credentials, no network: what CI has).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from f5guard.daemon import exitcodes
from tests.test_install import _uv

SKYPILOT = "skypilot==0.14.1"
PACKAGE = "f5guard @ git+https://github.com/OWNER/f5guard@0123abc"
ROOT = Path(__file__).resolve().parents[1]

VALIDATE = r"""
import json, sys
import sky
from sky.jobs import recovery_strategy  # registers the recovery strategies
from sky.utils import registry, schemas

task = sky.Task.from_yaml(sys.argv[1])
(res,) = list(task.resources)
recovery = dict(res.job_recovery or {})
declared = set(schemas.get_resources_schema()["properties"]["job_recovery"]["anyOf"][1]["properties"])
strategy = registry.JOBS_RECOVERY_STRATEGY_REGISTRY.from_str(recovery.get("strategy"))
mounts = {p: {"source": s.source, "mode": s.mode.value} for p, s in task.storage_mounts.items()}
print(json.dumps({"name": task.name, "accelerators": res.accelerators, "use_spot": res.use_spot,
                  "disk_size": res.disk_size, "job_recovery": recovery, "undeclared": sorted(set(recovery) - declared),
                  "strategy": strategy.__name__, "mounts": mounts, "file_mounts": task.file_mounts,
                  "envs": task.envs, "run": task.run, "setup": task.setup}))
"""


def _colab_like(tmp_path: Path, *, work: Path | None = None) -> Path:
    """A recipe config as the Colab notebook writes it: home and the audio on "MyDrive", work apart."""
    drive = tmp_path / "drive" / "MyDrive"
    speaker = drive / "raw_audio" / "lan"
    speaker.mkdir(parents=True)
    (speaker / "a.wav").write_bytes(b"RIFF" + bytes(4000))  # ingest only lists it here
    home = drive / "F5TTS_Vietnamese"
    work = work or tmp_path / "content" / "f5guard"
    subprocess.run([sys.executable, "-m", "f5guard", "init", "--home", str(home), "--audio", str(drive / "raw_audio"),
                    "--work", str(work), "--pretrained", "F5TTS_v1_Base"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    return home / "f5guard.toml"


def _cloud(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "f5guard", "cloud", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=config.parent, timeout=60,
                          env={**os.environ, **(env or {})})  # fmt: skip


def _written(tmp_path: Path, *args: str) -> tuple[Path, Path, dict[str, Any], subprocess.CompletedProcess[str]]:
    config = _colab_like(tmp_path)
    out = tmp_path / "sky.yaml"
    proc = _cloud(config, "--bucket", "gs://f5-voices", "--out", str(out), "--package", PACKAGE, *args)
    assert proc.returncode == 0, proc.stderr
    return config, out, yaml.safe_load(out.read_text()), proc


def _heredoc(setup: str) -> str:
    match = re.search(r"<<'(F5GUARD_CONFIG_[0-9a-f]+)'\n(.*?)\n\1\n", setup, re.S)
    assert match, setup
    return match[2] + "\n"


def test_a_colab_config_becomes_a_spot_job_with_home_on_the_bucket(tmp_path: Path) -> None:
    """The bucket stands for MyDrive (home and the audio beside it); work stays on the VM's disk; the config
    goes to its own path byte for byte; the run is `run --until-done --takeover`, relaunched only on RECOVER."""
    config, out, task, proc = _written(tmp_path, "--gpu", "A100:2")
    drive = tmp_path / "drive" / "MyDrive"
    assert task["file_mounts"] == {str(drive): {"source": "gs://f5-voices", "mode": "MOUNT_CACHED"}}
    assert task["envs"]["F5GUARD_STORE_BUCKET"] == "gs://f5-voices" and task["envs"]["F5GUARD_STORE_MOUNT"] == str(
        drive
    )
    resources = task["resources"]
    assert (resources["accelerators"], resources["use_spot"]) == ("A100:2", True)
    assert resources["job_recovery"] == {"strategy": "EAGER_NEXT_REGION", "max_restarts_on_errors": 0,
                                         "recover_on_exit_codes": list(exitcodes.RECOVER)}  # fmt: skip
    assert not {exitcodes.DONE, exitcodes.FAILED, exitcodes.USAGE, exitcodes.FATAL} & set(exitcodes.RECOVER)
    assert resources["disk_size"] >= 100 and "disk_size" in out.read_text().split("\nname:")[0]
    assert f"--until-done --takeover --config {config}" in task["run"]
    assert "uv tool install --force 'f5guard[gcs] @ git+https://github.com/OWNER/f5guard@0123abc'" in task["setup"]
    assert "torch==2.9.1 torchaudio==2.9.1 torchcodec==0.8.1 f5-tts==1.1.22" in task["setup"]
    assert str(tmp_path / "content" / "f5guard") in task["setup"]
    assert _heredoc(task["setup"]) == config.read_text()
    for script in (task["setup"], task["run"]):
        assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    assert 'num_processes = 1 trains on 1 of the 2 GPUs asked for; num_processes = "auto"' in proc.stderr
    assert "wrote" in proc.stdout and "sky jobs launch" in proc.stdout


def test_what_cannot_work_is_one_line(tmp_path: Path) -> None:
    """A folder of a bucket, a malformed GPU, work inside the bucket's folder, and `--launch` without SkyPilot:
    one line each, non-zero, nothing written."""
    config = _colab_like(tmp_path)
    out = tmp_path / "sky.yaml"
    cases = [
        (["--bucket", "gs://b/sub"], 2, "name a whole bucket (gs://b), not a folder of it"),
        (["--bucket", "ftp://b"], 2, "--bucket must start with gs://, s3://, r2://"),
        (["--bucket", "gs://b", "--gpu", "L4:x"], 2, "--gpu: expected NAME or NAME:COUNT"),
    ]
    for args, code, words in cases:
        proc = _cloud(config, *args, "--out", str(out), "--package", PACKAGE)
        assert (proc.returncode, proc.stderr.count("\n")) == (code, 1) and words in proc.stderr, (args, proc.stderr)
        assert not out.exists()
    inside = _colab_like(tmp_path / "b", work=tmp_path / "b" / "drive" / "MyDrive" / "work")
    proc = _cloud(inside, "--bucket", "gs://b", "--out", str(out), "--package", PACKAGE)
    assert proc.returncode == 2 and "lies inside" in proc.stderr and "put work outside it" in proc.stderr, proc.stderr
    bare = {"PATH": "/usr/bin:/bin"}  # no `sky` on PATH, and none beside this Python
    if Path(sys.executable).with_name("sky").exists():
        pytest.skip("SkyPilot is installed beside this Python")
    proc = _cloud(config, "--bucket", "gs://b", "--out", str(out), "--package", PACKAGE, "--launch", env=bare)
    assert proc.returncode == 1 and "SkyPilot is not installed here: `pip install 'skypilot[gcp]'" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and out.exists()


def test_launch_hands_the_task_to_sky_jobs_launch(tmp_path: Path) -> None:
    """`--launch` runs SkyPilot's own command on the written task and exits with its code (a stand-in `sky` that
    records its arguments: the one thing here that needs a cloud account)."""
    config = _colab_like(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sky = bin_dir / "sky"
    sky.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\nexit 7\n')
    sky.chmod(sky.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "job.yaml"
    proc = _cloud(config, "--bucket", "r2://voices", "--out", str(out), "--package", PACKAGE, "--launch",
                  "--name", "lan-voice", env={"PATH": f"{bin_dir}:/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    assert (tmp_path / "argv").read_text().split() == ["jobs", "launch", "--yes", "--name", "lan-voice", str(out)]
    assert "f5guard[s3] @ git+" in out.read_text()


def _sky_python() -> Path:
    """A venv with SkyPilot, built once per machine from the package registry (see the module docstring)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "f5guard-tests"
    venv = cache / f"{SKYPILOT.replace('==', '-')}-py{sys.version_info[0]}{sys.version_info[1]}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--clear", "-p", sys.executable, str(venv)], check=True, timeout=120)
    installed = subprocess.run([uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(python), SKYPILOT],
                               capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert installed.returncode == 0, f"could not install {SKYPILOT}: {installed.stderr[-2000:]}"
    (venv / ".complete").write_text(SKYPILOT)
    return python


def _offline(argv: list[str]) -> list[str]:
    """``argv`` in a network namespace of its own (no network at all), where this machine allows it."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return ["unshare", "-n", *argv] if probe.returncode == 0 else argv


@pytest.mark.slow  # the first run builds the venv
@pytest.mark.timeout(1200)
def test_skypilot_loads_the_task_offline(tmp_path: Path) -> None:
    """SkyPilot 0.14.1's own `Task.from_yaml` (its schema validation) accepts the task and reads it as meant:
    the GPUs, spot, the disk, the recovery keys (each one its schema declares) and strategy, the cached mount;
    a task it must refuse (a mount mode it does not know) is refused, so the check can fail."""
    _config, out, task, _proc = _written(tmp_path, "--gpu", "L4:1", "--no-spot", "--disk-gb", "300")
    python = _sky_python()
    env = {**os.environ, "HOME": str(tmp_path / "sky-home")}  # no ~/.sky, no credentials
    loaded = subprocess.run(_offline([str(python), "-c", VALIDATE, str(out)]), capture_output=True, text=True,
                            timeout=300, env=env, check=False)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    seen = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert (seen["accelerators"], seen["use_spot"], seen["disk_size"]) == ({"L4": 1}, False, 300), seen
    assert seen["job_recovery"] == task["resources"]["job_recovery"] and seen["undeclared"] == [], seen
    assert seen["strategy"] == "EagerFailoverStrategyExecutor", seen
    assert seen["mounts"] == {str(tmp_path / "drive" / "MyDrive"): {"source": "gs://f5-voices", "mode": "MOUNT_CACHED"}}
    assert seen["file_mounts"] in (None, {}), seen
    assert (seen["run"], seen["setup"]) == (task["run"], task["setup"])
    assert seen["envs"]["F5GUARD_STORE_BUCKET"] == "gs://f5-voices"
    broken = tmp_path / "broken.yaml"
    broken.write_text(out.read_text().replace('mode: "MOUNT_CACHED"', 'mode: "MOUNT_CACHD"'))
    refused = subprocess.run(_offline([str(python), "-c", VALIDATE, str(broken)]), capture_output=True, text=True,
                             timeout=300, env=env, check=False)  # fmt: skip
    assert refused.returncode != 0 and "MOUNT_CACHD" in refused.stderr, refused.stderr[-2000:]


def test_a_config_read_on_another_machine(tmp_path: Path) -> None:
    """The Colab config, on a laptop that has none of its folders nor its Python: the task is still written for
    the VM (the bucket at MyDrive), and the one thing the VM must provide is said in a note."""
    if Path("/content").exists():
        pytest.skip("this machine has /content")
    config = tmp_path / "f5guard.toml"
    config.write_text(
        'home = "/content/drive/MyDrive/F5TTS_Vietnamese"\nwork = "/content/f5guard"\npython = "/opt/colab/python3"\n'
        '[[runs]]\nname = "lan"\n[[runs.stages]]\nname = "ingest"\ntype = "ingest"\n'
        'audio = "/content/drive/MyDrive/raw_audio/lan"\n'
    )
    proc = _cloud(config, "--bucket", "s3://voices", "--out", "-", "--package", "f5guard==0.1.0")
    assert proc.returncode == 0, proc.stderr
    task = yaml.safe_load(proc.stdout)
    assert task["file_mounts"] == {"/content/drive/MyDrive": {"source": "s3://voices", "mode": "MOUNT_CACHED"}}
    assert "uv tool install --force 'f5guard[s3]==0.1.0'" in task["setup"]
    assert 'python = "/opt/colab/python3": the VM must have it' in proc.stderr
