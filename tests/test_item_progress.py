"""A stage that reports item progress through $F5GUARD_PROGRESS shows done/total and an ETA in status."""

from __future__ import annotations

from tests.conftest import Project

BODY = """
[[runs]]
name = "r"
[[runs.stages]]
name = "items"
command = ["{python}", "-c", "import time\\nfrom f5guard.itemprogress import ItemProgress\\nwith ItemProgress(total=40) as p:\\n    for _ in range(40):\\n        time.sleep(0.1)\\n        p.advance()"]
"""


def test_items_and_eta_in_status(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(BODY)
    p.cli("start", check=True)

    def midway() -> dict | None:
        stage = p.status()["runs"][0]["stages"][0]
        items = stage.get("items")
        return stage if items and 5 <= items["done"] < 35 and items["eta_s"] is not None else None

    stage = p.wait_for(midway, timeout=30, what="items midway")
    assert stage["items"]["total"] == 40 and 0 < stage["items"]["eta_s"] < 30
    assert "/40 items, ETA" in p.cli("status").stdout
    run = p.wait_run("r")
    assert run["stages"][0]["items"]["done"] == 40
