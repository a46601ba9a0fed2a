"""Expand a stage's path patterns within a bound: globs matched and folders walked, never the whole filesystem.

Fingerprints expand ``inputs`` and ``outputs`` on the daemon's control loop and in ``--dry-run``, so a pattern
like ``/**/**/*`` would stall both for as long as the disk takes to list (over 10 minutes on a Colab VM). Two
rules keep every expansion short, each a one-line ConfigError (exit 2):

- a pattern that recurses from ``/`` (a ``**`` with nothing before it, or ``/`` itself) is refused outright;
- any expansion stops after ``MAX_ENTRIES`` directory entries and fails, naming the pattern.

Matching is ``glob.glob(pattern, recursive=True)``'s, rule for rule (hidden names, ``**``, trailing ``/``), with
each directory listing counted; glob's own walk cannot be bounded.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePosixPath

from f5guard.errors import ConfigError
from f5guard.regularfiles import shown
from f5guard.stages.overlap import is_glob

MAX_ENTRIES = 100_000  # directory entries one expansion (a stage's inputs, or its outputs) may list


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit
        self.limit = limit
        self.pattern = ""

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ConfigError(
                f"{shown(self.pattern)}: lists more than {self.limit:,} directory entries (stopped there); name a "
                "narrower folder or glob"
            )


def refused(pattern: str) -> str | None:
    """Why ``pattern`` may not name a stage's files (it walks the whole filesystem), or None."""
    parts = PurePosixPath(pattern).parts
    if parts[:1] != ("/",):
        return None
    rest = parts[1:]
    first_glob = next((i for i, part in enumerate(rest) if is_glob(part)), len(rest))
    if not rest or (first_glob == 0 and "**" in rest):
        return f"{pattern}: recurses from / (the whole filesystem); start it at the folder to read"
    return None


def expand(patterns: Iterable[str], limit: int | None = None) -> tuple[dict[str, str | None], list[str]]:
    """Every file the patterns name, shown name -> real path (None: a literal path that is absent), and the
    patterns that matched nothing. Folders are walked (symlinked subfolders are not followed, as ``os.walk``).
    At most ``limit`` (default MAX_ENTRIES) directory entries are listed."""
    budget = _Budget(MAX_ENTRIES if limit is None else limit)
    files: dict[str, str | None] = {}
    unmatched: list[str] = []
    for pattern in patterns:
        why = refused(pattern)
        if why is not None:
            raise ConfigError(why)
        budget.pattern = pattern
        matches = sorted(_glob(pattern, budget)) if is_glob(pattern) else [pattern]
        if not (matches if is_glob(pattern) else os.path.exists(pattern)):
            unmatched.append(pattern)
        for match in matches:
            if os.path.isdir(match):
                for root, dirs, names in os.walk(match):
                    budget.spend(len(dirs) + len(names))
                    dirs.sort()
                    for name in sorted(names):
                        path = os.path.join(root, name)
                        files[shown(path)] = path
            elif os.path.lexists(match):  # a dangling symlink too: the fingerprint says it is skipped, and why
                files[shown(match)] = match
            elif not is_glob(pattern):
                files[shown(match)] = None
    return files, unmatched


def _glob(pathname: str, budget: _Budget) -> Iterator[str]:
    it = _iglob(pathname, budget, dironly=False)
    if pathname[:2] == "**":  # glob.glob skips the empty match of a leading "**"
        first = next(it, None)
        if first:
            yield first
    yield from it


def _iglob(pathname: str, budget: _Budget, dironly: bool) -> Iterator[str]:
    dirname, basename = os.path.split(pathname)
    if not is_glob(pathname):
        if (basename and os.path.lexists(pathname)) or (not basename and os.path.isdir(dirname)):
            yield pathname
        return
    if not dirname:
        yield from (_recursive if basename == "**" else _pattern)("", basename, budget, dironly)
        return
    dirs: Iterable[str] = _iglob(dirname, budget, True) if dirname != pathname and is_glob(dirname) else [dirname]
    in_dir: _InDir = _literal if not is_glob(basename) else _recursive if basename == "**" else _pattern
    for folder in dirs:
        for name in in_dir(folder, basename, budget, dironly):
            yield os.path.join(folder, name)


_InDir = Callable[[str, str, "_Budget", bool], Iterable[str]]  # (folder, part, budget, dironly) -> names


def _hidden(name: str) -> bool:
    return name[:1] == "."


def _listdir(dirname: str, budget: _Budget, dironly: bool) -> list[str]:
    names: list[str] = []
    try:
        with os.scandir(dirname or os.curdir) as it:
            for entry in it:
                budget.spend(1)
                try:
                    if not dironly or entry.is_dir():
                        names.append(entry.name)
                except OSError:
                    pass
    except OSError:
        return names
    return names


def _pattern(dirname: str, pattern: str, budget: _Budget, dironly: bool) -> list[str]:
    names = _listdir(dirname, budget, dironly)
    if not _hidden(pattern):
        names = [n for n in names if not _hidden(n)]
    return fnmatch.filter(names, pattern)


def _literal(dirname: str, basename: str, budget: _Budget, dironly: bool) -> list[str]:
    if basename:
        return [basename] if os.path.lexists(os.path.join(dirname, basename)) else []
    return [basename] if os.path.isdir(dirname) else []


def _recursive(dirname: str, pattern: str, budget: _Budget, dironly: bool) -> Iterator[str]:
    yield ""
    yield from _rlistdir(dirname, budget, dironly)


def _rlistdir(dirname: str, budget: _Budget, dironly: bool) -> Iterator[str]:
    for name in _listdir(dirname, budget, dironly):
        if not _hidden(name):
            yield name
            path = os.path.join(dirname, name) if dirname else name
            for below in _rlistdir(path, budget, dironly):
                yield os.path.join(name, below)
