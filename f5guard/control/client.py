"""The client's side of the protocol: one request, one answer, over the work dir's socket (imports as protocol.py).

Where the socket's path is longer than a Unix socket address may be (108 bytes; deep temp dirs are), the
client reaches it through its folder's descriptor (/proc/self/fd/N/daemon.sock): same file, short name.
"""

from __future__ import annotations

import _socket  # the C module: `socket` imports enum and selectors, milliseconds `status` cannot spare
import os

from f5guard.control.protocol import ANSWERS, Answer, ProtocolError, Request, decode, socket_path

STATUS_TIMEOUT_S = 1.0  # a daemon that does not answer `status` by then is busy: the files answer instead
MAX_PATH = 100  # sun_path holds 108 bytes on Linux; keep a margin


def ask(work: str | os.PathLike[str], request: Request, timeout_s: float = STATUS_TIMEOUT_S) -> Answer | None:
    """The daemon's answer, or None when no daemon serves this work dir or it did not answer in time."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    folder = -1
    try:
        path = socket_path(work)
        if len(path.encode()) > MAX_PATH:
            folder = os.open(os.path.dirname(path), os.O_RDONLY)
            path = f"/proc/self/fd/{folder}/{os.path.basename(path)}"
        sock.connect(path)
        sock.sendall(request.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:  # no such socket, nobody listening (a stale file), a timeout: the daemon does not answer
        return None
    finally:
        sock.close()
        if folder >= 0:
            os.close(folder)
    try:
        answer, _ = decode(b"".join(chunks), ANSWERS)
    except ProtocolError:
        return None
    return answer  # type: ignore[return-value]
