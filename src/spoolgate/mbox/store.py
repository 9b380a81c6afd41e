"""An mbox opened under its lock: read messages, expunge crash-safely.

``Mailbox.open`` takes the lock set (``spoolgate.mbox.lock``), finishes an
expunge a crash interrupted, and loads or refreshes the index. While the
lock is held, ``expunge`` deletes messages in place.

Expunge and its crash invariant
-------------------------------
The kept bytes after the first deleted message move down over the gaps
(``journal.plan_moves``), in chunks, front to back, then the file is
truncated. The mbox is never copied elsewhere, because the spool directory
may not be writable and delivery agents may hold the file open. Before the
first write the plan is durable in the journal, beside the index cache.

Each chunk copies ``length`` bytes from ``source + k`` down to
``destination + k`` of one move. Copying front to back keeps this true:
every byte at or after the chunk's source offset is still the original
byte, and every byte below its destination is final. A chunk is written
only after one of:

(a) ``length <= source - destination``: the write ends at or before the
    chunk's own source, so the source stays intact while it is written, or
(b) a copy of the chunk's source bytes is durable in the journal.

After the chunk's bytes are synced, the journal records the new count of
copied bytes (fsync) before the next chunk is read. So at a crash at most
one chunk is partly written, and its bytes are still available: in the
file (case a) or in the journal (case b). Redoing it writes the same bytes
again, which is idempotent. No message is lost or duplicated in the
result.

Between the crash and the resume the file contains some bytes twice, as every
in-place rewrite does. The dead process's dotlock keeps procmail and other
dotlock users away until the next ``Mailbox.open`` on this host (which
removes a dotlock of its own dead process at once) or until the lock is
stale for them.

NOTE: the journal is local to the host that ran the expunge. With several
hosts serving one NFS spool, an expunge interrupted on one host must be
resumed there (any open of that mbox does it) before another host changes
the mbox, or the resume may write an old plan over newer data. The resume
rejects a replaced or shrunk file but cannot detect every such change.

Data appended after a crash by a program that ignores our dotlock lands at
the pre-expunge end of the file, which the moves never write. The resume
moves it down as one more move (``ExpungeState.tail_length``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

from spoolgate.errors import IndexFormatError, MboxChangedError, MboxError
from spoolgate.mbox.cache import (
    RefreshReport,
    cache_path_for,
    load_cache,
    open_index,
    save_index,
)
from spoolgate.mbox.index import FileIdentity, MboxIndex, Variant
from spoolgate.mbox.journal import (
    ExpungeJournal,
    ExpungePlan,
    Move,
    Phase,
    plan_moves,
)
from spoolgate.mbox.lock import LockSettings, MboxLock, acquire
from spoolgate.mbox.scan import read_message

__all__ = ["DEFAULT_CHUNK_SIZE", "Mailbox"]

log = logging.getLogger(__name__)

# Bytes per copy step of an expunge. Each step costs two or three fsyncs,
# so 1 MiB keeps the sync count of a 1 GiB expunge near a thousand.
DEFAULT_CHUNK_SIZE = 1 << 20
_READ_CHUNK = 64 * 1024

ProgressHook = Callable[[int], None]


class Mailbox:
    """One mbox with its index, opened under the mbox lock.

    A POP3 session needs the lock only while it loads the index and while
    it expunges. ``unlock`` releases it and keeps the index as a snapshot
    with the file open for reading. ``relock`` takes the lock again and
    refreshes the index before an expunge. Message numbers are 0-based index numbers, as
    in ``MboxIndex``; the caller maps POP3 msgnos of visible messages.
    Not safe for concurrent use.
    """

    def __init__(
        self,
        lock: MboxLock,
        index: MboxIndex,
        cache_dir: Path,
        report: RefreshReport,
        lock_settings: LockSettings,
        chunk_size: int,
    ) -> None:
        self.path = lock.path
        self.index = index
        self.report = report
        self.cache_dir = cache_dir
        self.cache_path = cache_path_for(lock.path, cache_dir)
        self._lock: MboxLock | None = lock
        # The descriptor reads go through: the lock's, or a duplicate of it
        # kept open while unlocked.
        self._fd = lock.fd
        self._lock_settings = lock_settings
        self._chunk_size = chunk_size

    @classmethod
    def open(
        cls,
        path: Path,
        cache_dir: Path,
        *,
        lock_settings: LockSettings | None = None,
        variant: Variant = Variant.MBOXO,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Mailbox:
        """Lock ``path``, finish an interrupted expunge, load the index.

        Blocks up to the lock timeout. Raises LockTimeoutError,
        LockError, NotAnMboxError or MboxError; nothing stays locked when
        it raises.
        """
        settings = lock_settings or LockSettings()
        lock, index, report = _lock_and_load(path, cache_dir, variant, settings)
        return cls(lock, index, cache_dir, report, settings, chunk_size)

    @property
    def is_locked(self) -> bool:
        """Whether this process holds the mbox lock through this object."""
        return self._lock is not None

    def unlock(self) -> None:
        """Release the lock; the index stays readable as a snapshot.

        ``read_message`` keeps working and still detects a file changed
        by others. Call ``relock`` before ``expunge``.
        """
        if self._lock is None:
            return
        fd = os.dup(self._require_open())
        self._lock.release()
        self._lock = None
        self._fd = fd

    def relock(self) -> RefreshReport:
        """Take the lock again and refresh the index; return the report.

        After an ``APPEND`` refresh the old message numbers still name the
        same messages; after a ``REBUILD`` map them again by UIDL
        (``numbers_for_uidls``). Raises as ``open`` does, and stays
        unlocked if it raises.
        """
        if self._lock is not None:
            return self.report
        lock, index, report = _lock_and_load(
            self.path, self.cache_dir, self.index.variant, self._lock_settings
        )
        if self._fd >= 0:
            os.close(self._fd)
        self._lock, self._fd = lock, lock.fd
        self.index, self.report = index, report
        return report

    def close(self) -> None:
        """Release the lock, if held, and close the mbox."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        elif self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _require_open(self) -> int:
        if self._fd < 0:
            raise MboxError(f"mbox {self.path} is closed")
        return self._fd

    def read_message(self, number: int) -> Iterator[bytes]:
        """Yield message ``number`` as POP3 octets, in chunks.

        Checks first that the recorded offset still starts a From_ line
        and that the message still ends at one (or at the end of the
        file, or at the end of the snapshot, where later deliveries
        append). If not, the file changed under us: the cache is discarded
        so the next open rebuilds it, and MboxChangedError is raised.
        """
        fd = self._require_open()
        offset, length = self.index.offset(number), self.index.length(number)
        end = offset + length
        # Bytes past the scanned length were appended after the snapshot, and
        # a delivery agent may be part way through writing them (procmail
        # writes the "F" of the next From_ line alone), so the end of the
        # snapshot's last message is not checked.
        ends_ok = end >= self.index.scanned_length or _ends_message(fd, end)
        if not _starts_message(fd, offset) or not ends_ok:
            self.cache_path.unlink(missing_ok=True)
            raise MboxChangedError(
                f"cannot read message {number + 1} of {self.path}: offset "
                f"{offset} no longer starts a message (the mbox changed "
                "outside our lock); the index is rebuilt on the next open"
            )
        return read_message(_read_range(fd, offset, length), self.index.variant)

    def numbers_for_uidls(self, uidls: Iterable[str]) -> list[int]:
        """Return the index numbers of the messages with these UIDLs."""
        wanted = set(uidls)
        return [n for n in range(len(self.index)) if self.index.uidl(n) in wanted]

    def expunge(
        self, numbers: Collection[int], *, progress: ProgressHook | None = None
    ) -> None:
        """Delete messages in place and update the index without a rescan.

        The index must describe the file as it is (else MboxChangedError):
        reopen first if the mbox changed. ``progress`` is called with the
        bytes copied after each durable step. On a crash the next
        ``Mailbox.open`` finishes the expunge.
        """
        fd = self._require_open()
        if self._lock is None:
            raise MboxError(f"cannot expunge {self.path}: call relock() first")
        deleted = set(numbers)
        if not deleted:
            return
        self._check_fresh(fd, deleted)
        plan = self._plan(fd, deleted)
        journal = ExpungeJournal.create(_journal_path(self.cache_path), plan)
        started = time.monotonic()
        try:
            run_journal(fd, journal, progress)
        finally:
            journal.close()
        self.index.remove(deleted)
        save_index(self.index, self.path, self.cache_dir)
        journal.remove()
        log.info(
            "expunge done mbox=%s deleted=%d moved_bytes=%d final_size=%d time_s=%.3f",
            self.path,
            len(deleted),
            plan.total,
            plan.final_size,
            time.monotonic() - started,
        )

    def _check_fresh(self, fd: int, deleted: set[int]) -> None:
        count = len(self.index)
        bad = sorted(n for n in deleted if not 0 <= n < count)
        if bad:
            raise IndexError(f"message numbers out of range 0..{count - 1}: {bad[:5]}")
        if _identity(fd) != self.index.identity:
            raise MboxChangedError(
                f"cannot expunge {self.path}: the mbox changed since its index "
                "was loaded; reopen it and map the messages again by UIDL"
            )
        for number in sorted(deleted):
            if not _starts_message(fd, self.index.offset(number)):
                self.cache_path.unlink(missing_ok=True)
                raise MboxChangedError(
                    f"cannot expunge {self.path}: message {number + 1} no longer "
                    "starts at its recorded offset; the index is rebuilt on the "
                    "next open"
                )

    def _plan(self, fd: int, deleted: set[int]) -> ExpungePlan:
        identity = _identity(fd)
        count = len(self.index)
        offsets = [self.index.offset(n) for n in range(count)]
        lengths = [self.index.length(n) for n in range(count)]
        moves, final_size = plan_moves(offsets, lengths, deleted, identity.size)
        return ExpungePlan(
            identity, tuple(sorted(deleted)), moves, final_size, self._chunk_size
        )


