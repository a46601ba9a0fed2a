"""systemd/f5guard.service passes `systemd-analyze verify` with no finding about the unit on the systemd here
(Debian 12 has 252, Ubuntu 22.04 249, 24.04 255), and the optional drop-in holds exactly the keys that need 254."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "f5guard.service"
DROP_IN = SYSTEMD / "f5guard.service.d" / "restart-steps.conf"
NEWER_KEYS = ("RestartSteps", "RestartMaxDelaySec")  # systemd 254

ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def systemd_version() -> int:
    first = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"systemd (\d+)", first)
    assert match, first
    return int(match.group(1))


def verify(tmp_path: Path, *, drop_in: bool) -> tuple[Path, list[str]]:
    """Verify a copy of the unit as a user unit; ExecStart points at this Python, since verify checks that the
    binary exists and the unit's %h/f5guard/.venv/bin/f5guard is the user's. Returns the lines it printed."""
    units = tmp_path / "units"
    units.mkdir()
    text = UNIT.read_text()
    execs = re.findall(r"^ExecStart=.*$", text, flags=re.MULTILINE)
    assert execs == ["ExecStart=%h/f5guard/.venv/bin/f5guard run --foreground"], execs
    (units / UNIT.name).write_text(text.replace(execs[0], f"ExecStart={sys.executable} -m f5guard run --foreground"))
    if drop_in:
        (units / "f5guard.service.d").mkdir()
        shutil.copy(DROP_IN, units / "f5guard.service.d" / DROP_IN.name)
    runtime = tmp_path / "runtime"  # --user needs a runtime dir of its own
    runtime.mkdir(mode=0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime),
           "SYSTEMD_LOG_TARGET": "console", "SYSTEMD_LOG_COLOR": "0"}  # fmt: skip
    proc = subprocess.run([ANALYZE, "--user", "verify", str(units / UNIT.name)], capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 0, lines
    return units, lines


def test_the_unit_verifies_without_warnings(tmp_path: Path) -> None:
    units, lines = verify(tmp_path, drop_in=False)
    about_unit = [line for line in lines if str(units) in line or "f5guard" in line]
    assert about_unit == [], about_unit
    for key in NEWER_KEYS:
        assert not re.search(rf"^{key}=", UNIT.read_text(), flags=re.MULTILINE), f"{key} needs systemd 254"


def test_the_drop_in_is_clean_where_systemd_knows_its_keys(tmp_path: Path) -> None:
    units, lines = verify(tmp_path, drop_in=True)
    about_unit = [line for line in lines if str(units) in line or "f5guard" in line]
    if systemd_version() >= 254:
        assert about_unit == [], about_unit
    else:  # what the operators' docs say older systemd does with the drop-in: a warning per key, nothing else
        assert len(about_unit) == len(NEWER_KEYS), about_unit
        for line, key in zip(about_unit, NEWER_KEYS, strict=True):
            assert "restart-steps.conf" in line and f"Unknown key '{key}'" in line, line
