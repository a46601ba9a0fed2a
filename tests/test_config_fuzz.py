"""Hostile configs never crash f5guard: every mutation of the config `f5guard init --audio` writes is accepted or
refused with one ConfigError line naming the file and the key, never another exception, and nothing is written.

Seeded, so a failure names the mutation that reproduces it; F5GUARD_FUZZ_SEED and F5GUARD_FUZZ_N explore more.
Three families: mutations of the parsed tree (parse_config, most of them: the widest reach per second),
mutations of the TOML text (load_config: numbers tomllib itself refuses, bytes that are not UTF-8), and a few
through the real CLI (`start --dry-run`: exit 0, or exit 2 with one line on stderr).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import math
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomllib

from f5guard.config import KINDS, load_config, parse_config
from f5guard.errors import ConfigError
from f5guard.recipe import options
from f5guard.schema import LeaseSettings, LogSettings, RestartPolicy
from f5guard.trainer.spec import TrainSpec

SEED = int(os.environ.get("F5GUARD_FUZZ_SEED", "20261129"))
TREE_MUTATIONS = int(os.environ.get("F5GUARD_FUZZ_N", "600"))
TEXT_MUTATIONS = TREE_MUTATIONS // 3

# Values a hostile or careless user writes: wrong types, non-finite and huge numbers, empty and blank strings,
# NUL bytes, over-long names, format specs in placeholders, paths that do not exist, dates (TOML has them).
HOSTILE: list[Any] = [
    math.nan, math.inf, -math.inf, 10**400, -(10**400), 10**5000, 1e308, -1e308, 2**63, 2**31, -1, -1.5, 0, 0.0, 1,
    0.5, 1e-300, True, False, "", " ", "\t", "\0", "a\0b", "x" * 200_000, "a" * 300, "/" + "a" * 300,
    "/tmp/" + "/".join(["d" * 200] * 25), "{home:d}", "{home!z}", "{home!r}", "{home:>99999999999999999999}",
    "{home:{work}}", "{", "}", "{}", "{0}", "{home.x}", "{home[0]}", "{nope}", "{{home}}", "{home}", "{work}/x",
    "/nonexistent", "/", ".", "..", "~", "~nosuchuser/x", "bad\udcff", "\ud800", "Thuận (3)", "a,b", "=", "A=B",
    "\n", "\x1b[31m", "large-v3", "./model.pt", "org/name", "none", [], [""], ["x"], [1], ["{home:d}"], ["\0"], {},
    {"k": "v"}, {"": "v"}, {"A=B": "x"}, {"A": 1}, {"A": "\0"}, {"A": "x" * 200_000},
    datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc), datetime.date(2020, 1, 1), datetime.time(1, 2),
]  # fmt: skip
# Valid alternatives for keys whose meaning narrows them: reaching past the first check finds deeper bugs.
CHOICES: dict[str, list[Any]] = {
    "type": sorted(KINDS),
    "scope": ["runtime", "home"],
    "mode": ["builtin", "command"],
    "device": ["auto", "cpu", "cuda"],
    "backend": ["auto", "openai", "faster"],
    "model": ["tiny", "small", "base", "large-v3", "/nope/x.pt", "./x.pt", "~/x.pt", "org/name", "htdemucs"],
    "tokenizer": ["custom", "char", "pinyin"],
    "batch_size_type": ["frame", "sample"],
    "command": [["echo", "{run}"], ["{python}", "-c", "pass"], [""], ["x" * 200_000]],
    "cwd": ["{home}", "{work}", "/", "{home}/runs/{run}/ingest", "/nonexistent"],
}
TABLE_KEYS: dict[str, list[str]] = {
    "lease": [f.name for f in dataclasses.fields(LeaseSettings)],
    "logs": [f.name for f in dataclasses.fields(LogSettings)],
    "restart": [f.name for f in dataclasses.fields(RestartPolicy)],
}
STAGE_KEYS = ["cwd", "env", "inputs", "outputs", "params", "scope", "long_running", "stop_grace_s", "restart"]
KIND_KEYS: dict[str, list[str]] = {
    "setup": ["need", "install", "out"],
    "pretrained": ["model_name", "out"],
    "ingest": ["audio", "out"],
    "separate": ["inventory", "out", "model", "device"],
    "segment": ["inventory", "out", *(f.key for f in options.SEGMENT)],
    "transcribe": ["clips", "out", *(f.key for f in options.TRANSCRIBE)],
    "prepare": ["metadata", "out", "pretrained", "pretrained_vocab"],
    "train": [
        *(f.name for f in dataclasses.fields(TrainSpec) if f.name not in ("checkpoint_dir", "progress_path")),
        "dataset",
        "mode",
        "command",
        "checkpoint_dir",
        "keep_durable",
        "hang_minutes",
        "sync_polling",
        "export_every",
    ],
    "command": ["command"],
}


@dataclass(frozen=True)
class Generated:
    """The config `f5guard init --audio` writes for two speakers, and the folder that holds everything."""

    root: Path
    config: Path
    text: str
    data: dict[str, Any]


def generate(root: Path) -> Generated:
    """Two speaker folders of tiny files, and the config `f5guard init` writes for them (the real CLI)."""
    for speaker, name in (("Ana", "a.wav"), ("Bảo (2)", "b 1.mp3")):
        (root / "audio" / speaker).mkdir(parents=True)
        (root / "audio" / speaker / name).write_bytes(b"RIFF")
    (root / "drive").mkdir()
    config = root / "f5guard.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "f5guard", "init", "--home", str(root / "drive" / "home"), "--audio",
         str(root / "audio"), "--work", str(root / "work"), "-o", str(config)],
        capture_output=True, text=True, timeout=120, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = config.read_text(encoding="utf-8")
    return Generated(root, config, text, tomllib.loads(text))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generate(tmp_path_factory.mktemp("fuzz"))


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under root, with size and mtime: 'nothing written' is this, unchanged."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            found.append((os.path.relpath(os.path.join(folder, name), root), st.st_size, st.st_mtime_ns))
    return sorted(found)


def outcome(call: Callable[[], object], config: Path) -> str | None:
    """None when the config is accepted, else the one-line ConfigError message; any other exception escapes."""
    try:
        call()
    except ConfigError as err:
        message = err.message
        assert message.splitlines() == [message] and message == message.strip(), repr(message)
        assert message.startswith(f"{config}: "), f"names the file: {message}"
        message.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogate
        return message
    return None


# ---------------------------------------------------------------------------------------------- tree mutations
Slot = tuple[Any, Any]  # (container, key or index)


def slots(node: Any) -> list[Slot]:
    """Every place a value sits in the tree: dict keys and list items, at any depth."""
    found: list[Slot] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found.append((node, key))
        found.extend(slots(value))
    return found


def tables(node: Any) -> list[dict[str, Any]]:
    found = [node] if isinstance(node, dict) else []
    for value in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
        found.extend(tables(value))
    return found


def hostile(rng: random.Random, key: Any, old: Any) -> Any:
    """A value for ``key``: mostly hostile, sometimes a valid alternative, sometimes a near miss of the old one."""
    roll = rng.random()
    if roll < 0.15 and key in CHOICES:
        return copy.deepcopy(rng.choice(CHOICES[key]))
    if roll < 0.3 and isinstance(old, (int, float)) and not isinstance(old, bool) and abs(old) < 1e18:
        return rng.choice([-old, old * 10**6, old + 0.1, old - 1, old * 0.001, str(old), [old]])
    if roll < 0.35 and isinstance(old, str):
        return rng.choice([old * 2, old + "/..", old.upper(), old[:1], old + "\0", [old], 1])
    return copy.deepcopy(rng.choice(HOSTILE))


def mutate_tree(data: dict[str, Any], rng: random.Random) -> list[str]:
    """One to three mutations in place; returns what was done (the reproduction recipe)."""
    done: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        roll = rng.random()
        if roll < 0.55:
            container, key = rng.choice(slots(data))
            container[key] = hostile(rng, key, container[key])
            done.append(f"set {key!r} = {_show(container[key])}")
        elif roll < 0.7:
            container, key = rng.choice(slots(data))
            del container[key]
            done.append(f"delete {key!r}")
        elif roll < 0.77:
            table = rng.choice(tables(data))
            table[rng.choice(["extra", "nmae", "", "\0", "x" * 1000])] = 1
            done.append("add an unknown key")
        else:
            table, key = _known_key(data, rng)
            old = table.get(key)
            table[key] = hostile(rng, key, old if old is not None else rng.choice((1.0, 1, "x")))
            done.append(f"add/set known {key!r} = {_show(table[key])}")
    return done


def _known_key(data: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """A key the schema knows, in a table where it belongs: a lease, logs or restart setting, or a stage's."""
    if rng.random() < 0.25:
        name = rng.choice(sorted(TABLE_KEYS))
        table = data.setdefault(name, {}) if isinstance(data.get(name, {}), dict) else data
        return table, rng.choice(TABLE_KEYS[name]) if table is not data else "stop_grace_s"
    runs = data.get("runs")
    stages = [
        stage
        for run in (runs if isinstance(runs, list) else [])
        if isinstance(run, dict) and isinstance(run.get("stages"), list)
        for stage in run["stages"]
        if isinstance(stage, dict)
    ]
    if not stages:
        return data, "stop_grace_s"
    stage = rng.choice(stages)
    kind = stage.get("type", "command")
    return stage, rng.choice(STAGE_KEYS + KIND_KEYS.get(kind if isinstance(kind, str) else "command", []))


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**50 else f"<{value.bit_length()}-bit int>"
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------- text mutations
TOML_VALUES = [
    "nan", "+nan", "-nan", "inf", "-inf", "1" + "0" * 400, "1" + "0" * 5000, "-" + "9" * 30, "1e400", "-1e400", "-1",
    "0", "0.0", "-0.0", "1e-400", "0x7fffffffffffffff", '""', '" "', '"\\u0000"', '"a\\u0000b"', '"{home:d}"',
    '"{home!z}"', '"{home:>99999999999999999999}"', '"{"', '"/nonexistent"', f'"{"a" * 300}"', "[]", "{}", "true",
    "1979-05-27T07:32:00Z", "07:32:00", "'literal {run}'", '"\\uD800"', '"unterminated', "= =", '"\\x"', "[1, 2",
    '["\\u0000"]', '{ A = "\\u0000" }', '{ "A=B" = "x" }',
]  # fmt: skip
ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*=\s*)(.*)$")


