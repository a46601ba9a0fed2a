"""Notice an edited config under a running daemon and say what a restart would change (it never reloads
itself: a half-edited file must not stop a training). Status shows the note; ``stop`` still finds the daemon."""

from __future__ import annotations

import os

from f5guard.config import load_config
from f5guard.errors import ConfigError
from f5guard.schema import Config


def _stamp(config: Config) -> tuple[int, int, int] | None:
    try:
        st = os.stat(config.path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def describe_changes(old: Config, new: Config) -> list[str]:
    """What differs between the running config and the file now, in a few words each."""
    changes = [f"{key} {getattr(old, key)} -> {getattr(new, key)}" for key in ("home", "work")
               if getattr(old, key) != getattr(new, key)]  # fmt: skip
    changes += [f"[{key}] settings" for key in ("lease", "logs") if getattr(old, key) != getattr(new, key)]
    if old.python.path != new.python.path:
        changes.append(f"python {old.python.path} -> {new.python.path}")
    old_runs, new_runs = {r.name: r for r in old.runs}, {r.name: r for r in new.runs}
    changes += [f"run {name!r} added" for name in new_runs if name not in old_runs]
    changes += [f"run {name!r} removed" for name in old_runs if name not in new_runs]
    for name, run in new_runs.items():
        before = old_runs.get(name)
        if before is None:
            continue
        old_stages = {s.name: s for s in before.stages}
        for stage in run.stages:
            if stage.name not in old_stages:
                changes.append(f"stage {name}/{stage.name} added")
            elif old_stages[stage.name] != stage:
                changes.append(f"stage {name}/{stage.name} changed")
        changes += [f"stage {name}/{s} removed" for s in old_stages if run.stage(s) is None]
    return changes


class ConfigWatch:
    """Polled by the control loop; ``note`` is what status shows (None: the file is what the daemon runs)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stamp = _stamp(config)
        self.note: str | None = None

    def poll(self) -> bool:
        """Look at the file again; True when the note changed."""
        stamp = _stamp(self.config)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        keep = "this daemon keeps running with the config it started with"
        try:
            changes = describe_changes(self.config, load_config(self.config.path))
        except ConfigError as err:
            note: str | None = f"the config is invalid now ({err.message}); {keep}"
        except Exception as err:  # noqa: BLE001 - a file nobody foresaw must not end a training: say it, go on
            note = f"the config cannot be read now ({type(err).__name__}: {' '.join(str(err).split())[:200]}); {keep}"
        else:
            shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
            apply = "`f5guard stop` then `f5guard start` applies it"
            note = f"the config changed since this daemon started ({shown}); {apply}" if changes else None
        changed, self.note = note != self.note, note
        return changed
