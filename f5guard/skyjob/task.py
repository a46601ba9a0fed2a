"""The SkyPilot task for a config's runs: the same f5guard.toml as on Colab, on cloud GPUs, home on a bucket.

SkyPilot's managed jobs own the machine side (a preempted VM is detected, another one is provisioned, the job is
relaunched); f5guard owns the training side (resume from the newest checkpoint in the bucket). What the task says:

- ``file_mounts``: the bucket, in SkyPilot's ``MOUNT_CACHED`` mode (rclone's write-back VFS cache: a file is
  written locally and uploaded after, like Drive), at the folder holding home and every input outside it (on
  Colab: /content/drive/MyDrive for home and the audio), so every path of the config means the same there;
- work on the VM's own disk, at the config's path; ``disk_size`` for the stack, the dataset and the checkpoints;
- ``setup``: f5guard the README's way (uv tool, with the bucket's SDK for evidence), the pinned torch trio and
  f5-tts (the recipe's setup stage then keeps them), the config written where it lives;
- ``run``: ``f5guard run --foreground --until-done --takeover``: its exit code is the job's, and
  ``job_recovery`` relaunches only on this VM's trouble (daemon/exitcodes.py ``RECOVER``). ``--takeover``: the
  job is home's one owner; a claim left by the preempted VM is waited out, not refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from f5guard import __version__
from f5guard.checkpoints.durable import list_durable
from f5guard.cloud.bucket import SDK, BucketURL
from f5guard.daemon import exitcodes
from f5guard.errors import UsageError
from f5guard.recipe.pins import PINS, TORCH_TOGETHER
from f5guard.schema import STORE_ENV, Config
from f5guard.training.kind import TrainOptions

UV = "uv==0.13.9"  # the Makefile's
# Folders of the VM itself: the bucket is never mounted over one of them (nor over a user's home folder).
SYSTEM = frozenset({"/", "/bin", "/boot", "/content", "/dev", "/etc", "/home", "/lib", "/media", "/mnt", "/opt",
                    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var"})  # noqa: S108  # fmt: skip
GPU = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)(?::([0-9]+))?$")
# Disk (GB): a round allowance for the image, CUDA and the stack (torch ~6 GB, f5-tts and its dependencies, Whisper
# large-v3 ~3 GB downloaded on each VM), not measured here; then the dataset twice (rclone's cache of what is read,
# and what preparing writes) and the checkpoints (below).
STACK_GB = 80
BASE_CHECKPOINT_BYTES = 5.4e9  # a full F5TTS_v1_Base checkpoint (model + EMA + Adam, fp32): docs/reliability.md


@dataclass(frozen=True)
class Options:
    """What `f5guard cloud` was asked for."""

    bucket: str
    gpu: str = "L4:1"
    spot: bool = True
    disk_gb: int | None = None  # None: sized here
    name: str | None = None
    package: str | None = None  # None: how f5guard is installed here


@dataclass
class Plan:
    """The task, and what the person launching it should know (one line each)."""

    task: dict[str, Any]
    mount: Path
    notes: list[str] = field(default_factory=list)
    disk_lines: list[str] = field(default_factory=list)


def gpu_count(gpu: str) -> int:
    """``L4:2`` -> 2; a malformed one is a UsageError."""
    match = GPU.match(gpu)
    if match is None:
        raise UsageError(f"--gpu: expected NAME or NAME:COUNT (e.g. L4:1, A100-80GB:8), got {gpu!r}")
    count = int(match[2] or 1)
    if count < 1:
        raise UsageError(f"--gpu: the count must be at least 1, got {gpu!r}")
    return count


def bucket_url(text: str) -> BucketURL:
    try:
        url = BucketURL.parse(text)
    except ValueError as err:
        raise UsageError(f"--bucket {err}") from None
    if url.prefix:  # SkyPilot 0.14's cached mount of a GCS bucket mounts all of it, whatever path follows
        raise UsageError(f"--bucket: name a whole bucket ({url.scheme}://{url.name}), not a folder of it: it "
                         f"stands for the folder holding home")  # fmt: skip
    return url


def _literal(pattern: str) -> Path:
    """The folder part of an input pattern, before its first glob character."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path("/")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def mount_point(config: Config) -> tuple[Path, list[Path]]:
    """The folder the bucket stands for: the deepest one holding home and every input outside home and work;
    and those inputs. Refused (one line) when that is a system folder or holds work."""
    outside = sorted({
        _literal(pattern)
        for run in config.runs
        for stage in run.stages
        for pattern in stage.inputs
        if Path(pattern).is_absolute()
        and not _inside(_literal(pattern), config.home)
        and not _inside(_literal(pattern), config.work)
    })  # fmt: skip
    mount = Path(os.path.commonpath([config.home, *outside]))
    if str(mount) in SYSTEM or mount.parent == Path("/home"):
        listed = ", ".join(str(p) for p in outside[:3])
        raise UsageError(f"home ({config.home}) and the inputs outside it ({listed}) share only {mount}: put them "
                         "in one folder (on Colab: MyDrive), which the bucket then stands for")  # fmt: skip
    if _inside(config.work, mount):
        raise UsageError(f"work ({config.work}) lies inside {mount}, the folder the bucket stands for: put work "
                         "outside it (work is the VM's own fast disk)")  # fmt: skip
    return mount, outside


