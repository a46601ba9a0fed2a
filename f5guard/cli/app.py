"""The click application: one module per verb, loaded only when that verb runs."""

from __future__ import annotations

import importlib
import sys

import click

from f5guard import __version__
from f5guard.errors import F5guardError

# verb -> (module, one-line help); the help is here so `f5guard --help` imports no verb module.
VERBS: dict[str, tuple[str, str]] = {
    "init": ("f5guard.cli.init", "Write a commented starter f5guard.toml."),
    "start": ("f5guard.cli.start", "Start the supervisor in the background (or --dry-run: show the plan)."),
    "status": ("f5guard.cli.status", "Where everything stands: daemon, runs, stages."),
    "tail": ("f5guard.cli.tail", "Show (and -f follow) the daemon and stage logs."),
    "watch": ("f5guard.cli.watch", "Follow the runs live until done; keeps a notebook cell (and Colab) busy."),
    "stop": ("f5guard.cli.stop", "Stop the supervisor gracefully; children checkpoint and exit."),
    "reset": ("f5guard.cli.reset", "Invalidate a stage and everything after it, so they run again."),
    "run": ("f5guard.cli.run", "Run the supervisor attached (systemd, debugging)."),
    "plot": ("f5guard.cli.plot", "A PNG of loss and learning rate by update, restarts and checkpoints marked."),
    "speak": ("f5guard.cli.speak", "Say a sentence in a run's voice with its newest checkpoint (a WAV)."),
    "demo": ("f5guard.cli.demo", "A real tiny F5-TTS training under f5guard, with a crash and the resume."),
    "doctor": ("f5guard.cli.doctor", "Check home (is it in the cloud?), space, uploads and the training stack."),
    "cloud": ("f5guard.cli.cloud", "The same config as a SkyPilot managed job on cloud GPUs, home on a bucket."),
}


class LazyGroup(click.Group):
    """Imports a verb's module on first use; listing verbs costs nothing."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in VERBS:
            return None
        module = importlib.import_module(VERBS[cmd_name][0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in VERBS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="f5guard")
def cli() -> None:
    """f5guard: supervise F5-TTS fine-tuning so Colab disconnects and recycled VMs lose nothing."""


def run(argv: list[str] | None = None) -> None:
    """Errors become one line on stderr and their exit code; Ctrl-C in ``tail -f`` exits 0."""
    try:
        code = cli.main(args=argv, prog_name="f5guard", standalone_mode=False)
    except F5guardError as err:
        click.echo(f"f5guard: {err.message}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.ClickException as err:
        click.echo(f"f5guard: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except click.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(0)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
