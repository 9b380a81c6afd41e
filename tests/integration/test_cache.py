"""Tests of open_index and the cache file on real files in tmp_path."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spoolgate.errors import MboxError, NotAnMboxError
from spoolgate.mbox.cache import (
    Refresh,
    cache_path_for,
    load_cache,
    open_index,
    save_index,
    scan_file,
    write_cache,
)
from spoolgate.mbox.generate import GenerateOptions, generate_bytes
from spoolgate.mbox.index import Variant

FROM_A = b"From alice@example.org Mon Jan  1 00:00:00 2001\n"
FROM_B = b"From bob@example.com Tue Feb  2 02:02:02 2002\n"


@functools.cache
def generated(messages: int, seed: int = 1) -> bytes:
    options = GenerateOptions(
        messages=messages, seed=seed, attach_rate=0.0, format="mboxo"
    )
    return generate_bytes(options)[0]


@pytest.fixture
def mbox(tmp_path: Path) -> Path:
    path = tmp_path / "spool" / "ann"
    path.parent.mkdir()
    path.write_bytes(generated(20))
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def assert_matches_rescan(path: Path, cache_dir: Path) -> None:
    index, _ = open_index(path, cache_dir)
    assert index.same_records(scan_file(path))


def test_open_index_first_time_is_new(mbox: Path, cache_dir: Path) -> None:
    index, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.NEW
    assert report.bytes_parsed == mbox.stat().st_size
    assert report.cache_written
    assert len(index) == 20


def test_open_index_unchanged_is_hit(mbox: Path, cache_dir: Path) -> None:
    first, _ = open_index(mbox, cache_dir)
    second, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.HIT
    assert report.bytes_parsed == 0
    assert not report.cache_written
    assert second.same_records(first)


def test_open_index_append_parses_last_and_new(mbox: Path, cache_dir: Path) -> None:
    before, _ = open_index(mbox, cache_dir)
    last = before[len(before) - 1]
    extra = generated(2, seed=9)
    append(mbox, extra)
    index, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.APPEND
    assert report.bytes_parsed == last.length + len(extra)
    assert len(index) == 22
    assert index.same_records(scan_file(mbox))


def test_open_index_append_completes_partial_message(
    mbox: Path, cache_dir: Path
) -> None:
    extra = generated(1, seed=5)
    append(mbox, extra[:200])
    open_index(mbox, cache_dir)
    append(mbox, extra[200:])
    index, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.APPEND
    assert index.same_records(scan_file(mbox))


def test_open_index_append_single_token_becomes_separator(
    mbox: Path, cache_dir: Path
) -> None:
    append(mbox, b"From -\n")
    first, _ = open_index(mbox, cache_dir)
    append(mbox, b"X-Mozilla-Status: 0001\nSubject: x\n\nbody\n")
    index, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.APPEND
    assert len(index) == len(first) + 1
    assert index.same_records(scan_file(mbox))


def test_open_index_shrunk_file_rebuilds(mbox: Path, cache_dir: Path) -> None:
    open_index(mbox, cache_dir)
    os.truncate(mbox, mbox.stat().st_size // 2)
    _, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.REBUILD
    assert "shrank" in report.reason
    assert_matches_rescan(mbox, cache_dir)


def test_open_index_same_size_rewrite_rebuilds(mbox: Path, cache_dir: Path) -> None:
    open_index(mbox, cache_dir)
    data = bytearray(mbox.read_bytes())
    data[500] ^= 0x20
    with open(mbox, "r+b") as file:
        file.write(data)
    _, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.REBUILD
    assert "rewritten" in report.reason


def test_open_index_changed_last_message_rebuilds(mbox: Path, cache_dir: Path) -> None:
    index, _ = open_index(mbox, cache_dir)
    last_offset = index[len(index) - 1].offset
    with open(mbox, "r+b") as file:
        file.seek(last_offset + len(b"From "))
        file.write(b"X")
    append(mbox, generated(1, seed=3))
    _, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.REBUILD
    assert "last message changed" in report.reason


def test_open_index_replaced_file_rebuilds(mbox: Path, cache_dir: Path) -> None:
    open_index(mbox, cache_dir)
    replacement = mbox.with_name("new")
    replacement.write_bytes(mbox.read_bytes() + generated(1, seed=4))
    os.replace(replacement, mbox)
    _, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.REBUILD
    assert "inode" in report.reason


def test_open_index_variant_change_rebuilds(mbox: Path, cache_dir: Path) -> None:
    open_index(mbox, cache_dir)
    index, report = open_index(mbox, cache_dir, variant=Variant.MBOXRD)
    assert report.outcome is Refresh.REBUILD
    assert index.variant is Variant.MBOXRD


def test_open_index_corrupt_cache_warns_and_rebuilds(
    mbox: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, report = open_index(mbox, cache_dir)
    assert report.cache_path is not None
    data = bytearray(report.cache_path.read_bytes())
    data[200] ^= 0xFF
    report.cache_path.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        index, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.REBUILD
    assert "checksum mismatch" in report.warnings[0]
    assert "checksum mismatch" in caplog.text
    assert index.same_records(scan_file(mbox))


def test_open_index_truncated_cache_rebuilds(mbox: Path, cache_dir: Path) -> None:
    _, report = open_index(mbox, cache_dir)
    assert report.cache_path is not None
    os.truncate(report.cache_path, 50)
    _, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.REBUILD
    assert "truncated" in report.warnings[0]


def test_open_index_unwritable_cache_dir_warns(mbox: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    index, report = open_index(mbox, blocker / "cache")
    assert len(index) == 20
    assert not report.cache_written
    assert "cannot write index cache" in report.warnings[0]


def test_open_index_missing_mbox_raises(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(MboxError, match="no such file"):
        open_index(tmp_path / "gone", cache_dir)


def test_open_index_directory_raises(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(MboxError, match="not a regular file"):
        open_index(tmp_path, cache_dir)


def test_open_index_text_file_raises_not_an_mbox(
    tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"Dear diary,\n")
    with pytest.raises(NotAnMboxError, match=r"notes\.txt"):
        open_index(path, cache_dir)


def test_open_index_empty_mbox_then_delivery(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    index, _ = open_index(path, cache_dir)
    assert len(index) == 0
    append(path, generated(3))
    index, report = open_index(path, cache_dir)
    assert report.outcome is Refresh.APPEND
    assert len(index) == 3


def test_save_index_after_remove_gives_hit(mbox: Path, cache_dir: Path) -> None:
    index, _ = open_index(mbox, cache_dir)
    doomed = index[3]
    data = mbox.read_bytes()
    kept = data[: doomed.offset] + data[doomed.offset + doomed.length :]
    with open(mbox, "r+b") as file:
        file.write(kept)
        file.truncate()
    index.remove([3])
    save_index(index, mbox, cache_dir)
    reopened, report = open_index(mbox, cache_dir)
    assert report.outcome is Refresh.HIT
    assert reopened.same_records(scan_file(mbox))


def test_write_cache_leaves_no_temp_file(mbox: Path, cache_dir: Path) -> None:
    index, _ = open_index(mbox, cache_dir, write=False)
    path = cache_path_for(mbox, cache_dir)
    write_cache(index, path)
    assert sorted(p.name for p in cache_dir.iterdir()) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_cache(path).same_records(index)


def test_cache_path_differs_per_mbox(tmp_path: Path) -> None:
    assert cache_path_for(tmp_path / "a", tmp_path) != cache_path_for(
        tmp_path / "b", tmp_path
    )


def test_remove_duplicate_keeps_uidl_of_other_copy(mbox: Path, cache_dir: Path) -> None:
    twice = generated(1, seed=8)
    append(mbox, twice + twice)
    index, _ = open_index(mbox, cache_dir)
    second_uidl = index[21].uidl
    assert second_uidl != index[20].uidl
    data = mbox.read_bytes()
    first = index[20]
    with open(mbox, "r+b") as file:
        file.write(data[: first.offset] + data[first.offset + first.length :])
        file.truncate()
    index.remove([20])
    save_index(index, mbox, cache_dir)
    reopened, _ = open_index(mbox, cache_dir)
    assert reopened[20].uidl == second_uidl
    # Only a rebuild (cache lost) gives the remaining copy the plain UIDL.
    assert scan_file(mbox)[20].uidl != second_uidl


# A sequence of outside appends, outside rewrites that delete a message in
# the middle, and our own removals (as an expunge does) must always leave
# an index equal to a full rescan. Appended messages get a unique header,
# because duplicates keep derived UIDLs that a rescan gives out anew.
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["append", "rewrite", "remove", "partial"]),
        st.integers(min_value=0, max_value=1000),
    ),
    min_size=1,
    max_size=6,
)


@given(operations=OPERATIONS)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_open_index_after_any_changes_matches_rescan(
    tmp_path: Path, operations: list[tuple[str, int]]
) -> None:
    path = tmp_path / "prop"
    cache_dir = tmp_path / "prop-cache"
    path.write_bytes(generated(6))
    cache_path_for(path, cache_dir).unlink(missing_ok=True)
    pieces = [generated(2, seed=s) for s in (11, 12, 13)]
    for step, (action, pick) in enumerate(operations):
        index, _ = open_index(path, cache_dir)
        piece = pieces[pick % 3].replace(
            b"\nReturn-Path:", b"\nX-Step: %d\nReturn-Path:" % step
        )
        if action == "append":
            append(path, piece)
        elif action == "partial":
            append(path, piece[: pick % len(piece) + 1])
        elif len(index) and action in ("rewrite", "remove"):
            number = pick % len(index)
            record = index[number]
            data = path.read_bytes()
            kept = data[: record.offset] + data[record.offset + record.length :]
            if action == "rewrite":
                path.write_bytes(kept)
            else:
                with open(path, "r+b") as file:
                    file.write(kept)
                    file.truncate()
                index.remove([number])
                save_index(index, path, cache_dir)
        assert_matches_rescan(path, cache_dir)
