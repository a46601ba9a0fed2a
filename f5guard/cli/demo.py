"""``f5guard demo``: the embedded demo — a real supervised tiny F5-TTS training, a crash, the resume."""

from __future__ import annotations

from pathlib import Path

import click

from f5guard.errors import UsageError


@click.command("demo")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False),
    default="f5guard-demo",
    show_default=True,
    help="Demo folder (recreated).",
)
@click.option("--keep-running", is_flag=True, help="Leave the supervisor running at the end.")
def command(root: str, keep_running: bool) -> int:
    """Generate a tiny dataset, train a tiny F5-TTS under f5guard on the CPU, kill the trainer once, watch it
    resume; ends with the status view."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("f5_tts") is None:
        raise UsageError(
            "the demo trains a real F5-TTS model: install the training stack first "
            "(pip install 'f5guard[train]', or `make demo` in a checkout)"
        )
    from f5guard.cli.demo_run import Demo
    from f5guard.status.render import make_console, render_status

    demo = Demo(Path(root), click.echo)
    demo.prepare()
    demo.start()
    try:
        demo.crash_and_resume()
        report = demo.finish()
    except BaseException:
        if not keep_running:
            demo.stop()
        raise
    if not keep_running:
        demo.stop()
        report = demo.report()
    click.echo(f"{demo.clock()} done. The final status:\n")
    render_status(report, make_console())
    cfg = f"--config {demo.config_path}"
    click.echo(
        f"\nTry:  f5guard status {cfg}\n      f5guard tail {cfg} -n 40\n"
        f"      f5guard start --dry-run {cfg}   (everything is up to date now)"
    )
    return 0