def _folder_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def disk_gb(config: Config, inputs: list[Path]) -> tuple[int, list[str]]:
    """The VM's disk, and how it was reckoned (lines for the task's comments)."""
    trains = [s.options for r in config.runs for s in r.stages if isinstance(s.options, TrainOptions)]
    checkpoint, how = BASE_CHECKPOINT_BYTES, "presumed: a full F5TTS_v1_Base checkpoint"
    for options in trains:
        try:
            durables = list_durable(Path(options.home_checkpoints))
        except OSError:
            continue
        if durables:
            checkpoint, how = float(durables[-1].size), f"measured: {durables[-1].path.name}"
    keep = max((o.keep_durable for o in trains), default=1)
    copies = (
        2 + keep + 1
    )  # local model_last.pt + one numbered; home's kept ones + the one uploading (in rclone's cache)
    data = sum(_folder_bytes(p) for p in [config.home / "runs", *inputs] if p.exists())
    total = STACK_GB + 2 * data / 1e9 + copies * checkpoint / 1e9
    size = max(100, math.ceil(total / 10.0) * 10)
    lines = [
        f"disk_size {size} GB = {STACK_GB} GB (image, CUDA, the stack, Whisper)",
        f"  + 2 x {data / 1e9:.1f} GB of data (home's runs and the inputs, read here; 0 where not readable)",
        f"  + {copies} x {checkpoint / 1e9:.1f} GB checkpoints ({how}): model_last.pt and a numbered one in work, "
        f"{keep} kept and 1 uploading in the bucket's cache",
    ]
    return size, lines


def package(spec: str | None, scheme: str) -> str:
    """What the VM installs: ``spec``, else how f5guard is installed here (a git URL pinned to its commit, or
    the version from an index); with the bucket's SDK extra."""
    extra = SDK[scheme][1].split("[")[1].rstrip("]")
    if spec is None:
        spec = _installed_from()
    if re.match(r"^f5guard(\s|@|=|<|>|~|!|$)", spec):
        spec = f"f5guard[{extra}]" + spec[len("f5guard") :]
    return spec


def _installed_from() -> str:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("f5guard")
    except PackageNotFoundError:
        dist = None
    here = Path(__file__).resolve().parents[2]
    direct = json.loads(dist.read_text("direct_url.json") or "{}") if dist is not None else {}
    vcs = direct.get("vcs_info") or {}
    if vcs.get("vcs") == "git":
        return f"f5guard @ git+{direct['url']}@{vcs['commit_id']}"
    if dist is not None and not direct:
        return f"f5guard=={dist.version}"
    raise UsageError(f"f5guard here runs from a local folder ({here}): pass --package with what the VM should install, "
                     "e.g. --package 'f5guard @ git+https://github.com/OWNER/f5guard'")  # fmt: skip


def _mkdir(folder: Path) -> str:
    """A folder of the user's: made with sudo where the user cannot (/content on a cloud VM), then theirs."""
    q = shlex.quote(str(folder))
    return f'mkdir -p {q} 2>/dev/null || {{ sudo mkdir -p {q} && sudo chown "$(id -u):$(id -g)" {q}; }}\n'


