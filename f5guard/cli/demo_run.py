"""``f5guard demo``: a real, supervised, tiny F5-TTS training on this CPU, offline, with a crash on purpose.

home and work live under one demo folder (home plays Google Drive, work plays /content). The demo starts the
real daemon, kills the trainer with SIGKILL once a checkpoint is safe on home, shows the automatic resume,
and ends with the status view. It only talks to the daemon through files and signals, like the CLI.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from f5guard.config import load_config
from f5guard.control.protocol import Ready
from f5guard.daemon.launcher import spawn_daemon
from f5guard.errors import DaemonError
from f5guard.layout import WorkLayout
from f5guard.pidfile import running_daemon
from f5guard.status.report import StageReport, StatusReport, TrainingReport, build_report
from f5guard.training.kind import TrainOptions

DEMO_CONFIG = """\
# Written by `f5guard demo`. home plays the Google Drive folder, work the VM's /content.
home = "{root}/home"
work = "{root}/work"

[[runs]]
name = "demo voice"

[[runs.stages]]
name = "dataset"
# {clips} short clips spoken by espeak-ng (synthetic tones without it), prepared by F5-TTS's own prepare_csv_wavs
command = ["{{python}}", "-m", "f5guard.trainer.tinydata", "{{home}}/runs/{{run}}/dataset", "--n", "{clips}"]
outputs = ["{{home}}/runs/{{run}}/dataset/data/raw.arrow", "{{home}}/runs/{{run}}/dataset/data/duration.json",
           "{{home}}/runs/{{run}}/dataset/data/vocab.txt"]

