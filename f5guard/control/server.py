"""The daemon's side of the protocol: a thread accepts connections on the work dir's socket and reads each
request; the control loop answers them on its own thread (it owns the state), so a request never races a stage.

The socket file is the daemon's for as long as it holds the work dir's flock: a file left by a dead daemon is
replaced at start and removed at exit. Mode 0600: only this user's clients may stop or reset the daemon.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from f5guard.control.client import MAX_PATH
from f5guard.control.protocol import (
    MAX_LINE,
    REQUESTS,
    Answer,
    ProtocolError,
    Refused,
    Request,
    decode,
    socket_path,
)

READ_TIMEOUT_S = 2.0  # a client that connects and says nothing is dropped after this


class Pending:
    """One request waiting for the control loop's answer."""

    def __init__(self, request: Request, conn: socket.socket) -> None:
        self.request = request
        self._conn = conn

    def answer(self, answer: Answer) -> None:
        """Send the answer and close; a client that gave up meanwhile costs nothing."""
        with contextlib.suppress(OSError):
            self._conn.sendall(answer.encode())
        with contextlib.suppress(OSError):
            self._conn.close()


class ControlServer:
    """Listens on ``<work>/daemon.sock``; ``pending()`` hands the requests read so far to the control loop."""

    def __init__(self, work: Path, wake: Callable[[], None]) -> None:
        self.path = Path(socket_path(work))
        self._wake = wake
        self._queue: queue.Queue[Pending] = queue.Queue()
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Bind and listen (OSError when the work dir cannot hold a socket: the caller says so)."""
        self.path.unlink(missing_ok=True)  # a dead daemon's (we hold the flock: no live one listens there)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _bind(sock, self.path)
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), name="f5guard-control", daemon=True).start()

    def pending(self) -> list[Pending]:
        found: list[Pending] = []
        with contextlib.suppress(queue.Empty):
            while True:
                found.append(self._queue.get_nowait())
        return found

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
            self._sock.close()
            self._sock = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._read, args=(conn,), name="f5guard-request", daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT_S)
        data = b""
        try:
            while b"\n" not in data and len(data) <= MAX_LINE:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            request, _ = decode(data, REQUESTS)
        except (OSError, ProtocolError) as err:
            with contextlib.suppress(OSError):
                conn.sendall(Refused(f"not a request this daemon understands: {err}", code=2).encode())
            conn.close()
            return
        self._queue.put(Pending(request, conn))  # type: ignore[arg-type] # decode(.., REQUESTS) made a Request
        self._wake()


def _bind(sock: socket.socket, path: Path) -> None:
    """Bind ``sock`` at ``path``, through the folder's descriptor when the path is too long for an address."""
    if len(str(path).encode()) <= MAX_PATH:
        sock.bind(str(path))
    else:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            sock.bind(f"/proc/self/fd/{folder}/{path.name}")
        finally:
            os.close(folder)
    os.chmod(path, 0o600)