def mutate_text(text: str, rng: random.Random) -> tuple[bytes, str]:
    """A line-level edit of the generated TOML: a key's value replaced, a line dropped or doubled, junk added."""
    lines = text.splitlines()
    assigned = [i for i, line in enumerate(lines) if ASSIGNMENT.match(line)]
    i = rng.choice(assigned)
    roll = rng.random()
    if roll < 0.7:
        match = ASSIGNMENT.match(lines[i])
        assert match is not None
        value = rng.choice(TOML_VALUES)
        lines[i] = f"{match[1]}{match[2]}{match[3]}{value}"
        what = f"line {i + 1}: {match[2]} = {value[:60]}"
    elif roll < 0.8:
        what = f"line {i + 1} dropped: {lines.pop(i)[:60]}"
    elif roll < 0.9:
        lines.insert(i, lines[i])
        what = f"line {i + 1} doubled"
    else:
        lines.insert(i + 1, rng.choice(["unknown = 1", "[[runs]]", "[lease]", '"" = 1', "nmae = 'x'"]))
        what = f"junk after line {i + 1}"
    raw = ("\n".join(lines) + "\n").encode()
    if rng.random() < 0.03:
        raw = raw.replace(b"Ana", b"An\xff", 1)
        what += "; a byte that is not UTF-8"
    return raw, what


