"""One root error with an exit code, like click's ClickException: 1 for failures, 2 for usage and config.

Messages are one line that names the path and the action, so a notebook cell shows exactly what to fix.
"""

from __future__ import annotations


class F5guardError(Exception):
    """Root of every error f5guard reports to a user; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # One line, always: multi-line causes (tracebacks, tool output) belong in the log, not the message.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(F5guardError, ValueError):
    """The config file is missing, unreadable, or does not match the schema."""

    exit_code = 2


class UsageError(F5guardError, ValueError):
    """A command was called with arguments that cannot work (unknown run, stage, ...)."""

    exit_code = 2


class StateError(F5guardError, RuntimeError):
    """No readable state copy, or a state written by a newer f5guard."""


class LeaseHeld(F5guardError, RuntimeError):
    """Another supervisor owns this home; the message names its host, pid and heartbeat age."""

    exit_code = 3


class LeaseLost(F5guardError, RuntimeError):
    """This supervisor saw a higher epoch or lost its heartbeat lease and must stop."""

    exit_code = 3


class HomeUnreachable(F5guardError, OSError):
    """Home (Drive) does not answer: keep training locally, write nothing to home until it is back."""


class DaemonError(F5guardError, RuntimeError):
    """The daemon could not be started, reached or stopped."""


class TrainingBehind(F5guardError, RuntimeError):
    """Home records a durable checkpoint newer than any this runtime can see, and it did not arrive in time."""


class NoRoom(F5guardError, OSError):
    """Home cannot hold what training will put there (the next checkpoint plus the one kept while it uploads)."""
