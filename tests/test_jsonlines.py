"""The one torn-line rule shared by trainer progress, the recipe's item ledger and item progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from f5guard import jsonlines
from f5guard.itemprogress import ItemProgress, read_latest


def test_a_torn_line_is_skipped_and_the_next_writer_starts_a_new_line(tmp_path: Path) -> None:
    """Lines that do not end in a newline or are not objects are not records; an appender ends a torn tail."""
    path = tmp_path / "x.jsonl"
    whole = b'{"a": 1}\n[1, 2]\nnot json\n{"a": 2}\n'
    path.write_bytes(whole + b'{"a": 3')  # killed mid-write
    assert jsonlines.read(path) == ([{"a": 1}, {"a": 2}], len(whole))
    with jsonlines.Appender(path) as lines:
        lines.append({"a": 4})
    records, end = jsonlines.read(path)
    assert records == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert end == path.stat().st_size


def test_read_resumes_from_its_offset_and_waits_for_a_partial_line(tmp_path: Path) -> None:
    """The offset read returns is where the next read picks up; a line still being written is not consumed."""
    path = tmp_path / "x.jsonl"
    with jsonlines.Appender(path) as lines:
        lines.append({"n": "một"})
    first, offset = jsonlines.read(path)
    with path.open("ab") as handle:
        handle.write(b'{"n": 2}\n{"n": ')
    more, offset2 = jsonlines.read(path, offset)
    assert first == [{"n": "một"}] and more == [{"n": 2}]
    assert offset2 == path.stat().st_size - len(b'{"n": ')


def test_encode_is_one_utf8_line_with_the_writers_options() -> None:
    """Keys sorted on request, non-ASCII kept, NaN refused when the writer says so."""
    assert jsonlines.encode({"b": 1, "a": "bốn"}, sort_keys=True) == '{"a": "bốn", "b": 1}\n'.encode()
    assert "NaN" in jsonlines.encode({"x": float("nan")}).decode()  # the ledger keeps Whisper's -inf as is
    with pytest.raises(ValueError, match="JSON compliant"):
        jsonlines.encode({"x": float("nan")}, allow_nan=False)


def test_tail_skips_the_cut_first_line_of_its_window(tmp_path: Path) -> None:
    """Only whole lines inside the window count, so a cut-off prefix never reads as a record."""
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"pad": "' + b"x" * 100 + b'"}\n{"n": 1}\n{"n": 2}\n{"n"')
    assert jsonlines.tail(path, 25) == [{"n": 1}, {"n": 2}]
    assert jsonlines.tail(path, 5) == []
    assert jsonlines.tail(path, 10_000)[0] == {"pad": "x" * 100}


def test_item_progress_reads_the_last_whole_line(tmp_path: Path) -> None:
    """A progress line torn by a killed attempt is skipped, and the next attempt's lines parse."""
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"done": 3, "total": 9}\n{"done": 4, "tot')
    assert read_latest(path) == (3, 9)
    with ItemProgress(total=9, done=5, path=path):
        pass
    assert read_latest(path) == (5, 9)
    assert read_latest(tmp_path / "missing.jsonl") is None
