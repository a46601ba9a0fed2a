"""Everything the CLI says to the daemon and the daemon answers, as types, in one place (pueue's Request/Response).

Requests: status (the rendered report, also what `watch` shows), stop, reset (a run from a stage), retry (runs
that failed, from their failed stage). Answers: the status text with its exit code, done (what to tell the
user), refused (one line why, and the exit code). The start pipe's reports (ready, waiting for the lease,
failed, already running) are messages of the same kind. Requests travel over one Unix socket in the work dir
(one connection per request, the answer, then EOF); a daemon that does not listen is not serving (yet).

The client side is `status`'s fast path, which must cost little more than starting Python: this module and
client.py import only ``os`` and ``_socket`` (no json, dataclasses, enum or re: each costs milliseconds), so
messages are plain classes, and a message is one line, ``<verb> key=value ...\\n`` (values %-escaped), plus an
optional body of ``length`` bytes.
"""

from __future__ import annotations

import os

SOCKET_NAME = "daemon.sock"  # in the work dir, beside daemon.lock: only this work dir's daemon listens there
MAX_LINE = 65536  # a request or header line longer than this is refused, not buffered
_ESCAPES = {"%": "%25", " ": "%20", "\n": "%0A", "\r": "%0D", "\t": "%09"}


class ProtocolError(ValueError):
    """A line that is not a message of this protocol (the other side is not f5guard, or a newer one)."""


