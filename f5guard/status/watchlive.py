"""The terminal view of ``f5guard watch``: one block per run with a rich progress bar (rich is imported only
where a terminal shows it; notebooks get the plain line of status/watchview.py)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from f5guard.status.render import STATE_STYLE
from f5guard.status.watchview import RunView

BAR_COLUMNS = 32


def render_views(views: Sequence[RunView]) -> RenderableType:
    blocks: list[RenderableType] = []
    for view in views:
        blocks.append(Text.assemble(("run ", "bold"), (view.name, "bold"), " · ",
                                    (view.where, STATE_STYLE.get(view.state, ""))))  # fmt: skip
        if view.bar is not None:
            grid = Table.grid(padding=(0, 1))
            fraction = view.bar.fraction
            if fraction is not None and view.bar.total:
                bar = ProgressBar(total=view.bar.total, completed=view.bar.done or 0, width=BAR_COLUMNS)
                grid.add_row(Text(f"  {view.bar.stage}"), bar, Text(f"{fraction * 100:3.0f}%"), Text(view.bar.figures))
            else:
                grid.add_row(Text(f"  {view.bar.stage}"), Text(view.bar.figures))
            blocks.append(grid)
        for text, style in ((view.checkpoint, "dim"), (view.restarts, "yellow"), (view.warning, "yellow")):
            if text:
                blocks.append(Text(f"  {'warning: ' if text is view.warning else ''}{text}", style=style))
    return Group(*blocks)
