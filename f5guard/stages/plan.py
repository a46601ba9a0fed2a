"""Decide, per stage, "up to date" or "would run: <why>" — the logic behind skipping and ``--dry-run``.

A pattern that cannot be expanded within bounds (stages/walk.py) is a ConfigError naming the stage: exit 2
in ``--dry-run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from f5guard.errors import ConfigError
from f5guard.schema import RunConfig, Scope, StageConfig
from f5guard.stages.fingerprint import Fingerprint, check_outputs, explain_changes, fingerprint
from f5guard.stages.walk import refused
from f5guard.state import StageRecord, StageStatus

UP_TO_DATE = "up to date"


@dataclass(frozen=True)
class Decision:
    stage: StageConfig
    run: bool
    why: str
    fingerprint: Fingerprint


def decide(stage: StageConfig, record: StageRecord | None, boot: str, upstream: str | None = None) -> Decision:
    """Whether ``stage`` must run; ``upstream`` names an earlier home stage that (re)runs in this pass."""
    for key, patterns in (("inputs", stage.inputs), ("outputs", stage.outputs)):
        why = next(filter(None, map(refused, patterns)), None)  # before any walk: outputs too, run or not
        if why is not None:
            raise ConfigError(f"stage {stage.name!r} {key}: {why}")
    previous = record.fingerprint_parts if record else {}
    try:
        fp = fingerprint(stage, previous)
    except ConfigError as err:
        raise ConfigError(f"stage {stage.name!r} inputs: {err.message}") from None

    def must(why: str) -> Decision:
        return Decision(stage, True, why, fp)

    if record is None or record.fingerprint is None:
        if record is not None and record.state in (StageStatus.FAILED, StageStatus.FATAL):
            return must(f"last attempt {record.state.value}")
        if record is not None and record.state is StageStatus.INTERRUPTED:
            return must("was interrupted")
        return must("never completed")
    if stage.scope is Scope.RUNTIME and record.boot_id != boot:
        return must("new machine (runtime stage)")
    if upstream is not None:
        return must(f"earlier stage {upstream!r} reruns")
    if fp.digest != record.fingerprint:
        changes = explain_changes(previous, fp.parts) or ["fingerprint changed"]
        return must("; ".join(changes[:3]) + (f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""))
    problems = check_outputs(stage.outputs, record.outputs)
    if problems:
        return must("; ".join(problems[:3]))
    return Decision(stage, False, UP_TO_DATE, fp)


def plan_run(run: RunConfig, records: Mapping[str, StageRecord], boot: str) -> list[Decision]:
    """Decisions for every stage as if the pass ran now; a home stage that reruns invalidates later ones."""
    decisions: list[Decision] = []
    upstream: str | None = None
    for stage in run.stages:
        decision = decide(stage, records.get(stage.name), boot, upstream)
        decisions.append(decision)
        if decision.run and stage.scope is Scope.HOME and upstream is None:
            upstream = stage.name
    return decisions
