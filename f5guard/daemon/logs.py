"""structlog set-up for the daemon: JSON lines to a size-rotated file in work, pretty lines on a console.

One chain ending in ProcessorFormatter.wrap_for_formatter; each handler renders it its own way. The daemon is
the only writer of its log file; ``tail`` reads it through ``follow.py``.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from f5guard.fsutil import make_dirs
from f5guard.redact import Redactor
from f5guard.schema import LogSettings


@contextlib.contextmanager
def optional_absent(*names: str) -> Iterator[None]:
    """Import with the optional packages ``names`` looking uninstalled (``import rich`` raises ImportError).

    structlog pulls in rich (and through it pygments and attrs) only to pretty-print tracebacks on a console:
    ~6 MB resident in a daemon that writes JSON lines. One already imported stays as it is.
    """
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not installed" marker
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


with optional_absent("rich", "attr"):
    import structlog

_redactor = Redactor()


def set_redactor(redactor: Redactor) -> None:
    global _redactor  # noqa: PLW0603 - one process-wide logging pipeline, configured once
    _redactor = redactor


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = _redactor.text(value)
        elif isinstance(value, list):
            event[key] = [_redactor.text(v) if isinstance(v, str) else v for v in value]
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _redact,
]


def configure(log_file: Path | None, settings: LogSettings, *, console: bool) -> None:
    """Route structlog (and stray stdlib logging) to a rotating JSON file and/or a pretty console."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if log_file is not None:
        make_dirs(log_file.parent)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8"
        )
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.dict_tracebacks,
                    structlog.processors.JSONRenderer(ensure_ascii=False),
                ],
                foreign_pre_chain=_SHARED,
            )
        )
        root.addHandler(file_handler)
    if console:
        console_handler = logging.StreamHandler(sys.stderr)
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
                ],
                foreign_pre_chain=_SHARED,
            )
        )
        root.addHandler(console_handler)
    root.setLevel(logging.INFO)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("f5guard").bind(**bound)
