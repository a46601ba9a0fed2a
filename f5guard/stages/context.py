"""What every stage runner needs from the daemon, bundled so signatures stay short."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from f5guard.layout import HomeLayout, WorkLayout
from f5guard.redact import Redactor
from f5guard.schema import LeaseSettings, LogSettings, StoreSettings


@dataclass
class RunContext:
    work: WorkLayout
    home: HomeLayout
    logs: LogSettings
    redactor: Redactor
    boot_id: str
    wake: threading.Event  # set by an attempt's waiter thread: the control loop reacts at once
    log: Any  # a bound structlog logger
    base_env: dict[str, str] = field(default_factory=dict)
    epoch: int = 0
    fence: Callable[[], None] = lambda: None  # raises LeaseLost when another supervisor took over home
    gate: Callable[[], str | None] = lambda: None  # why training must not start yet (lease/hold.py), or None
    may_delete: Callable[[], bool] = lambda: True  # False for a while after this runtime was frozen
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    store: StoreSettings = field(default_factory=StoreSettings)  # what home is ([store]: f5guard/cloud/)
    runtime_tag: str = ""  # names this runtime's files on home (lease/claims.py: RuntimeId.tag)
    accept_older: bool = False  # `start --accept-older`: resume below a durable update state names