class Message:
    """A typed message: ``verb`` names it on the wire, ``fields`` its (name, kind) pairs, kind one of int, float,
    bool, str, ``int?``/``str?`` (may be None) or ``body`` (the text after the line)."""

    __slots__: tuple[str, ...] = ()
    verb = ""
    fields: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        parts = [self.verb]
        body = b""
        for name, kind in self.fields:
            value = getattr(self, name)
            if kind == "body":
                body = str(value).encode("utf-8")
                parts.append(f"length={len(body)}")
            elif value is not None:
                text = ("1" if value else "0") if kind == "bool" else str(value)
                parts.append(f"{name}={_escape(text)}")
        return (" ".join(parts) + "\n").encode("utf-8") + body

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n, _ in self.fields)

    def __hash__(self) -> int:
        return hash((self.verb, *(getattr(self, n) for n, _ in self.fields)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n, _ in self.fields)
        return f"{type(self).__name__}({shown})"


# ------------------------------------------------------------------------------------------------- requests
class StatusRequest(Message):
    """The status report, rendered by the daemon for the client's terminal (``watch`` asks the same)."""

    __slots__ = ("as_json", "color", "columns")
    verb = "status"
    fields = (("as_json", "bool"), ("columns", "int"), ("color", "bool"))

    def __init__(self, as_json: bool = False, columns: int = 0, color: bool = False) -> None:
        self.as_json, self.columns, self.color = as_json, columns, color


class StopRequest(Message):
    """Stop every stage (a trainer checkpoints, its checkpoint is synced) and exit."""

    __slots__ = ()
    verb = "stop"


class ResetRequest(Message):
    """Run ``stage`` (None: the whole run) and every later stage of ``run`` again."""

    __slots__ = ("run", "stage")
    verb = "reset"
    fields = (("run", "str"), ("stage", "str?"))

    def __init__(self, run: str, stage: str | None = None) -> None:
        self.run, self.stage = run, stage


class RetryRequest(Message):
    """Start the runs that ended FATAL or FAILED again from their failed stage (``start`` on a live daemon)."""

    __slots__ = ()
    verb = "retry"


Request = StatusRequest | StopRequest | ResetRequest | RetryRequest


# -------------------------------------------------------------------------------------------------- answers
class StatusAnswer(Message):
    """The rendered report (text or JSON) and the exit code `status` returns."""

    __slots__ = ("body", "code")
    verb = "status-answer"
    fields = (("code", "int"), ("body", "body"))

    def __init__(self, code: int, body: str) -> None:
        self.code, self.body = code, body


class Done(Message):
    """The request was applied (or accepted: a stop takes its time); ``text`` says what to tell the user."""

    __slots__ = ("text",)
    verb = "done"
    fields = (("text", "body"),)

    def __init__(self, text: str) -> None:
        self.text = text


class Refused(Message):
    """The request was not applied: one line why, and the exit code for the client (2: a usage error)."""

    __slots__ = ("code", "text")
    verb = "refused"
    fields = (("code", "int"), ("text", "body"))

    def __init__(self, text: str, code: int = 1) -> None:
        self.text, self.code = text, code


Answer = StatusAnswer | Done | Refused


# ------------------------------------------------------------------------- the start pipe (daemon/launcher.py)
class Ready(Message):
    __slots__ = ("epoch", "log", "pid")
    verb = "ready"
    fields = (("pid", "int"), ("epoch", "int"), ("log", "str"))

    def __init__(self, pid: int, epoch: int, log: str) -> None:
        self.pid, self.epoch, self.log = pid, epoch, log


class WaitingLease(Message):
    __slots__ = ("holder", "takeover", "wait_s")
    verb = "waiting-lease"
    fields = (("holder", "str"), ("wait_s", "float"), ("takeover", "bool"))

    def __init__(self, holder: str, wait_s: float, takeover: bool) -> None:
        self.holder, self.wait_s, self.takeover = holder, wait_s, takeover


class StartFailed(Message):
    __slots__ = ("error", "exit_code")
    verb = "failed"
    fields = (("exit_code", "int"), ("error", "body"))

    def __init__(self, error: str, exit_code: int = 1) -> None:
        self.error, self.exit_code = error, exit_code


class AlreadyRunning(Message):
    __slots__ = ("pid",)
    verb = "already-running"
    fields = (("pid", "int?"),)

    def __init__(self, pid: int | None) -> None:
        self.pid = pid


StartReport = Ready | WaitingLease | StartFailed | AlreadyRunning
FINAL_REPORTS = (Ready, StartFailed, AlreadyRunning)

REQUESTS: tuple[type[Message], ...] = (StatusRequest, StopRequest, ResetRequest, RetryRequest)
ANSWERS: tuple[type[Message], ...] = (StatusAnswer, Done, Refused)
START_REPORTS: tuple[type[Message], ...] = (Ready, WaitingLease, StartFailed, AlreadyRunning)


def decode(data: bytes, kinds: tuple[type[Message], ...]) -> tuple[Message, bytes]:
    """The first message in ``data`` (one of ``kinds``) and what follows it; ProtocolError if ``data`` does not
    start with a whole one."""
    end = data.find(b"\n")
    if end < 0 or end > MAX_LINE:
        raise ProtocolError("no complete line")
    try:
        verb, *pairs = data[:end].decode("utf-8").split(" ")
    except UnicodeDecodeError as err:
        raise ProtocolError("not UTF-8") from err
    cls = next((k for k in kinds if k.verb == verb), None)
    if cls is None:
        raise ProtocolError(f"unknown message {verb[:40]!r}")
    given = dict(pair.partition("=")[::2] for pair in pairs if pair)
    rest = data[end + 1 :]
    values: dict[str, object] = {}
    for name, kind in cls.fields:
        if kind == "body":
            length = int(_number(int, given.get("length"), "length"))
            if len(rest) < length:
                raise ProtocolError("body cut short")
            values[name], rest = rest[:length].decode("utf-8", "replace"), rest[length:]
        elif name not in given:
            if not kind.endswith("?"):
                raise ProtocolError(f"{verb} without {name}")
            values[name] = None
        else:
            text = _unescape(given[name])
            values[name] = (
                text == "1" if kind == "bool" else
                _number(int, text, name) if kind in ("int", "int?") else
                _number(float, text, name) if kind == "float" else text
            )  # fmt: skip
    message = cls.__new__(cls)
    for name, value in values.items():
        object.__setattr__(message, name, value)
    return message, rest


def _number(kind: type[int] | type[float], text: str | None, name: str) -> int | float:
    try:
        return kind(text or "")
    except ValueError as err:
        raise ProtocolError(f"{name} is not a number: {str(text)[:40]!r}") from err


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text)


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "%" and _hex(text[i + 1 : i + 3]):
            out.append(chr(int(text[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


def socket_path(work: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(work), SOCKET_NAME)