def _lock_and_load(
    path: Path, cache_dir: Path, variant: Variant, settings: LockSettings
) -> tuple[MboxLock, MboxIndex, RefreshReport]:
    """Lock ``path``, finish an interrupted expunge and load the index."""
    lock = acquire(path, settings)
    try:
        resume_expunge(lock.fd, path, cache_dir, variant)
        index, report = open_index(path, cache_dir, variant)
    except BaseException:
        lock.release()
        raise
    return lock, index, report


def resume_expunge(fd: int, path: Path, cache_dir: Path, variant: Variant) -> bool:
    """Finish an expunge a crash interrupted; return whether there was one.

    Call with the mbox lock held, before loading the index. Raises
    MboxError, keeping the journal, when the mbox is not the file the
    journal was written for or changed in a way a resume cannot explain.
    """
    cache_path = cache_path_for(path, cache_dir)
    journal = ExpungeJournal.load(_journal_path(cache_path))
    if journal is None:
        return False
    try:
        plan = journal.plan
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (plan.identity.dev, plan.identity.inode):
            raise MboxError(
                f"cannot resume expunge of {path}: journal {journal.path} was "
                "written for another file (device or inode differ); if the mbox "
                "was replaced on purpose, delete the journal"
            )
        log.warning(
            "expunge resume mbox=%s journal=%s phase=%s copied=%d total=%d",
            path,
            journal.path,
            journal.state.phase.name,
            journal.state.copied,
            plan.total,
        )
        run_journal(fd, journal, None)
    finally:
        journal.close()
    _update_cache_after_resume(path, cache_dir, journal, variant)
    journal.remove()
    return True


