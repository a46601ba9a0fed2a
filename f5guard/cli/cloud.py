"""``f5guard cloud``: the config's runs as a SkyPilot managed job on cloud GPUs (spot by default), home on a bucket.

Writes the task (f5guard/skyjob/); ``--launch`` hands it to SkyPilot's own ``sky jobs launch`` where SkyPilot is
installed. f5guard never imports SkyPilot (nor torch): the task is plain data.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from f5guard.cli.common import config_option
from f5guard.config import find_config, load_config
from f5guard.errors import F5guardError, UsageError
from f5guard.fsutil import atomic_write_bytes
from f5guard.skyjob import task as skytask
from f5guard.skyjob.yamltext import dump

INSTALL_SKY = ("SkyPilot is not installed here: `pip install 'skypilot[gcp]'` (or [aws], [kubernetes], ...; "
               "`uv tool install` works too), then `sky check`, then `sky jobs launch {out}`")  # fmt: skip


@click.command("cloud")
@config_option
@click.option(
    "--bucket",
    required=True,
    metavar="gs://NAME|s3://NAME|r2://NAME",
    help="The bucket that holds home (and the inputs beside it), mounted write-back (MOUNT_CACHED).",
)
@click.option("--gpu", default="L4:1", show_default=True, metavar="NAME[:COUNT]", help="SkyPilot's accelerators.")
@click.option(
    "--spot/--no-spot",
    default=True,
    show_default=True,
    help="Spot (preemptible) VMs: cheaper; SkyPilot replaces one taken back.",
)
@click.option(
    "--out",
    default="sky.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where the task goes; - prints it.",
)
@click.option("--disk-gb", type=click.IntRange(min=50, max=65536), default=None, help="The VM's disk (default: sized).")
@click.option("--name", default=None, help="The job's name (default: f5guard-<home folder>).")
@click.option(
    "--package",
    default=None,
    help="What the VM installs (default: this f5guard, pinned), e.g. 'f5guard @ git+https://...'.",
)
@click.option("--launch", is_flag=True, help="Then `sky jobs launch` it (SkyPilot must be installed and set up).")
def command(config_path: str | None, bucket: str, gpu: str, spot: bool, out: str, disk_gb: int | None,
            name: str | None, package: str | None, launch: bool) -> int:  # fmt: skip
    """Write (and --launch) a SkyPilot managed job that runs this config on cloud GPUs, home on a bucket."""
    path = find_config(config_path).resolve()
    config = load_config(path, find_python=False, here=False)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{path}: cannot read the config: {err.strerror or err}") from err
    options = skytask.Options(bucket=bucket, gpu=gpu, spot=spot, disk_gb=disk_gb, name=name, package=package)
    plan = skytask.build(config, text, options)
    yaml_text = dump(plan.task, skytask.header(config, plan))
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if out == "-":
        if launch:
            raise UsageError("--launch needs the task in a file: pass --out FILE")
        click.echo(yaml_text, nl=False)
        return 0
    target = Path(out).resolve()
    try:
        atomic_write_bytes(target, yaml_text.encode("utf-8"))
    except OSError as err:
        raise UsageError(f"{target}: cannot write the task: {err.strerror or err}") from err
    mount = next(iter(plan.task["file_mounts"]))
    click.echo(f"wrote {target}: job {plan.task['name']}, {gpu}{' spot' if spot else ''}, "
               f"{plan.task['resources']['disk_size']} GB disk, {bucket} at {mount}")  # fmt: skip
    if not launch:
        click.echo(f"next: sky jobs launch {target}   (watch: sky jobs logs; stop: sky jobs cancel; docs/cloud.md)")
        return 0
    return _launch(target, str(plan.task["name"]))


def _launch(target: Path, name: str) -> int:
    """SkyPilot's own command (where it is installed: on PATH, or beside this Python), its exit code ours."""
    sky = shutil.which("sky") or str(Path(sys.executable).with_name("sky"))
    if not Path(sky).is_file():
        raise F5guardError(INSTALL_SKY.format(out=target))
    click.echo(f"$ sky jobs launch --yes --name {name} {target}")
    return subprocess.call([sky, "jobs", "launch", "--yes", "--name", name, str(target)])
