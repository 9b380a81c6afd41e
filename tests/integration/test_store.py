"""Tests for spoolgate.mbox.store: open, read and expunge on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spoolgate.errors import MboxChangedError, MboxError
from spoolgate.mbox.cache import Refresh, cache_path_for, scan_file
from spoolgate.mbox.journal import ExpungeJournal
from spoolgate.mbox.lock import LockSettings
from spoolgate.mbox.store import Mailbox

SETTINGS = LockSettings(timeout_s=2)


class SimulatedCrashError(Exception):
    """Raised by a progress hook to stop an expunge half way."""


def make_message(number: int) -> bytes:
    """Build a message of a size that varies with ``number``."""
    body = b"".join(
        b"line %d of message %d, padding %s\n" % (i, number, b"x" * (number % 7))
        for i in range(number % 9 + 1)
    )
    quoted = b">From the archive, quoted\n" if number % 3 == 0 else b""
    return (
        b"From sender%d@example.org Fri Dec  4 16:%02d:00 2026\n"
        b"From: sender%d@example.org\n"
        b"Message-ID: <%d@store.test>\n"
        b"Subject: message %d\n\n"
        % (number, number % 60, number, number, number)
        + quoted
        + body
        + b"\n"
    )


def write_mbox(path: Path, count: int) -> list[bytes]:
    messages = [make_message(n) for n in range(count)]
    path.write_bytes(b"".join(messages))
    return messages


def open_mailbox(mbox: Path, cache: Path, chunk_size: int = 1 << 20) -> Mailbox:
    return Mailbox.open(mbox, cache, lock_settings=SETTINGS, chunk_size=chunk_size)


def check_index_matches_rescan(mbox: Path, cache: Path) -> None:
    with open_mailbox(mbox, cache) as box:
        assert box.report.outcome is Refresh.HIT
        assert box.index.same_records(scan_file(mbox))
        assert box.index.identity == scan_file(mbox).identity


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def mbox(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    return spool / "ann"


def test_open_new_then_hit(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 5)
    with open_mailbox(mbox, cache) as box:
        assert box.report.outcome is Refresh.NEW
        assert len(box.index) == 5
    with open_mailbox(mbox, cache) as box:
        assert box.report.outcome is Refresh.HIT
    assert not Path(f"{mbox}.lock").exists()


def test_read_message_returns_pop3_octets(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 4)
    with open_mailbox(mbox, cache) as box:
        for number, message in enumerate(messages):
            content = message.split(b"\n", 1)[1][:-1]
            expected = content.replace(b"\n", b"\r\n")
            octets = b"".join(box.read_message(number))
            assert octets == expected
            assert len(octets) == box.index.size(number)


def test_read_message_after_outside_change_raises(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 3)
    with open_mailbox(mbox, cache) as box:
        # Another program rewrites the file without our lock.
        data = mbox.read_bytes()
        mbox.write_bytes(b"X-Junk: 1\n" + data)
        with pytest.raises(MboxChangedError, match="no longer starts a message"):
            b"".join(box.read_message(1))
    assert not cache_path_for(mbox, cache).exists()


@pytest.mark.parametrize(
    "deleted",
    [{0}, {9}, {4}, {0, 1, 2}, {1, 3, 5, 7}, {0, 9}, set(range(10)), {8, 9}],
    ids=["first", "last", "middle", "head", "alternate", "ends", "all", "tail"],
)
@pytest.mark.parametrize("chunk_size", [16, 1 << 20])
def test_expunge_keeps_rest_byte_exact(
    mbox: Path, cache: Path, deleted: set[int], chunk_size: int
) -> None:
    messages = write_mbox(mbox, 10)
    with open_mailbox(mbox, cache, chunk_size) as box:
        uidls = [box.index.uidl(n) for n in range(10) if n not in deleted]
        box.expunge(deleted)
        assert [box.index.uidl(n) for n in range(len(box.index))] == uidls
    kept = [m for n, m in enumerate(messages) if n not in deleted]
    assert mbox.read_bytes() == b"".join(kept)
    check_index_matches_rescan(mbox, cache)
    assert list(cache.glob("*.expunge*")) == []


def test_expunge_nothing_changes_nothing(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 3)
    before = os.stat(mbox)
    with open_mailbox(mbox, cache) as box:
        box.expunge([])
    assert os.stat(mbox).st_mtime_ns == before.st_mtime_ns


def test_expunge_out_of_range_raises(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 3)
    with open_mailbox(mbox, cache) as box, pytest.raises(IndexError):
        box.expunge([3])


def test_expunge_after_outside_append_raises(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 3)
    with open_mailbox(mbox, cache) as box:
        with mbox.open("ab") as f:
            f.write(make_message(50))
        with pytest.raises(MboxChangedError, match="reopen it"):
            box.expunge([0])
    assert len(scan_file(mbox)) == 4


def test_expunge_progress_reports_bytes(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 6)
    seen: list[int] = []
    with open_mailbox(mbox, cache, chunk_size=64) as box:
        box.expunge([0], progress=seen.append)
    moved = sum(len(m) for m in messages[1:])
    assert seen == sorted(seen)
    assert seen[-1] == moved
    assert len(seen) == -(-moved // 64)


@pytest.mark.parametrize("stop_after", [1, 2, 5])
@pytest.mark.parametrize("chunk_size", [40, 300])
def test_expunge_interrupted_resumes_on_open(
    mbox: Path, cache: Path, stop_after: int, chunk_size: int
) -> None:
    messages = write_mbox(mbox, 12)
    deleted = {0, 4, 5, 10}

    def crash(copied: int) -> None:
        calls.append(copied)
        if len(calls) == stop_after:
            raise SimulatedCrashError

    calls: list[int] = []
    with (
        open_mailbox(mbox, cache, chunk_size) as box,
        pytest.raises(SimulatedCrashError),
    ):
        box.expunge(deleted, progress=crash)
    assert list(cache.glob("*.expunge"))
    with open_mailbox(mbox, cache) as box:
        assert box.report.outcome is Refresh.HIT
        assert len(box.index) == 8
    kept = [m for n, m in enumerate(messages) if n not in deleted]
    assert mbox.read_bytes() == b"".join(kept)
    check_index_matches_rescan(mbox, cache)
    assert list(cache.glob("*.expunge")) == []


def test_expunge_resume_keeps_data_appended_after_crash(
    mbox: Path, cache: Path
) -> None:
    messages = write_mbox(mbox, 8)

    def crash(copied: int) -> None:
        raise SimulatedCrashError

    with (
        open_mailbox(mbox, cache, chunk_size=32) as box,
        pytest.raises(SimulatedCrashError),
    ):
        box.expunge({1, 2}, progress=crash)
    # A writer that ignores our dotlock appends while we are down.
    late = make_message(99)
    with mbox.open("ab") as f:
        f.write(late)
    with open_mailbox(mbox, cache) as box:
        assert len(box.index) == 7
    kept = [m for n, m in enumerate(messages) if n not in {1, 2}]
    assert mbox.read_bytes() == b"".join(kept) + late
    check_index_matches_rescan(mbox, cache)


def test_expunge_resume_rejects_replaced_mbox(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 5)

    def crash(copied: int) -> None:
        raise SimulatedCrashError

    with (
        open_mailbox(mbox, cache, chunk_size=32) as box,
        pytest.raises(SimulatedCrashError),
    ):
        box.expunge({0}, progress=crash)
    replacement = mbox.with_name("ann.new")
    replacement.write_bytes(b"".join(messages))
    replacement.rename(mbox)
    with pytest.raises(MboxError, match="written for another file"):
        open_mailbox(mbox, cache)
    assert list(cache.glob("*.expunge"))
    assert not Path(f"{mbox}.lock").exists()


def test_expunge_resume_rejects_truncated_mbox(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 5)

    def crash(copied: int) -> None:
        raise SimulatedCrashError

    with (
        open_mailbox(mbox, cache, chunk_size=32) as box,
        pytest.raises(SimulatedCrashError),
    ):
        box.expunge({0}, progress=crash)
    os.truncate(mbox, 100)
    with pytest.raises(MboxError, match="truncated it after the crash"):
        open_mailbox(mbox, cache)


def test_expunge_resume_without_cache_rebuilds(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 6)

    def crash(copied: int) -> None:
        raise SimulatedCrashError

    with (
        open_mailbox(mbox, cache, chunk_size=32) as box,
        pytest.raises(SimulatedCrashError),
    ):
        box.expunge({2}, progress=crash)
    cache_path_for(mbox, cache).unlink()
    with open_mailbox(mbox, cache) as box:
        assert box.report.outcome is Refresh.NEW
        assert len(box.index) == 5
    assert mbox.read_bytes() == b"".join(messages[:2] + messages[3:])


def test_journal_lives_beside_cache_not_in_spool(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 4)
    seen: list[list[str]] = []

    def look(copied: int) -> None:
        seen.append(sorted(p.name for p in mbox.parent.iterdir()))
        journal = ExpungeJournal.load(
            cache / (cache_path_for(mbox, cache).name + ".expunge")
        )
        assert journal is not None
        journal.close()

    with open_mailbox(mbox, cache) as box:
        box.expunge({0}, progress=look)
    assert seen == [["ann", "ann.lock"]]


def test_unlocked_mailbox_reads_snapshot(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 3)
    with open_mailbox(mbox, cache) as box:
        box.unlock()
        assert not box.is_locked
        assert not Path(f"{mbox}.lock").exists()
        with mbox.open("ab") as f:
            f.write(make_message(7))
        assert len(box.index) == 3
        octets = b"".join(box.read_message(2))
        assert octets == messages[2].split(b"\n", 1)[1][:-1].replace(b"\n", b"\r\n")


def test_read_last_message_during_partial_append(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 3)
    with open_mailbox(mbox, cache) as box:
        box.unlock()
        with mbox.open("ab") as f:
            # procmail's first write of a delivery: "F" alone.
            f.write(b"F")
        octets = b"".join(box.read_message(2))
        assert octets == messages[2].split(b"\n", 1)[1][:-1].replace(b"\n", b"\r\n")
    assert cache_path_for(mbox, cache).exists()


def test_unlocked_mailbox_rejects_expunge(mbox: Path, cache: Path) -> None:
    write_mbox(mbox, 3)
    with open_mailbox(mbox, cache) as box:
        box.unlock()
        with pytest.raises(MboxError, match="call relock"):
            box.expunge([0])


def test_relock_after_append_keeps_numbers(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 4)
    late = make_message(9)
    with open_mailbox(mbox, cache) as box:
        box.unlock()
        with mbox.open("ab") as f:
            f.write(late)
        report = box.relock()
        assert report.outcome is Refresh.APPEND
        assert box.is_locked
        assert len(box.index) == 5
        box.expunge([1])
    assert mbox.read_bytes() == b"".join([messages[0], *messages[2:], late])
    check_index_matches_rescan(mbox, cache)


def test_relock_after_rewrite_maps_by_uidl(mbox: Path, cache: Path) -> None:
    messages = write_mbox(mbox, 4)
    with open_mailbox(mbox, cache) as box:
        target = box.index.uidl(2)
        box.unlock()
        # Another program removes message 0 without our lock.
        mbox.write_bytes(b"".join(messages[1:]))
        assert box.relock().outcome is Refresh.REBUILD
        numbers = box.numbers_for_uidls([target])
        assert numbers == [1]
        box.expunge(numbers)
    assert mbox.read_bytes() == messages[1] + messages[3]
