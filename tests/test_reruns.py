"""What reruns and why: a changed input reruns its stage and every later one; earlier stages skip;
runtime stages redo on a new machine without dragging data stages along; reset invalidates from a stage on."""

from __future__ import annotations

from tests.conftest import Project

PIPELINE = """
[[runs]]
name = "r"
[[runs.stages]]
name = "install"
scope = "runtime"
command = ["sh", "-c", "echo x >> {work}/install.count"]
[[runs.stages]]
name = "first"
inputs = ["{config_dir}/raw/first.txt"]
command = ["sh", "-c", "echo x >> {work}/first.count; cat {config_dir}/raw/first.txt > {work}/first.out"]
outputs = ["{work}/first.out"]
[[runs.stages]]
name = "second"
inputs = ["{work}/first.out", "{config_dir}/raw/extra/*.txt"]
command = ["sh", "-c", "echo x >> {work}/second.count; cat {work}/first.out {config_dir}/raw/extra/*.txt > {work}/second.out"]
outputs = ["{work}/second.out"]
[[runs.stages]]
name = "third"
inputs = ["{work}/second.out"]
command = ["sh", "-c", "echo x >> {work}/third.count; wc -c < {work}/second.out > {work}/third.out"]
outputs = ["{work}/third.out"]
"""


def counts(p: Project) -> tuple[int, ...]:
    def one(name: str) -> int:
        path = p.work / f"{name}.count"
        return path.read_text().count("x") if path.exists() else 0

    return tuple(one(n) for n in ("install", "first", "second", "third"))


def setup_project(make_project) -> Project:  # type: ignore[no-untyped-def]
    p: Project = make_project(PIPELINE)
    (p.root / "raw" / "extra").mkdir(parents=True)
    (p.root / "raw" / "first.txt").write_text("hello\n")
    (p.root / "raw" / "extra" / "a.txt").write_text("a\n")
    return p


def cycle(p: Project, env: dict[str, str] | None = None) -> None:
    p.cli("start", check=True, env=env)
    p.wait_run("r")
    p.cli("stop", check=True)


def dry(p: Project, env: dict[str, str] | None = None) -> dict[str, str]:
    out = p.cli("start", "--dry-run", check=True, env=env).stdout
    return dict(line.strip().split(": ", 1) for line in out.splitlines() if line.startswith("  "))


def test_changed_input_reruns_that_stage_and_later_ones(make_project) -> None:  # type: ignore[no-untyped-def]
    p = setup_project(make_project)
    assert set(dry(p).values()) == {"would run: never completed"}
    cycle(p)
    assert counts(p) == (1, 1, 1, 1)
    assert set(dry(p).values()) == {"up to date"}
    cycle(p)
    assert counts(p) == (1, 1, 1, 1), "everything up to date: nothing reran"

    (p.root / "raw" / "extra" / "b.txt").write_text("b\n")  # a glob input gains a file
    plan = dry(p)
    assert plan["first"] == "up to date"
    assert plan["second"].startswith("would run: input added:") and plan["second"].endswith("raw/extra/b.txt")
    assert plan["third"] == "would run: earlier stage 'second' reruns"
    cycle(p)
    assert counts(p) == (1, 1, 2, 2)

    (p.root / "raw" / "first.txt").write_text("changed\n")
    assert dry(p)["first"].startswith("would run: input modified:")
    cycle(p)
    assert counts(p) == (1, 2, 3, 3)
    assert (p.work / "second.out").read_text() == "changed\na\nb\n"


def test_touch_without_change_does_not_rerun(make_project) -> None:  # type: ignore[no-untyped-def]
    """Content hashes, not mtimes: Snakemake-style spurious reruns are what users hate."""
    p = setup_project(make_project)
    cycle(p)
    (p.root / "raw" / "first.txt").write_text("hello\n")  # same bytes, new mtime
    assert set(dry(p).values()) == {"up to date"}


def test_deleted_output_reruns(make_project) -> None:  # type: ignore[no-untyped-def]
    p = setup_project(make_project)
    cycle(p)
    (p.work / "third.out").unlink()
    assert dry(p)["third"] == f"would run: output missing: {p.work}/third.out"
    cycle(p)
    assert counts(p) == (1, 1, 1, 2)


def test_new_machine_reruns_runtime_stages_only(make_project) -> None:  # type: ignore[no-untyped-def]
    p = setup_project(make_project)
    cycle(p)
    other_vm = {"F5GUARD_BOOT_ID": "another-vm"}
    plan = dry(p, other_vm)
    assert plan == {
        "install": "would run: new machine (runtime stage)",
        "first": "up to date",
        "second": "up to date",
        "third": "up to date",
    }
    cycle(p, other_vm)
    assert counts(p) == (2, 1, 1, 1)


def test_reset_invalidates_a_stage_and_everything_after(make_project) -> None:  # type: ignore[no-untyped-def]
    p = setup_project(make_project)
    cycle(p)
    queued = p.cli("reset", "r", "--stage", "second", check=True)
    assert "queued" in queued.stdout
    plan = dry(p)
    assert plan["first"] == "up to date" and plan["second"].startswith("would run")
    assert plan["third"].startswith("would run")
    cycle(p)
    assert counts(p) == (1, 1, 2, 2)

    bad = p.cli("reset", "r", "--stage", "nope")
    assert bad.returncode == 2 and "run 'r' has no stage 'nope'" in bad.stderr
    bad_run = p.cli("reset", "zzz")
    assert bad_run.returncode == 2 and "no run named 'zzz'" in bad_run.stderr


def test_reset_while_running_applies_at_once(make_project) -> None:  # type: ignore[no-untyped-def]
    body = (
        PIPELINE
        + """
[[runs.stages]]
name = "serve"
long_running = true
command = ["sleep", "600"]
"""
    )
    p = make_project(body)
    (p.root / "raw" / "extra").mkdir(parents=True)
    (p.root / "raw" / "first.txt").write_text("hello\n")
    (p.root / "raw" / "extra" / "a.txt").write_text("a\n")
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serve running")
    applied = p.cli("reset", "r", "--stage", "third", check=True)
    assert "reset:" in applied.stdout
    p.wait_for(lambda: counts(p)[3] == 2, what="third reran")
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serve running again")
    assert counts(p) == (1, 1, 1, 2)
