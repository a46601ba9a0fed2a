"""Facts about this machine that decide what is still valid: boot id (runtime stages), host name."""

from __future__ import annotations

import os
from pathlib import Path

BOOT_ID_ENV = "F5GUARD_BOOT_ID"  # tests simulate "a fresh VM" with it; Colab gives every VM a new boot id


def boot_id() -> str:
    override = os.environ.get(BOOT_ID_ENV)
    if override:
        return override
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def hostname() -> str:
    return os.uname().nodename  # what socket.gethostname() returns, without importing socket


def pid_namespace() -> str:
    """The pid namespace we run in: pids are only comparable inside one (Colab runs notebooks in a container)."""
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return "unknown"


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None  # a zombie is dead: its exit only waits to be collected
    return int(fields[19])


NVIDIA_GPUS_DIR = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the loaded NVIDIA driver sees


def cuda_gpu_visible(gpus_dir: Path = NVIDIA_GPUS_DIR) -> bool:
    """Whether a CUDA GPU is there for a trainer started from here, known without importing torch (the daemon
    and the CLI never do): CUDA_VISIBLE_DEVICES="" or "-1" hides every GPU; otherwise the NVIDIA driver's
    /proc folder lists them, and where /proc does not show it (some containers) ``nvidia-smi -L`` does."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    try:
        if any(gpus_dir.iterdir()):
            return True
    except OSError:
        pass
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout
