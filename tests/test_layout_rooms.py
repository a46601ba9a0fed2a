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


DOCS = PACKAGE.parent / "docs"


def _drawn_arrows() -> set[tuple[str, str]]:
    """The room arrows of docs/architecture.md's diagram (``a & b --> c & d`` is four), config as its own node."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("```mermaid", 1)[1].split("```", 1)[0]
    arrows: set[tuple[str, str]] = set()
    for line in diagram.splitlines():
        if "-->" in line:
            left, right = line.split("-->")
            arrows |= {(a.strip(), b.strip()) for a in left.split("&") for b in right.split("&")}
    return arrows


def test_the_architecture_map_draws_every_room_arrow_and_no_other() -> None:
    """docs/architecture.md is the newcomer's map: an arrow it lacks (or one the code lost) fails here. Arrows
    to the shared core are drawn only for rooms that import nothing else (every room imports the core)."""
    graph = _graph()

    def node(module: str) -> str:
        return "config" if module == "f5guard.config" else _room(module)

    actual: set[tuple[str, str]] = set()
    for module, deps in graph.items():
        if module == "f5guard.__main__":
            continue  # the console script's entry
        for dep in deps:
            if node(dep) != node(module):
                actual.add((node(module), node(dep)))
    drawn = _drawn_arrows()
    only_core = {a for a, _ in actual} - {a for a, b in actual if b != "core"}
    expected = {(a, b) for a, b in actual if b != "core" or a in only_core}
    assert drawn == expected, f"missing: {sorted(expected - drawn)}; not in the code: {sorted(drawn - expected)}"


def test_the_docs_cite_only_files_the_project_has() -> None:
    """A doc citing a file the reader cannot open (the architecture map cited a DESIGN.md that never existed)."""
    import re

    root = PACKAGE.parent
    missing = []
    for doc in [root / "README.md", *sorted(DOCS.glob("*.md"))]:
        if doc.name == "reliability.md":
            continue  # cites the design notes outside the project (shared/): its owner's branch rewrites it
        for cited in re.findall(r"[\w./-]+\.md\b", doc.read_text(encoding="utf-8")):
            if not any((base / cited).exists() for base in (root, DOCS, doc.parent)):
                missing.append(f"{doc.name}: {cited}")
    assert missing == []