def _heredoc(path: Path, text: str) -> str:
    """A shell command writing ``text`` to ``path`` byte for byte (a quoted here-document: nothing expands)."""
    end = "F5GUARD_CONFIG_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    body = text if text.endswith("\n") else text + "\n"
    return _mkdir(path.parent) + f"cat > {shlex.quote(str(path))} <<'{end}'\n{body}{end}\n"


def build(config: Config, text: str, options: Options) -> Plan:
    """The task for ``config`` (whose file holds ``text``)."""
    url = bucket_url(options.bucket)
    gpus = gpu_count(options.gpu)
    mount, inputs = mount_point(config)
    size, disk_lines = (
        (options.disk_gb, [f"disk_size {options.disk_gb} GB: --disk-gb"])
        if options.disk_gb
        else disk_gb(config, inputs)
    )
    notes = []
    for run in config.runs:
        for stage in run.stages:
            spec = stage.options.spec if isinstance(stage.options, TrainOptions) else None
            if spec is not None and spec.num_processes != "auto" and spec.num_processes < gpus:
                notes.append(f"run {run.name}: num_processes = {spec.num_processes} trains on {spec.num_processes} of "
                             f'the {gpus} GPUs asked for; num_processes = "auto" uses them all')  # fmt: skip
            if spec is not None and spec.num_processes != "auto" and spec.num_processes > gpus:
                raise UsageError(f"run {run.name}: num_processes = {spec.num_processes} needs {spec.num_processes} "
                                 f"GPUs, --gpu {options.gpu} gives {gpus}")  # fmt: skip
    if config.python.path != "auto":
        notes.append(f'python = "{config.python.path}": the VM must have it; the task installs the training stack '
                     'into the VM\'s python3, which python = "auto" finds')  # fmt: skip
    install = package(options.package, url.scheme)
    stack = " ".join(f"{dist}=={PINS[dist]}" for dist in (*TORCH_TOGETHER, "f5-tts"))
    setup = (
        "set -euo pipefail\n"
        f"python3 -m pip install -q {shlex.quote(UV)}\n"
        'export PATH="$HOME/.local/bin:$PATH"\n'
        "# f5guard and its daemon in a venv of their own, with the bucket's SDK (evidence of what reached it)\n"
        f"uv tool install --force {shlex.quote(install)}\n"
        "# the training stack, pinned (f5guard/recipe/pins.py): the recipe's setup stage keeps it\n"
        f"python3 -m pip install -q {stack}\n"
        "# work: the VM's own disk, at the config's path\n"
        + _mkdir(config.work)
        + "# the config, as launched\n"
        + _heredoc(config.path, text)
    )
    command = (
        'export PATH="$HOME/.local/bin:$PATH"\n'
        f"f5guard run --foreground --until-done --takeover --config {shlex.quote(str(config.path))}\n"
    )
    name = options.name or "f5guard-" + (re.sub(r"[^a-z0-9]+", "-", config.home.name.lower()).strip("-") or "run")
    task: dict[str, Any] = {
        "name": name,
        "resources": {
            "accelerators": options.gpu,
            "use_spot": options.spot,
            "disk_size": size,
            "job_recovery": {
                "strategy": "EAGER_NEXT_REGION",
                "max_restarts_on_errors": 0,
                "recover_on_exit_codes": list(exitcodes.RECOVER),
            },
        },
        "file_mounts": {str(mount): {"source": str(url), "mode": "MOUNT_CACHED"}},
        "envs": {STORE_ENV["bucket"]: str(url), STORE_ENV["mount"]: str(mount), "PYTHONUNBUFFERED": "1"},
        "setup": setup,
        "run": command,
    }
    return Plan(task, mount, notes, disk_lines)


def header(config: Config, plan: Plan, version: str = __version__) -> list[str]:
    """The comment lines above the task: where it comes from, the disk reckoning, the exit codes."""
    codes = ", ".join(f"{code} {exitcodes.MEANING[code]}" for code in exitcodes.RECOVER)
    return [
        f"SkyPilot managed job for {config.path}, written by `f5guard cloud` (f5guard {version}); docs/cloud.md",
        f"home {config.home} and the inputs are under {plan.mount}: the bucket's root (MOUNT_CACHED)",
        *plan.disk_lines,
        f"relaunched on a new VM when preempted, and on exit {codes}; never on a config error or a FATAL diagnosis",
        "launch: sky jobs launch THIS_FILE; watch: sky jobs logs; stop: sky jobs cancel",
    ]
