"""``f5guard init``: write a commented config — the whole Vietnamese recipe with ``--audio``, else a starter.

With ``--audio`` the config is written to home (it must survive the VM) and linked from ./f5guard.toml, so
`f5guard start` finds it now and `--config <home>/f5guard.toml` finds it after a recycled VM.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import click

from f5guard.cli.init_settings import apply_settings, parse_setting
from f5guard.config import CONFIG_NAME, load_config
from f5guard.errors import ConfigError, UsageError
from f5guard.recipe import options
from f5guard.schema import escaped, path_problem


@click.command("init")
@click.option("--home", required=True, type=click.Path(file_okay=False), help="Persistent folder (Drive on Colab).")
@click.option(
    "--audio",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder of recordings: one sub-folder per speaker (or one flat folder for one speaker).",
)
@click.option(
    "--work",
    default=None,
    type=click.Path(file_okay=False),
    help="Runtime-local folder (default: /content/f5guard on Colab, else ./f5guard-work).",
)
@click.option(
    "--language",
    default=options.default(options.TRANSCRIBE, "language"),
    show_default=True,
    help="Whisper language code.",
)
@click.option(
    "--pretrained",
    default=options.PRETRAINED_NAME.default,
    show_default=True,
    help="Model to fine-tune: a released name, a local .pt/.safetensors (vocab.txt beside it), or none.",
)
@click.option(
    "--output",
    "-o",
    default=None,
    type=click.Path(dir_okay=False),
    help=f"Where to write it (default: ./{CONFIG_NAME}; with --audio: <home>/{CONFIG_NAME}, linked here).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="STAGE.KEY=VALUE",
    help="Change a key in what is written (every run's STAGE, or lease/restart/logs); repeatable.",
)
def command(
    home: str,
    audio: str | None,
    work: str | None,
    language: str,
    pretrained: str,
    output: str | None,
    force: bool,
    sets: tuple[str, ...],
) -> int:
    """Write a commented f5guard.toml (the whole recipe with --audio)."""
    settings = [parse_setting(text) for text in sets]
    home_path = _path_option(home, "--home")
    if not os.path.exists(home_path) and not os.path.isdir(home_path.parent):
        raise UsageError(f"neither {home_path} nor its parent exists (is Drive mounted?)")
    if work is None:
        work = "/content/f5guard" if Path("/content").is_dir() else str(Path("f5guard-work").resolve())
    _path_option(work, "--work")
    if audio is None:
        target = Path(output or CONFIG_NAME)
        _refuse_overwrite(target, force)
        text = files("f5guard").joinpath("templates/starter.toml").read_text(encoding="utf-8")
        text = text.replace("{HOME}", _toml_path(str(home_path))).replace("{WORK}", _toml_path(work))
        _write(target, apply_settings(text, settings) if settings else text, sets)
        click.echo(f"wrote {target}; next: f5guard start --dry-run, then f5guard start")
        return 0
    from f5guard.cli.recipe_template import render

    text, speakers = render(
        home_path,
        work,
        _path_option(audio, "--audio"),
        language=language,
        pretrained=None if pretrained.lower() == "none" else pretrained,
    )
    target = Path(output) if output else home_path / CONFIG_NAME
    _refuse_overwrite(target, force)
    if settings:
        text = apply_settings(text, settings)
    home_path.mkdir(parents=True, exist_ok=True)
    _write(target, text, sets)
    config = load_config(target)
    for path in speakers.loose:
        click.echo(f"note: {escaped(str(path))} is not in a speaker folder; it is not part of any run")
    for note in speakers.skipped:
        click.echo(f"note: {note}")
    click.echo(f"wrote {target}: {len(config.runs)} run(s): {', '.join(r.name for r in config.runs)}")
    if pretrained.lower() == "none":
        click.echo(
            "note: --pretrained none: nothing is fine-tuned; each run trains the small model from scratch (random "
            "weights), which needs tens of hours of audio and far more updates; for a few hours of a voice, give "
            f"--pretrained {options.PRETRAINED_NAME.default} or a local .pt/.safetensors"
        )
    if output is None:
        link = Path(CONFIG_NAME)
        if link.is_symlink() or not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(target)
            click.echo(f"linked ./{CONFIG_NAME} -> {target}")
        click.echo(f"after a recycled VM: f5guard start --config {target}")
    click.echo("next: f5guard start --dry-run, then f5guard start")
    return 0


def _refuse_overwrite(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to overwrite it")


def _path_option(text: str, option: str) -> Path:
    """An absolute path the config can hold (UTF-8, within the length limits), or one UsageError line."""
    path = Path(os.path.expanduser(text))
    problem = path_problem(str(path), utf8=True)
    if problem is None:
        try:
            path = path.resolve()
        except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
            raise UsageError(f"{option} {escaped(str(path))}: cannot resolve it: {err}") from None
        problem = path_problem(str(path), utf8=True)
    if problem:
        raise UsageError(f"{option}: {problem}")
    return path


def _write(target: Path, text: str, sets: tuple[str, ...] = ()) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:  # the temp file goes whatever fails: the write (a full disk), or loading what was written
        tmp.write_text(text, encoding="utf-8")
        try:
            load_config(tmp)  # what init writes must load; a failure here is a bug worth a loud error
        except ConfigError as err:
            if not sets:
                raise
            # with --set, the likely cause is a setting: name them, and the problem without the temp file's name
            problem = err.message.replace(str(tmp), str(target))
            raise UsageError(f"with --set {' '.join(sets)}: {problem}; nothing was written") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


def _toml_path(text: str) -> str:
    """The inside of a TOML string for a path whose placeholders expand: braces stay braces."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("{", "{{").replace("}", "}}")
