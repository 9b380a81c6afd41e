"""Per-user maildrops for the POP3 server: an mbox snapshot behind ``Maildrop``.

``MaildropStore.open(user)`` claims the maildrop for one session, takes
the mbox lock, loads or refreshes the index, and releases the lock again:
the session works on that snapshot, so mail delivered meanwhile is
neither shown nor touched. RFC 1939 section 4 asks only that messages
are not changed or removed before the UPDATE state; the snapshot keeps
that without blocking delivery for the whole session. ``expunge`` takes the
lock once more and maps the session's deletions by UIDL onto the current
index. It removes them in place and updates the index cache without a
rescan. Closing without ``expunge`` removes nothing.

A maildrop is claimed twice over: in an in-process registry, and with an
``flock`` on a ``.pop3`` file beside the index cache, so two server
processes sharing a cache directory also exclude each other.

Every method blocks on file I/O; the asyncio server calls them in a
worker thread.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import threading
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

from spoolgate.errors import MaildropInUseError, MboxError
from spoolgate.mbox.cache import RefreshReport, cache_path_for
from spoolgate.mbox.index import UIDL_DIGEST_BYTES, MboxIndex, split_uidl_column
from spoolgate.mbox.store import Mailbox
from spoolgate.pop3.config import MaildropConfig

__all__ = ["MaildropStore", "MboxMaildrop"]

log = logging.getLogger(__name__)


class _Claim:
    """One session's hold on a maildrop: a registry entry and a file lock."""

    __slots__ = ("_fd", "_key", "_registry")

    def __init__(self, registry: _Registry, key: str, fd: int) -> None:
        self._registry = registry
        self._key = key
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1
            self._registry.discard(self._key)


class _Registry:
    """The maildrops this process has open, keyed by absolute mbox path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[str] = set()

    def claim(self, mbox: Path, cache_dir: Path) -> _Claim:
        key = os.path.abspath(mbox)
        with self._lock:
            if key in self._open:
                raise MaildropInUseError(f"maildrop {mbox} is open in another session")
            self._open.add(key)
        try:
            fd = _lock_session_file(_session_path(mbox, cache_dir), mbox)
        except BaseException:
            self.discard(key)
            raise
        return _Claim(self, key, fd)

    def discard(self, key: str) -> None:
        with self._lock:
            self._open.discard(key)


def _session_path(mbox: Path, cache_dir: Path) -> Path:
    cache = cache_path_for(mbox, cache_dir)
    return cache.with_name(cache.name + ".pop3")


def _lock_session_file(path: Path, mbox: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise MboxError(
            f"cannot open session lock file {path} for {mbox}: {exc.strerror}; "
            "check that the cache directory is writable by the server"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise MaildropInUseError(
                f"maildrop {mbox} is open in another server process "
                f"(session lock {path} is held)"
            ) from exc
        raise MboxError(f"cannot lock session file {path}: {exc.strerror}") from exc
    return fd


class MaildropStore:
    """Opens users' maildrops from the templates of a ``MaildropConfig``."""

    def __init__(self, config: MaildropConfig) -> None:
        self._config = config
        self._registry = _Registry()

    @property
    def config(self) -> MaildropConfig:
        """The templates and lock settings in use."""
        return self._config

    def reconfigure(self, config: MaildropConfig) -> None:
        """Use new templates for later opens; open maildrops keep theirs."""
        self._config = config

    def open(self, user: str) -> MboxMaildrop:
        """Claim and snapshot ``user``'s maildrop; the mbox lock is released.

        A missing mbox is an empty maildrop. Raises MaildropInUseError,
        LockTimeoutError, LockError or MboxError; nothing stays claimed
        when it raises.
        """
        config = self._config
        mbox, cache_dir = config.mbox_path(user), config.cache_dir(user)
        _make_cache_dir(cache_dir)
        claim = self._registry.claim(mbox, cache_dir)
        try:
            box = _open_snapshot(mbox, cache_dir, config)
        except BaseException:
            claim.release()
            raise
        return MboxMaildrop(mbox, box, claim)


def _make_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise MboxError(
            f"cannot create index cache directory {cache_dir}: {exc.strerror}; "
            "check maildrop.cache in the config and the server's permissions"
        ) from exc


def _open_snapshot(
    mbox: Path, cache_dir: Path, config: MaildropConfig
) -> Mailbox | None:
    try:
        mode = mbox.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MboxError(f"cannot open mbox {mbox}: {exc.strerror}") from exc
    # The lock and index code open with O_NOFOLLOW too; this check only
    # gives the clearer message, and the open closes the race after it.
    if stat.S_ISLNK(mode):
        raise MboxError(
            f"cannot open mbox {mbox}: it is a symbolic link, which could lead "
            "to another user's mail; replace it with the mbox file itself"
        )
    if not stat.S_ISREG(mode):
        raise MboxError(f"cannot open mbox {mbox}: not a regular file")
    box = Mailbox.open(
        mbox, cache_dir, lock_settings=config.locking, variant=config.variant
    )
    try:
        box.unlock()
    except BaseException:
        box.close()
        raise
    return box