[[runs.stages]]
name = "train"
type = "train"
dataset = "{{home}}/runs/{{run}}/dataset/data"
model = "tiny"
learning_rate = 1e-4
batch_size_per_gpu = 4
batch_size_type = "sample"
max_samples = 4
epochs = {epochs}
num_warmup_updates = 10
save_per_updates = 20
last_per_updates = 10
keep_last_n_checkpoints = 2
num_workers = 1
threads = 2
throttle_s = {throttle}        # slows the tiny model down so there is time to watch (and to crash it)
"""

Say = Callable[[str], None]


class Demo:
    def __init__(self, root: Path, say: Say, *, clips: int = 12, epochs: int = 40, throttle: float = 0.05) -> None:
        self.root = root.resolve()
        self.say = say
        self.clips, self.epochs, self.throttle = clips, epochs, throttle
        self.config_path = self.root / "f5guard.toml"
        self.t0 = time.monotonic()

    def clock(self) -> str:
        return f"[{time.monotonic() - self.t0:5.1f}s]"

    def prepare(self) -> None:
        work = WorkLayout(self.root / "work")
        if running_daemon(work.lock, work.pidfile) is not None:
            raise DaemonError(
                f"a demo supervisor already runs in {self.root}; `f5guard stop --config {self.config_path}` first"
            )
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "home").mkdir(parents=True)
        self.config_path.write_text(
            DEMO_CONFIG.format(root=self.root, clips=self.clips, epochs=self.epochs, throttle=self.throttle),
            encoding="utf-8",
        )
        self.config = load_config(self.config_path)
        self.say(f"{self.clock()} demo folder {self.root}: home/ plays Google Drive, work/ plays /content")

    def report(self) -> StatusReport:
        return build_report(self.config)

    def train(self, report: StatusReport) -> tuple[StageReport, TrainingReport]:
        run = report["runs"][0]
        assert run["training"] is not None, "the demo's run has a train stage"
        return run["stages"][1], run["training"]

    def start(self) -> None:
        result = spawn_daemon(self.config_path, WorkLayout(self.config.work).daemon_stdio, takeover=False)
        if not isinstance(result.last, Ready):
            raise DaemonError(f"the demo supervisor did not start: {result.last or 'no word from it'}")
        self.say(f"{self.clock()} started the supervisor (pid {result.pid}); it runs detached, like on Colab")

    def wait(self, what: str, predicate: Callable[[StatusReport], bool], timeout: float) -> StatusReport:
        deadline = time.monotonic() + timeout
        last_line = ""
        while time.monotonic() < deadline:
            report = self.report()
            run = report["runs"][0]
            if run["state"] in ("failed", "fatal"):
                raise DaemonError(
                    f"the demo run {run['state']}: {run['reason']} (see `f5guard tail --config {self.config_path}`)"
                )
            if predicate(report):
                return report
            line = self._progress_line(report)
            if line != last_line:
                self.say(f"{self.clock()}   {line}")
                last_line = line
            time.sleep(0.25)
        raise DaemonError(f"the demo timed out waiting for {what}")

    def _progress_line(self, report: StatusReport) -> str:
        dataset = report["runs"][0]["stages"][0]
        stage, t = self.train(report)
        if dataset["state"] != "done":
            return f"dataset: {dataset['state']}"
        parts = [f"train: {stage['state']}"]
        if t.get("update") is not None:
            parts.append(f"update {t['update']}/{t.get('total_updates') or '?'}")
        if t.get("loss") is not None:
            parts.append(f"loss {t['loss']:.3f}")
        parts.append(
            f"safe on home: update {t['durable_update']}"
            if t.get("durable_update") is not None
            else "nothing on home yet"
        )
        return " · ".join(parts)

    def crash_and_resume(self) -> StatusReport:
        def ready_to_kill(report: StatusReport) -> bool:
            stage, t = self.train(report)
            total = t.get("total_updates") or 10**9
            return (
                stage["state"] == "running"
                and (t.get("durable_update") or 0) >= 20
                and (t.get("update") or 0) >= 0.35 * total
            )

        report = self.wait("a checkpoint on home", ready_to_kill, timeout=150)
        state = self._state()
        pid = state["runs"]["demo voice"]["stages"]["train"]["pid"]
        _, t = self.train(report)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self.say(
            f"{self.clock()} CRASH: kill -9 of the trainer (pid {pid}) at update {t.get('update')}; "
            f"home holds update {t.get('durable_update')}"
        )
        new_pid = None
        while time.monotonic() - killed_at < 30:
            candidate = self._state()["runs"]["demo voice"]["stages"]["train"].get("pid")
            if candidate and candidate != pid:
                new_pid = candidate
                break
            time.sleep(0.01)
        if new_pid is None:
            raise DaemonError("the trainer was not restarted within 30 s")
        back = time.monotonic() - killed_at
        report = self.wait(
            "the resumed trainer",
            lambda r: self.train(r)[0]["restarts"] >= 1 and self._resumed_update() is not None,
            timeout=60,
        )
        self.say(
            f"{self.clock()} RECOVERED: new trainer (pid {new_pid}) {back:.2f}s after the kill, resumed at "
            f"update {self._resumed_update()} from its newest valid checkpoint"
        )
        return report

    def _state(self) -> dict[str, Any]:
        import json

        state: dict[str, Any] = json.loads(WorkLayout(self.config.work).state.read_text(encoding="utf-8"))
        return state

    def _resumed_update(self) -> int | None:
        from f5guard.trainevents import Start, read_events

        options = self.config.runs[0].stages[1].options
        assert isinstance(options, TrainOptions)
        events, _ = read_events(options.progress_path)
        starts = [e for e in events if isinstance(e, Start)]
        return starts[-1].start_update if len(starts) >= 2 else None

    def finish(self) -> StatusReport:
        report = self.wait("the end of training", lambda r: r["runs"][0]["state"] == "done", timeout=240)
        _, t = self.train(report)
        self.say(
            f"{self.clock()} training finished at update {t.get('update')}; home holds update "
            f"{t.get('durable_update')} (verified)"
        )
        return report

    def stop(self) -> None:
        info = running_daemon(WorkLayout(self.config.work).lock, WorkLayout(self.config.work).pidfile)
        if info is None:
            return
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while running_daemon(WorkLayout(self.config.work).lock, WorkLayout(self.config.work).pidfile):
            if time.monotonic() > deadline:
                raise DaemonError(f"the demo supervisor (pid {info.pid}) did not stop within 60 s")
            time.sleep(0.1)
