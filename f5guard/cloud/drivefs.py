"""DriveFS's per-file upload state, read through the hidden extended attributes it answers by name.

Google Drive for desktop (DriveFS, which Colab mounts at /content/drive) answers ``user.drive.uncommitted``
("1" while the file has data not uploaded yet, "0" after) and ``user.drive.id`` (``local-…`` until the item
exists in the cloud). ``listxattr`` does not list them: they are read by name. Sources: ChromiumOS's DriveFS
test helpers (tast-tests ``local/drivefs/drivefs.go``: IsUncommitted, ItemID) and public scripts that read
``user.drive.id`` on Colab; NOT verified on a Colab VM from here (docs/reliability.md): a mount or a file that
does not answer (ENODATA, ENOTSUP) gives no evidence, and the caller falls back to an estimate.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

UNCOMMITTED = "user.drive.uncommitted"
ITEM_ID = "user.drive.id"
LOCAL_ID_PREFIX = "local-"  # an item DriveFS has not created in the cloud yet
# "this file system or this file has no such attribute": no evidence, never an error
_NO_ANSWER = frozenset({errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EPERM, errno.EACCES})


@dataclass(frozen=True)
class DriveAnswer:
    """What DriveFS said about one path; a field is None when that attribute did not answer."""

    uncommitted: bool | None
    item_id: str | None

    @property
    def uploading(self) -> bool:
        return self.uncommitted is True or (self.item_id or "").startswith(LOCAL_ID_PREFIX)

    @property
    def in_cloud(self) -> bool:
        """Committed, and an item of the cloud: a file first appears there empty, so the id alone proves nothing."""
        return self.uncommitted is False and not (self.item_id or "").startswith(LOCAL_ID_PREFIX)


def attribute(path: str | os.PathLike[str], name: str) -> str | None:
    """The attribute's value, or None when the file system or the file does not answer it. Raises
    FileNotFoundError (and other OSErrors that are not "no such attribute")."""
    getxattr = getattr(os, "getxattr", None)  # Linux only
    if getxattr is None:
        return None
    try:
        raw: bytes = getxattr(path, name)
    except OSError as err:
        if err.errno in _NO_ANSWER:
            return None
        raise
    return raw.decode("utf-8", "replace").strip().rstrip("\x00")


def ask(path: str | os.PathLike[str]) -> DriveAnswer | None:
    """DriveFS's answer for ``path``; None when neither attribute answers."""
    raw = attribute(path, UNCOMMITTED)
    item = attribute(path, ITEM_ID)
    if raw is None and item is None:
        return None
    uncommitted = None if raw is None else raw not in ("0", "false", "")
    return DriveAnswer(uncommitted, item or None)


def answers(path: Path) -> bool:
    """Whether DriveFS's attributes answer on ``path`` (a folder: the mount's kind, without writing anything)."""
    try:
        return ask(path) is not None
    except OSError:
        return False