# ---------------------------------------------------------------------------------------------- the tests
def test_tree_mutations_fail_cleanly(generated: Generated) -> None:
    """>= 500 mutations of the parsed config: accepted, or one ConfigError line; nothing else, nothing written."""
    started, refused = time.monotonic(), 0
    before = snapshot(generated.root)
    for n in range(TREE_MUTATIONS):
        rng = random.Random(f"{SEED}-tree-{n}")  # noqa: S311 - reproducible test data, not secrets
        data = copy.deepcopy(generated.data)
        done = mutate_tree(data, rng)
        try:
            message = outcome(functools.partial(parse_config, data, generated.config), generated.config)
        except Exception as err:  # noqa: BLE001 - the bug this test exists for: name the mutation that reproduces it
            pytest.fail(f"mutation {n} (seed {SEED}): {'; '.join(done)} -> {type(err).__name__}: {err}")
        refused += message is not None
        after = snapshot(generated.root)
        assert after == before, f"mutation {n} (seed {SEED}) wrote files: {'; '.join(done)}"
    assert TREE_MUTATIONS < 500 or 0 < refused < TREE_MUTATIONS, "the mix must hold accepted and refused configs"
    print(f"{TREE_MUTATIONS} tree mutations, {refused} refused, {time.monotonic() - started:.1f} s")