def run_journal(
    fd: int, journal: ExpungeJournal, progress: ProgressHook | None
) -> None:
    """Run an expunge from the state in ``journal`` to the end."""
    if journal.state.phase is Phase.COPY:
        _adopt_appended_tail(fd, journal)
        _copy_moves(fd, journal, progress)
        journal.advance(Phase.TRUNCATE, journal.state.copied)
    if journal.state.phase is Phase.TRUNCATE:
        _truncate(fd, journal)
        journal.advance(Phase.DONE, journal.state.copied)


def _all_moves(plan: ExpungePlan, tail_length: int) -> list[Move]:
    moves = list(plan.moves)
    if tail_length:
        moves.append(Move(plan.identity.size, plan.final_size, tail_length))
    return moves


def _adopt_appended_tail(fd: int, journal: ExpungeJournal) -> None:
    """Add data appended since the plan (after a crash) as a final move."""
    plan, state = journal.plan, journal.state
    expected = plan.identity.size + state.tail_length
    size = os.fstat(fd).st_size
    if size < expected:
        raise MboxError(
            f"cannot resume expunge from journal {journal.path}: the mbox is "
            f"{size} bytes, expected at least {expected}; another program "
            "truncated it after the crash: check the mbox, then delete the journal"
        )
    if size > expected:
        journal.advance(
            Phase.COPY,
            state.copied,
            tail_length=size - plan.identity.size,
            backup=state.backup,
        )


