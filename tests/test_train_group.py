"""num_processes without training: the key in a config and a spec, the rank count it resolves to, and the
environment the ranks get. (The GPU count is given where the machine has none: the one thing mocked.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from f5guard.config import load_config
from f5guard.errors import ConfigError
from f5guard.pdeathsig import PARENT_ENV
from f5guard.trainer import group
from f5guard.trainer.spec import SpecError, TrainSpec
from f5guard.trainevents import Start, decode
from f5guard.training.kind import TrainOptions


def config(tmp_path: Path, value: str) -> Path:
    (tmp_path / "home").mkdir(exist_ok=True)
    path = tmp_path / "f5guard.toml"
    path.write_text(f"""home = "{tmp_path}/home"
work = "{tmp_path}/work"
[[runs]]
name = "r"
[[runs.stages]]
name = "train"
type = "train"
dataset = "{tmp_path}/data"
num_processes = {value}
""")
    return path


@pytest.mark.parametrize(("value", "expected"), [('"auto"', "auto"), ("2", 2), ("1", 1)])
def test_config_key_reaches_the_spec(tmp_path: Path, value: str, expected: object) -> None:
    options = load_config(config(tmp_path, value)).runs[0].stages[0].options
    assert isinstance(options, TrainOptions) and options.spec is not None
    assert options.spec.num_processes == expected
    assert options.spec.to_dict()["num_processes"] == expected


@pytest.mark.parametrize(
    ("value", "shown"), [('"many"', "'many'"), ("0", "0"), ("2.5", "2.5"), ("true", "True"), ("100000", "100000")]
)
def test_bad_config_value_is_one_line_naming_the_key(tmp_path: Path, value: str, shown: str) -> None:
    path = config(tmp_path, value)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message == (
        f'{path}: runs[0].stages[0].num_processes: must be "auto" or an integer from 1 to 1024, got {shown}'
    )


def test_spec_file_round_trip_and_refusal(tmp_path: Path) -> None:
    fields = {"dataset_dir": "d", "checkpoint_dir": "c", "progress_path": "p.jsonl", "num_processes": "auto"}
    assert TrainSpec.from_dict(fields).num_processes == "auto"
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**fields, "num_processes": "all"}))
    with pytest.raises(SpecError, match=r'num_processes must be "auto" or an integer from 1 to 1024, got \'all\''):
        TrainSpec.from_json(path)


def test_resolve_counts_gpus() -> None:
    assert group.resolve("auto", gpus=0) == group.Placement(processes=1, gpus=0), "auto without a GPU: one process"
    assert group.resolve("auto", gpus=4) == group.Placement(processes=4, gpus=4)
    assert group.resolve(2, gpus=0) == group.Placement(processes=2, gpus=0), "CPU ranks over gloo"
    assert group.resolve(2, gpus=8).processes == 2
    assert group.resolve(1).processes == 1, "1 needs no torch"


def test_resolve_refuses_more_ranks_than_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(SpecError) as caught:
        group.resolve(4, gpus=2)
    assert caught.value.message == (
        'num_processes = 4 but only 2 GPU(s) are visible (CUDA_VISIBLE_DEVICES=0,1): lower it or use "auto"'
    )


@pytest.mark.train
def test_resolve_auto_here_asks_torch() -> None:
    import torch

    expected = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert group.resolve("auto") == group.Placement(processes=max(1, expected), gpus=expected)


def test_rank_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = Start(start_update=0, actions=("a",))
    cpu = group.rank_env(1, group.Placement(processes=2, gpus=0), 29555, plan, threads=None)
    assert (cpu["RANK"], cpu["LOCAL_RANK"], cpu["WORLD_SIZE"], cpu["MASTER_PORT"]) == ("1", "1", "2", "29555")
    assert cpu["MASTER_ADDR"] == "127.0.0.1" and cpu["ACCELERATE_USE_CPU"] == "true"
    assert cpu[PARENT_ENV] == str(os.getpid()), "each rank dies with its launcher"
    assert decode(json.loads(cpu[group.GROUP_ENV])) == plan and int(cpu["OMP_NUM_THREADS"]) >= 1
    gpu = group.rank_env(0, group.Placement(processes=2, gpus=2), 29555, plan, threads=4)
    assert "ACCELERATE_USE_CPU" not in gpu and "OMP_NUM_THREADS" not in gpu


def test_member_reads_the_launchers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(group.GROUP_ENV, raising=False)
    assert group.member() is None
    plan = Start(start_update=0, actions=("placed pretrained",))
    for key, value in group.rank_env(1, group.Placement(2, 0), 1, plan, None).items():
        monkeypatch.setenv(key, value)
    assert group.member() == group.Member(rank=1, world=2, plan=plan), "the launcher's start event, typed"