def test_text_mutations_fail_cleanly(generated: Generated, tmp_path: Path) -> None:
    """Line edits of the TOML text through load_config: numbers tomllib refuses, bytes that are not UTF-8."""
    config = tmp_path / "f5guard.toml"
    for n in range(TEXT_MUTATIONS):
        rng = random.Random(f"{SEED}-text-{n}")  # noqa: S311 - reproducible test data, not secrets
        raw, what = mutate_text(generated.text, rng)
        config.write_bytes(raw)
        before = snapshot(generated.root)
        try:
            outcome(functools.partial(load_config, config), config.resolve())
        except Exception as err:  # noqa: BLE001 - as above
            pytest.fail(f"text mutation {n} (seed {SEED}): {what} -> {type(err).__name__}: {err}")
        assert snapshot(generated.root) == before, f"text mutation {n} (seed {SEED}) wrote files: {what}"


CLI_CASES = [
    ("accepted", None, None),
    ("lease nan", "[restart]", "[lease]\nduration_s = nan\n\n[restart]"),
    ("huge clip", "max_clip_s = 30.0", "max_clip_s = 1" + "0" * 400),
    ("format spec", 'out = "{home}/pretrained/F5TTS_v1_Base"', 'out = "{home:d}/pretrained"'),
    ("NUL in env", 'type = "ingest"', 'type = "ingest"\nenv = { A = "x\\u0000y" }'),
    ("cwd", 'type = "ingest"', 'type = "ingest"\ncwd = "/nonexistent"'),
    ("empty dataset", 'dataset = "{home}/runs/{run}/prepare/data"', 'dataset = ""'),
]


