"""The house stays legible: no import cycle between modules or rooms, the daemon side never imports the CLI,
and the top level keeps to the shared core (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import f5guard

PACKAGE = Path(f5guard.__file__).parent
ROOMS = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
DAEMON_SIDE = {"daemon", "status", "stages", "training", "checkpoints", "lease", "trainer", "recipe"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("f5guard"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("f5guard"))
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "core"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if not state.get(nxt) and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if not state.get(start) and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_graph()) is None


def test_no_cycle_between_rooms_and_no_daemon_side_import_of_the_cli() -> None:
    graph = _graph()
    rooms: dict[str, set[str]] = {}
    for module, deps in graph.items():
        if module in ("f5guard.__main__", "f5guard.config"):
            continue  # entries: the console script, and the table of stage kinds only cli/ and daemon/ read
        for dep in deps:
            if _room(dep) != _room(module) and dep not in ("f5guard.config", "f5guard.__main__"):
                rooms.setdefault(_room(module), set()).add(_room(dep))
    assert _cycle(rooms) is None, rooms
    offenders = [m for m, deps in graph.items() if _room(m) in DAEMON_SIDE and any(_room(d) == "cli" for d in deps)]
    assert offenders == []


def test_top_level_holds_the_shared_core_only() -> None:
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__"))
    assert len(loose) <= 16, loose
    graph = _graph()
    upward = {m: sorted(d for d in deps if _room(d) != "core") for m, deps in graph.items() if _room(m) == "core"}
    assert {m: d for m, d in upward.items() if d and m not in ("f5guard.__main__", "f5guard.config")} == {}
