"""``f5guard doctor [--home DIR]``: what a new VM offers before hours of training go into it, in one command.

Home: its file system, whether DriveFS answers for uploads (f5guard/cloud/), free space against what the
config's runs need (two full checkpoints: the one kept while the next uploads; the pretrained copy), and a timed
upload (``--no-upload-probe`` skips it). The stack: the Python that trains, torch, the GPU and the precision
``auto`` will choose there (asked in that Python: doctor itself never imports torch). One line of advice per
problem; exit 1 when one blocks training; ``--json`` for scripts.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from f5guard.checkpoints.durable import list_durable
from f5guard.cli.common import config_option
from f5guard.cloud.detect import open_configured
from f5guard.cloud.survey import Finding, home_findings, space_finding, upload_probe
from f5guard.config import find_config, load_config
from f5guard.errors import ConfigError, UsageError
from f5guard.schema import Config, StackPython, StoreSettings
from f5guard.stages.stackpython import ask, ensure_pythonpath, stack_env
from f5guard.training.kind import TrainOptions

PROBE_BYTES = 64 * 2**20
PROBE_TIMEOUT_S = 600.0
STACK_TIMEOUT_S = 180.0  # importing torch and initialising CUDA on a cold disk
# A full checkpoint (model + EMA + Adam's two moments, fp32: 16 bytes a parameter) per model preset, and the
# released pretrained copy (EMA only) the recipe fetches for the base model.
CHECKPOINT_BYTES = {"base": int(5.4e9), "small": int(2.5e9), "tiny": int(4e6)}
PRETRAINED_BYTES = {"base": int(1.35e9)}
_STACK = (
    "import importlib.util as u, json\n"
    "r = {'torch': None, 'f5_tts': u.find_spec('f5_tts') is not None}\n"
    "if u.find_spec('torch') is not None:\n"
    "    import torch\n"
    "    from f5guard.trainer.hardware import probe, resolve_precision\n"
    "    hw = probe()\n"
    "    r.update(torch=torch.__version__, device=hw.device, cuda=hw.cuda, capability=hw.capability,\n"
    "             memory_gib=hw.memory_gib, precision=resolve_precision('auto', hw))\n"
    "print('F5GUARD-PY ' + json.dumps(r))\n"
)


@click.command("doctor")
@config_option
@click.option("--home", "home_dir", type=click.Path(file_okay=False), default=None, help="Home to examine "
              "(default: the config's).")  # fmt: skip
@click.option("--no-upload-probe", is_flag=True, help="Skip the timed upload of a 64 MiB file to home.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def command(config_path: str | None, home_dir: str | None, no_upload_probe: bool, as_json: bool) -> int:
    """Check home, space, uploads and the training stack on this VM; exit 1 on a problem that blocks training."""
    config = _config(config_path, required=home_dir is None)
    home = Path(home_dir).expanduser().resolve() if home_dir else config.home  # type: ignore[union-attr]
    settings = config.store if config else StoreSettings()
    delay = config.lease.retention_delay_s if config else 600.0
    store = open_configured(home, settings, delay_s=delay)
    findings = home_findings(home, store, settings.kind)
    need, what = _need(config)
    findings.append(space_finding(home, need, what))
    if not no_upload_probe and not any(f.blocking for f in findings):
        findings.append(upload_probe(home, store, PROBE_BYTES, PROBE_TIMEOUT_S))
    findings.extend(_stack(config.python if config else StackPython(sys.executable, "the daemon's own Python")))
    blocking = any(f.blocking for f in findings)
    if as_json:
        click.echo(json.dumps({"home": str(home), "blocking": blocking, "findings": [asdict(f) for f in findings]}))
    else:
        for f in findings:
            click.echo(f"  {f.topic:<20} {f.value}")
            if f.advice:
                click.secho(f"  {'':<20} {'blocking: ' if f.blocking else ''}{f.advice}", fg="red" if f.blocking
                            else "yellow")  # fmt: skip
        click.echo(
            "blocking problems: training cannot work until they are fixed" if blocking else "no blocking problem"
        )
    return 1 if blocking else 0


def _config(config_path: str | None, *, required: bool) -> Config | None:
    """The config (its home, [store], runs and python); without one, ``--home`` alone is examined."""
    path = find_config(config_path)
    if not required and config_path is None and not path.exists():
        return None
    try:
        return load_config(path)
    except ConfigError as err:
        if required:
            raise
        raise UsageError(f"{err.message} (or leave out --config and examine --home alone)") from err


def _need(config: Config | None) -> tuple[int, str]:
    """Bytes the config's runs still need on home: per train stage, two full checkpoints (the one kept while
    the next uploads) less what home already keeps, and the pretrained copy when it is not there yet."""
    total, parts = 0, []
    for run in config.runs if config else ():
        for stage in run.stages:
            options = stage.options
            if not isinstance(options, TrainOptions):
                continue
            durables = list_durable(Path(options.home_checkpoints))
            preset = options.spec.model if options.spec is not None else ""
            size = durables[-1].size if durables else CHECKPOINT_BYTES.get(preset, 0)
            if not size:
                continue
            total += 2 * size - (durables[-1].size if durables else 0)
            parts.append(f"run {run.name}: 2 x {size / 1e9:.1f} GB checkpoints")
            pretrained = options.spec.pretrained if options.spec is not None else None
            if pretrained is not None and not pretrained.exists() and preset in PRETRAINED_BYTES:
                total += PRETRAINED_BYTES[preset]
                parts.append(f"the pretrained copy ({PRETRAINED_BYTES[preset] / 1e9:.2f} GB)")
    return total, ", ".join(parts)


def _stack(python: StackPython) -> list[Finding]:
    """Torch, the GPU and the precision "auto" picks, asked in the stack python (torch never loads here)."""
    env = dict(os.environ)
    if python.pythonpath is not None:
        try:
            ensure_pythonpath(python.pythonpath)
        except OSError as err:
            return [Finding("python", python.path, f"cannot link f5guard for it: {err.strerror or err}")]
        env = stack_env(env, python)
    found = [Finding("python", f"{python.path} ({python.how})")]
    answer = ask(python.path, _STACK, env, STACK_TIMEOUT_S)
    if answer is None:
        return [*found, Finding("torch", "no answer", f"{python.path} did not run the probe", blocking=True)]
    got: dict[str, Any] = json.loads(answer)
    if got.get("torch") is None:
        stack_advice = "the setup stage installs torch and f5-tts there, or: pip install 'f5guard[train]'"
        return [*found, Finding("torch", "not installed", stack_advice)]
    found.append(Finding("torch", f"{got['torch']}; f5_tts {'found' if got.get('f5_tts') else 'not installed'}"))
    if not got.get("cuda"):
        found.append(Finding("gpu", "none: cpu", "no CUDA GPU: training runs on the CPU, far too slowly for Base"))
    else:
        cap = got.get("capability") or [0, 0]
        found.append(Finding("gpu", f"{got['device']} (compute {cap[0]}.{cap[1]}, {got.get('memory_gib')} GiB)"))
    precision = {"no": "fp32"}.get(got.get("precision", ""), got.get("precision", "?"))
    advice = None
    if precision == "fp16":
        advice = 'no bf16 on this GPU: fp16 fine-tuning can go NaN (SWivid/F5-TTS#341); mixed_precision = "no" is safe'
    found.append(Finding("precision", f"auto picks {precision}", advice))
    return found
