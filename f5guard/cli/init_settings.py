"""``f5guard init --set STAGE.KEY=VALUE``: change a key of the config init writes, in the written text.

A notebook cell (or a script) can then set up a run in one command, e.g. a smaller ``train.batch_size_per_gpu``
for a smaller GPU or ``transcribe.model`` pointing at a Whisper copy on Drive, without a TOML editor. The text
is edited line by line, so every comment init writes stays; the result is validated like any config (init
loads what it writes), so an unknown key or a bad value is one line naming it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from f5guard.errors import UsageError
from f5guard.schema import escaped

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TABLES = ("lease", "restart", "logs", "store")  # the top-level tables; any other section names a stage
_STAGE_HEADER = "[[runs.stages]]"
_NAME_LINE = re.compile(r'^name\s*=\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Setting:
    section: str  # a stage name (in every run) or one of TABLES
    key: str
    value: str  # TOML value text

    @property
    def line(self) -> str:
        return f"{self.key} = {self.value}  # set by f5guard init --set"


def parse_setting(text: str) -> Setting:
    """``SECTION.KEY=VALUE``: VALUE is a TOML value (``2400``, ``true``, ``1e-5``, ``"a b"``, ``[1, 2]``) or,
    when it is none, a plain string (``/content/drive/MyDrive/large-v3.pt``)."""
    target, sep, raw = text.partition("=")
    section, dot, key = target.strip().partition(".")
    if not sep or not dot or not section or not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        raise UsageError(f"--set {escaped(text)}: expected STAGE.KEY=VALUE (e.g. train.batch_size_per_gpu=2400)")
    raw = raw.strip()
    if "\n" in raw or "\r" in raw:
        raise UsageError(f"--set {escaped(text)}: the value must be one line")
    try:
        tomllib.loads(f"v = {raw}")
        value = raw
    except tomllib.TOMLDecodeError:
        value = '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return Setting(section, key, value)


def apply_settings(text: str, settings: list[Setting]) -> str:
    """``text`` with each setting applied: the key's line replaced where the section has it, else added."""
    lines = text.splitlines()
    for setting in settings:
        edit = _set_in_table if setting.section in TABLES else _set_in_stages
        lines = edit(lines, setting)
    return "\n".join(lines) + "\n"


def _key_index(lines: list[str], start: int, end: int, key: str) -> int | None:
    pattern = re.compile(rf"^{re.escape(key)}\s*=")
    return next((i for i in range(start, end) if pattern.match(lines[i])), None)


def _block_end(lines: list[str], start: int) -> int:
    """The index of the next table header after ``start`` (or the end)."""
    return next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))


def _set_in_table(lines: list[str], setting: Setting) -> list[str]:
    header = f"[{setting.section}]"
    start = next((i for i, line in enumerate(lines) if line.split("#", 1)[0].strip() == header), None)
    if start is None:  # a new table before the first run (tables after [[runs]] would read as the same thing)
        first_run = next((i for i, line in enumerate(lines) if line.startswith("[[runs]]")), len(lines))
        return [*lines[:first_run], header, setting.line, "", *lines[first_run:]]
    end = _block_end(lines, start)
    found = _key_index(lines, start + 1, end, setting.key)
    if found is not None:
        return [*lines[:found], setting.line, *lines[found + 1 :]]
    return [*lines[: start + 1], setting.line, *lines[start + 1 :]]


def _set_in_stages(lines: list[str], setting: Setting) -> list[str]:
    out = list(lines)
    names: list[str] = []
    matched = 0
    i = 0
    while i < len(out):
        if out[i].strip() != _STAGE_HEADER:
            i += 1
            continue
        end = _block_end(out, i)
        name_at = next((j for j in range(i + 1, end) if _NAME_LINE.match(out[j])), None)
        match = _NAME_LINE.match(out[name_at]) if name_at is not None else None
        name = match.group(1) if match else None
        if name is not None:
            names.append(name)
        if name == setting.section and name_at is not None:
            matched += 1
            found = _key_index(out, i + 1, end, setting.key)
            if found is not None:
                out[found] = setting.line
            else:
                type_at = _key_index(out, i + 1, end, "type")
                out.insert((type_at if type_at is not None else name_at) + 1, setting.line)
                end += 1
        i = end
    if not matched:
        known = ", ".join(dict.fromkeys(names)) or "none"
        raise UsageError(
            f"--set {setting.section}.{setting.key}: no stage or table named {setting.section!r} in the config "
            f"init writes (stages: {known}; tables: {', '.join(TABLES)})"
        )
    return out
