"""``f5guard plot [RUN] [--out FILE]``: loss (raw and smoothed) and learning rate against update, with restarts
and durable checkpoints marked, as a PNG. Read from the trainer's progress copies on home, so it works on a
fresh VM too. matplotlib is imported by this command only."""

from __future__ import annotations

from pathlib import Path

import click

from f5guard.checkpoints.durable import list_durable
from f5guard.cli.common import config_option, open_config
from f5guard.errors import F5guardError, UsageError
from f5guard.layout import HomeLayout
from f5guard.readback import finite, update_of
from f5guard.schema import Config, RunConfig
from f5guard.trainevents import Stamped, Start, Update, read_stamped
from f5guard.training.kind import TrainOptions

SMOOTHING = 0.9  # exponential moving average of the loss, like TensorBoard's default slider


@click.command("plot")
@config_option
@click.argument("run", required=False)
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), default=None, help="PNG to write.")
def command(config_path: str | None, run: str | None, out: str | None) -> int:
    """Write a PNG of loss and learning rate against update, restarts and durable checkpoints marked."""
    ctx = open_config(config_path, find_python=False)
    target = _pick_run(ctx.config, run)
    events = progress_events(ctx.config, target)
    updates = [s.event for s in events if isinstance(s.event, Update)]
    if not updates:
        if all(s.options.mode == "command" for s in target.stages if isinstance(s.options, TrainOptions)):
            raise UsageError(
                f"run {target.name!r} trains with mode = 'command': f5guard follows its progress bar "
                "(`f5guard status`) but keeps no loss curve to plot; mode = 'builtin' records one"
            )
        raise F5guardError(f"no training progress recorded for run {target.name!r} yet (nothing on home or here)")
    durable = sorted({d.update for d in list_durable(ctx.home.checkpoints(target.name))})
    path = Path(out) if out else Path.cwd() / f"{target.name}-training.png"
    draw(target.name, events, durable, path)
    last = max(u.update for u in updates)
    click.echo(f"wrote {path} (up to update {last}, {len(_restarts(events))} restart(s), {len(durable)} durable)")
    return 0


def _pick_run(config: Config, name: str | None) -> RunConfig:
    trained = [r for r in config.runs if any(s.kind == "train" for s in r.stages)]
    if name is None:
        if len(trained) != 1:
            names = ", ".join(r.name for r in trained) or "none"
            raise UsageError(f"name the run to plot (runs with a train stage: {names})")
        return trained[0]
    run = config.run(name)
    if run is None or run not in trained:
        names = ", ".join(r.name for r in trained) or "none"
        raise UsageError(f"no run named {name!r} with a train stage in {config.path} (runs: {names})")
    return run


def progress_events(config: Config, run: RunConfig) -> list[Stamped]:
    """Every progress event of ``run``: the copies on home (every runtime and epoch) and the local file, once
    each, in time order."""
    files = sorted(HomeLayout(config.home).progress_dir(run.name).glob("*.jsonl"))
    files += [Path(s.options.progress_path) for s in run.stages if isinstance(s.options, TrainOptions)]
    seen: set[tuple[int, float, str]] = set()
    events: list[Stamped] = []
    for path in files:
        try:
            found, _ = read_stamped(path)
        except OSError:
            continue
        for stamped in filter(_plottable, found):
            key = (stamped.pid, stamped.t, repr(stamped.event))
            if key not in seen:
                seen.add(key)
                events.append(stamped)
    return sorted(events, key=lambda s: s.t)


def _plottable(stamped: Stamped) -> bool:
    """An event whose figures can be drawn: a finite time, an update that is a count, a finite loss and learning
    rate (or none). A progress copy on home may be torn, old or edited: the rest of it is still plotted."""
    event = stamped.event
    if not finite(stamped.t):
        return False
    if isinstance(event, Update):
        return update_of(event.update) is not None and all(v is None or finite(v) for v in (event.loss, event.lr))
    if isinstance(event, Start):
        return update_of(event.start_update) is not None
    return True


def _restarts(events: list[Stamped]) -> list[int]:
    """The update each later attempt resumed at (the first start is not a restart)."""
    starts = [s.event.start_update for s in events if isinstance(s.event, Start)]
    return starts[1:]


def draw(run: str, events: list[Stamped], durable: list[int], path: Path) -> None:
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")  # no display on a Colab VM or a server
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise F5guardError(f"`f5guard plot` needs matplotlib ({err}); the [train] extra installs it") from err
    points = sorted(((s.event.update, s.event.loss, s.event.lr) for s in events if isinstance(s.event, Update)),
                    key=lambda point: point[0])  # by update only: a loss or lr may be None  # fmt: skip
    steps = [u for u, loss, _ in points if loss is not None]
    losses = [loss for _, loss, _ in points if loss is not None]
    smooth: list[float] = []
    running = 0.0
    for k, value in enumerate(losses, start=1):  # debiased (as TensorBoard): the first points are not pinned
        running = SMOOTHING * running + (1 - SMOOTHING) * value  # to the first loss
        smooth.append(running / (1 - SMOOTHING**k))
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
    ax.plot(steps, smooth, color="tab:blue", linewidth=2, label=f"loss (smoothed {SMOOTHING})")
    for i, update in enumerate(durable):
        ax.axvline(update, color="tab:green", linestyle=":", linewidth=1, label="durable on home" if i == 0 else None)
    for i, update in enumerate(_restarts(events)):
        ax.axvline(
            update, color="tab:red", linestyle="--", linewidth=1.2, label="restart (resumed)" if i == 0 else None
        )
    ax.set_xlabel("update")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # updates are whole numbers
    ax.set_ylabel("loss")
    lrs = [(u, lr) for u, _, lr in points if lr is not None]
    if lrs:
        twin = ax.twinx()
        twin.plot([u for u, _ in lrs], [lr for _, lr in lrs], color="tab:orange", linewidth=1.2, label="learning rate")
        twin.set_ylabel("learning rate", color="tab:orange")
        twin.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.legend(loc="upper right")
    ax.set_title(f"{run}: up to update {max(steps, default=0)}, {len(durable)} durable checkpoint(s) on home")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, format="png")
    except OSError as err:
        raise F5guardError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        plt.close(fig)
