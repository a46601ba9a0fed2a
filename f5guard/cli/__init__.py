"""The ``f5guard`` command. The CLI never imports torch and talks to the daemon only through files and signals.

``status`` with a daemon running here is answered by the daemon itself (``quickstatus``) before click or the
config schema are imported, so it costs little more than starting Python; everything else goes to the click
application in ``app.py``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["status"]:
        from f5guard.status.quick import try_quick_status

        code = try_quick_status(args[1:])
        if code is not None:
            sys.exit(code)
    from f5guard.cli.app import run

    run(args)