def _copy_moves(
    fd: int, journal: ExpungeJournal, progress: ProgressHook | None
) -> None:
    """Copy every move down, one durable chunk at a time (see module doc)."""
    moves = _all_moves(journal.plan, journal.state.tail_length)
    total = sum(move.length for move in moves)
    chunk_size = journal.plan.chunk_size
    while journal.state.copied < total:
        copied = journal.state.copied
        move, k = _locate(moves, copied)
        source, destination = move.source + k, move.destination + k
        data = journal.state.backup
        if not data:
            data = _pread_exact(fd, min(chunk_size, move.length - k), source)
            if len(data) > move.gap:
                journal.advance(Phase.COPY, copied, backup=data)
        _pwrite_all(fd, data, destination)
        os.fdatasync(fd)
        journal.advance(Phase.COPY, copied + len(data))
        if progress is not None:
            progress(copied + len(data))


def _locate(moves: list[Move], copied: int) -> tuple[Move, int]:
    """Return the move containing byte ``copied`` of the sequence and the
    position inside it."""
    for move in moves:
        if copied < move.length:
            return move, copied
        copied -= move.length
    raise ValueError("copied count is past the end of the moves")


def _truncate(fd: int, journal: ExpungeJournal) -> None:
    plan, tail = journal.plan, journal.state.tail_length
    final_end = plan.final_size + tail
    size = os.fstat(fd).st_size
    # Either the truncate did not happen yet (size is the pre-expunge end)
    # or it did (size is the final end). Anything else means another program
    # wrote to the mbox after a crash; guessing could destroy its data.
    if size not in (plan.identity.size + tail, final_end):
        raise MboxError(
            f"cannot finish expunge from journal {journal.path}: the mbox is "
            f"{size} bytes, expected {plan.identity.size + tail} or {final_end}; "
            f"its first {final_end} bytes are the expunged mbox: check what "
            "follows, then delete the journal"
        )
    os.ftruncate(fd, final_end)
    os.fsync(fd)


def _update_cache_after_resume(
    path: Path, cache_dir: Path, journal: ExpungeJournal, variant: Variant
) -> None:
    """Apply the expunge to the cached index if it fits; else discard it."""
    plan = journal.plan
    cache_path = cache_path_for(path, cache_dir)
    try:
        index: MboxIndex | None = load_cache(cache_path)
    except (OSError, IndexFormatError):
        index = None
    if (
        index is None
        or index.variant is not variant
        or index.identity != plan.identity
        or journal.state.tail_length
        or max(plan.numbers, default=-1) >= len(index)
    ):
        cache_path.unlink(missing_ok=True)
        return
    index.remove(plan.numbers)
    save_index(index, path, cache_dir)


def _journal_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + ".expunge")


def _identity(fd: int) -> FileIdentity:
    st = os.fstat(fd)
    return FileIdentity(
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    )


_BOM = b"\xef\xbb\xbf"


def _starts_message(fd: int, offset: int) -> bool:
    """Check that a ``From `` line starts at ``offset``, at a line start."""
    if os.pread(fd, 5, offset) != b"From ":
        return offset == 0 and os.pread(fd, 8, 0) == _BOM + b"From "
    if offset == 0:
        return True
    return os.pread(fd, 1, offset - 1) == b"\n" or (
        offset == len(_BOM) and os.pread(fd, 3, 0) == _BOM
    )


def _ends_message(fd: int, end: int) -> bool:
    """Check that ``end`` is the end of the file or starts a From_ line."""
    return os.pread(fd, 1, end) == b"" or _starts_message(fd, end)


def _read_range(fd: int, offset: int, length: int) -> Iterator[bytes]:
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - offset), offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    parts: list[bytes] = []
    done = 0
    while done < length:
        chunk = os.pread(fd, length - done, offset + done)
        if not chunk:
            raise MboxError(
                f"expunge read past the end of the mbox at offset {offset + done}"
            )
        parts.append(chunk)
        done += len(chunk)
    return b"".join(parts)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