class MboxMaildrop:
    """One session's snapshot of an mbox, numbered as POP3 msgnos.

    Hidden messages get no msgno. Implements ``spoolgate.pop3.Maildrop``.
    Reads and ``close`` may come from different worker threads, one at a
    time per message, so a lock orders them.
    """

    def __init__(self, path: Path, box: Mailbox | None, claim: _Claim) -> None:
        self.path = path
        self._box = box
        self._claim = claim
        self._lock = threading.Lock()
        self.report: RefreshReport | None = None if box is None else box.report
        # Columns copied from the index, so that a refresh by ``expunge``
        # cannot change the snapshot. UIDL strings are made on first use,
        # because a session that only runs STAT or RETR never needs them.
        self._numbers: Sequence[int] = range(0)
        self._sizes: Sequence[int] = array("Q")
        self._uidl_column = b""
        self._uidls: list[str] | None = None
        if box is not None:
            self._take_snapshot(box.index)

    def _take_snapshot(self, index: MboxIndex) -> None:
        numbers = index.visible_numbers()
        sizes = index.size_column()
        column = index.uidl_column()
        if not isinstance(numbers, range):
            sizes = array("Q", [sizes[n] for n in numbers])
            width = UIDL_DIGEST_BYTES
            column = b"".join(column[n * width : (n + 1) * width] for n in numbers)
        self._numbers, self._sizes, self._uidl_column = numbers, sizes, column

    def count(self) -> int:
        """Return the number of visible messages in the snapshot."""
        return len(self._numbers)

    def size(self, msgno: int) -> int:
        """Return the octets RETR sends for ``msgno``, before byte-stuffing."""
        return self._sizes[msgno - 1]

    def uidl(self, msgno: int) -> str:
        """Return the UIDL of ``msgno``."""
        if self._uidls is not None:
            return self._uidls[msgno - 1]
        start = (msgno - 1) * UIDL_DIGEST_BYTES
        return self._uidl_column[start : start + UIDL_DIGEST_BYTES].hex()

    def all_sizes(self) -> Sequence[int]:
        """Return every visible message's size; item 0 is msgno 1."""
        return self._sizes

    def all_uidls(self) -> Sequence[str]:
        """Return every visible message's UIDL; item 0 is msgno 1."""
        if self._uidls is None:
            self._uidls = split_uidl_column(self._uidl_column)
        return self._uidls

    def open_message(
        self, msgno: int, max_bytes: int
    ) -> tuple[Iterator[bytes], bytes, bool]:
        """Open ``msgno`` and read its first ``max_bytes`` or more POP3 octets.

        Returns the chunk iterator for later ``read_chunk`` calls, the
        octets read and whether they are the whole message. Reading the
        start here saves a worker-thread call, and most messages fit in
        one read. Checks the message's offsets first, so a changed mbox
        raises MboxChangedError before anything is sent.
        """
        with self._lock:
            box = self._require_box()
            chunks = box.read_message(self._numbers[msgno - 1])
            data, ended = _read_joined(chunks, max_bytes)
            return chunks, data, ended

    def read_whole(self, msgno: int, max_bytes: int) -> bytes | None:
        """Read all of ``msgno`` if its POP3 octets fit in ``max_bytes``.

        Returns None for a larger message. Runs the same offset checks as
        ``open_message``, so a changed mbox raises MboxChangedError.
        """
        with self._lock:
            box = self._require_box()
            if self._sizes[msgno - 1] > max_bytes:
                return None
            data, ended = _read_joined(
                box.read_message(self._numbers[msgno - 1]), max_bytes
            )
            return data if ended else None

    def read_chunk(self, chunks: Iterator[bytes], max_bytes: int) -> tuple[bytes, bool]:
        """Return ``max_bytes`` or more from ``chunks``, and whether it ended.

        Chunks are joined so one worker-thread call moves a useful amount
        of data. After the end, returns ``(b"", True)``.
        """
        with self._lock:
            self._require_box()
            return _read_joined(chunks, max_bytes)

    def expunge(self, msgnos: tuple[int, ...]) -> int:
        """Remove these messages from the mbox under its lock; return how many.

        Messages are found by UIDL in the current index, so mail appended
        since the snapshot stays and a rebuilt index still maps right. A
        message already gone (removed by another program) is skipped.
        """
        with self._lock:
            box = self._require_box()
            all_uidls = self.all_uidls()
            uidls = [all_uidls[msgno - 1] for msgno in msgnos]
            report = box.relock()
            numbers = box.numbers_for_uidls(uidls)
            if len(numbers) != len(uidls):
                log.warning(
                    "expunge found fewer messages than deleted mbox=%s "
                    "deleted=%d found=%d refresh=%s",
                    self.path,
                    len(uidls),
                    len(numbers),
                    report.outcome.value,
                )
            box.expunge(numbers)
            box.unlock()
            return len(numbers)

    def _require_box(self) -> Mailbox:
        if self._box is None:
            raise MboxError(f"maildrop {self.path} is empty or closed")
        return self._box

    def close(self) -> None:
        """Close the mbox and release the claim; deletes nothing."""
        with self._lock:
            if self._box is not None:
                self._box.close()
                self._box = None
            self._claim.release()


def _read_joined(chunks: Iterator[bytes], max_bytes: int) -> tuple[bytes, bool]:
    parts: list[bytes] = []
    size = 0
    while size < max_bytes:
        chunk = next(chunks, None)
        if chunk is None:
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), False