@pytest.mark.parametrize(("case", "old", "new"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_dry_run_exit_0_or_one_line_exit_2(
    generated: Generated, tmp_path: Path, case: str, old: str, new: str
) -> None:
    """The real CLI: `start --dry-run` exits 0, or exits 2 with one line on stderr; no traceback, nothing written."""
    text = generated.text if old is None else generated.text.replace(old, new, 1)
    assert old is None or text != generated.text, f"{case}: the generated config changed; update the case"
    config = tmp_path / "f5guard.toml"
    config.write_text(text, encoding="utf-8")
    before = snapshot(generated.root)
    proc = subprocess.run(
        [sys.executable, "-m", "f5guard", "start", "--dry-run", "--config", str(config)],
        capture_output=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    if old is None:
        assert proc.returncode == 0 and b"would run" in proc.stdout, stderr
    else:
        assert proc.returncode == 2, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"f5guard: {config}: "), stderr
    assert snapshot(generated.root) == before, f"{case}: --dry-run wrote files"


# ---------------------------------------------------------------------------------------------- structure
def _nested(kind: str, depth: int) -> str:
    """A TOML snippet nesting ``depth`` levels of one kind: arrays, inline tables, dotted table headers,
    arrays of tables, dotted keys."""
    if kind == "arrays":
        return "x = " + "[" * depth + "1" + "]" * depth
    if kind == "inline":
        return "x = " + "{ a = " * depth + "1" + " }" * depth
    if kind == "headers":
        return "[" + ".".join(["a"] * depth) + "]\nb = 1"
    if kind == "array-tables":
        return "[[" + ".".join(["a"] * depth) + "]]\nb = 1"
    return ".".join(["k"] * depth) + " = 1"  # dotted keys


STRUCTURE_KINDS = ["arrays", "inline", "headers", "array-tables", "dotted"]
DEPTHS = [33, 200, 1000, 5000, 50_000]


def _sized(generated: Generated, kind: str) -> str:
    """Configs of hostile size or breadth: thousands of runs, stages or keys, one huge value, past the limit."""
    run = generated.text[generated.text.index("[[runs]]") :]
    head = generated.text[: generated.text.index("[[runs]]")]
    if kind == "runs":
        return head + "".join(run.replace('name = "Ana"', f'name = "Ana{i}"', 1) for i in range(300))
    if kind == "keys":
        return head + "\n".join(f"k{i} = {i}" for i in range(50_000)) + "\n" + run
    if kind == "env":
        table = ", ".join(f"K{i} = 'v'" for i in range(20_000))
        return generated.text.replace('type = "ingest"', f'type = "ingest"\nenv = {{ {table} }}', 1)
    if kind == "value":
        return head + f'note = "{"x" * 3_000_000}"\n' + run
    return head + "# " + "x" * (5 * 1024 * 1024) + "\n" + run  # over the size limit


SIZES = ["runs", "keys", "env", "value", "too-big"]


@pytest.mark.parametrize("kind", STRUCTURE_KINDS)
def test_deep_structures_fail_cleanly(generated: Generated, tmp_path: Path, kind: str) -> None:
    """Nesting of every kind at every depth, at the top and inside a stage: one ConfigError line, never a
    RecursionError (it was a traceback on every verb, and killed a running daemon's config watcher)."""
    config = tmp_path / "f5guard.toml"
    for depth in DEPTHS:
        for where in ("top", "stage"):
            snippet = _nested(kind, depth)
            if where == "top":
                text = (
                    snippet + "\n" + generated.text
                    if kind in ("arrays", "inline", "dotted")
                    else (generated.text + "\n" + snippet)
                )
            else:
                text = generated.text.replace('type = "ingest"', 'type = "ingest"\n' + snippet, 1)
            config.write_text(text, encoding="utf-8")
            try:
                message = outcome(functools.partial(load_config, config), config.resolve())
            except Exception as err:  # noqa: BLE001 - the bug this test exists for
                pytest.fail(f"{kind} nested {depth} deep ({where}) -> {type(err).__name__}: {str(err)[:200]}")
            assert message is not None or depth <= 32, f"{kind} nested {depth} deep ({where}) was accepted"


@pytest.mark.parametrize("kind", SIZES)
def test_huge_configs_fail_cleanly(generated: Generated, tmp_path: Path, kind: str) -> None:
    """Thousands of runs, keys or env entries, a 3 MB value, a 5 MiB file: accepted or one line, in seconds."""
    config = tmp_path / "f5guard.toml"
    config.write_text(_sized(generated, kind), encoding="utf-8")
    try:
        message = outcome(functools.partial(load_config, config), config.resolve())
    except Exception as err:  # noqa: BLE001 - the bug this test exists for
        pytest.fail(f"{kind} -> {type(err).__name__}: {str(err)[:200]}")
    if kind == "too-big":
        assert message is not None and "cannot read config" in message, message


def test_parse_config_refuses_deep_trees(generated: Generated) -> None:
    """The parsed tree itself (a dict built in Python, past TOML): 100,000 levels are measured, not recursed."""
    data = copy.deepcopy(generated.data)
    node: dict[str, Any] = data.setdefault("extra", {})
    for _ in range(100_000):
        node = node.setdefault("a", {})
    message = outcome(functools.partial(parse_config, data, generated.config), generated.config)
    assert message is not None and "nested more than" in message


@pytest.mark.parametrize("path", ["/dev/zero", "fifo", "folder", "/dev/null"])
def test_config_paths_that_never_end_do_not_hang(tmp_path: Path, path: str) -> None:
    """`--config /dev/zero`, a FIFO nobody writes, a folder: every verb answers at once with one line, exit 2
    (a FIFO blocked every verb forever, /dev/zero filled memory)."""
    if path == "fifo":
        target = tmp_path / "f5guard.toml"
        os.mkfifo(target)
    elif path == "folder":
        target = tmp_path / "config.d"
        target.mkdir()
    else:
        target = Path(path)
    for verb in (["status"], ["status", "--json"], ["start", "--dry-run"], ["stop"], ["tail"]):
        proc = subprocess.run([sys.executable, "-m", "f5guard", *verb, "--config", str(target)],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 2, (verb, proc.returncode, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
