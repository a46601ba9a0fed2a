"""What one recipe stage hands the next: every malformed inventory or clips manifest is one BadInput line
naming the file (and, when missing, the stage that makes it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from f5guard.recipe.manifests import CLIPS_FORMAT, INVENTORY_FORMAT, read_clips, read_inventory
from f5guard.recipe.stagecli import BadInput

GOOD = {"path": "/a/x.wav", "name": "x.wav", "ok": True, "sha256": "0" * 64}
CORRUPT = {"path": "/a/y.mp3", "name": "y.mp3", "ok": False, "reason": "does not decode"}


def _write(path: Path, document: object) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_good_documents_read_back(tmp_path: Path) -> None:
    inventory = _write(tmp_path / "inventory.json", {"format": INVENTORY_FORMAT, "files": [GOOD, CORRUPT]})
    assert read_inventory(inventory) == [GOOD, CORRUPT]  # a corrupt source needs no sha256
    clips = [{"path": "/c/2.wav"}, {"path": "/c/1.wav"}, {"path": "/c/2.wav"}]
    manifest = _write(tmp_path / "clips.json", {"format": CLIPS_FORMAT, "clips": clips})
    assert read_clips(manifest) == ["/c/2.wav", "/c/1.wav"]  # order kept, a repeat is one clip


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("{not json", "unreadable"),
        ([], "not an f5guard inventory (format 1, a files list)"),
        ({"format": 2, "files": []}, "not an f5guard inventory"),
        ({"format": 1, "files": [{"path": "/a", "name": "a"}]}, "an entry without path, name and ok"),
        ({"format": 1, "files": [{**GOOD, "sha256": None}]}, "x.wav has no sha256"),
    ],
)
def test_bad_inventory(tmp_path: Path, document: object, words: str) -> None:
    path = _write(tmp_path / "inventory (Thuận).json", document)
    with pytest.raises(BadInput) as caught:
        read_inventory(path)
    assert str(caught.value).startswith(f"inventory {path}: ") and words in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"format": 1, "clips": []}, "lists no clips"),
        ({"format": 1, "clips": [{"name": "a.wav"}]}, "a clip without a path"),
        ({"format": 1, "files": []}, "not an f5guard clips manifest"),
    ],
)
def test_bad_clips_manifest(tmp_path: Path, document: object, words: str) -> None:
    path = _write(tmp_path / "clips.json", document)
    with pytest.raises(BadInput, match=words):
        read_clips(path)


def test_missing_documents_name_the_stage_that_makes_them(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"does not exist \(run the ingest stage first\)"):
        read_inventory(tmp_path / "none.json")
    with pytest.raises(BadInput, match=r"does not exist \(run the segment stage first\)"):
        read_clips(tmp_path / "none.json")
