"""Lock an mbox the way delivery agents do: dotlock, fcntl and flock.

Theory of operation
-------------------
A lock set is an ordered tuple of methods, by default ``dotlock`` then
``fcntl``. procmail (Debian 12 package 3.22-27) uses that order for every
delivery: ``procmail -v`` prints "Locking strategies: dotlocking, fcntl()",
and strace shows link() of ``MBOX.lock`` before ``fcntl(F_SETLKW)``. It is
also the default ``mbox_write_locks`` of Dovecot 2.3. Each method is tried without
blocking. When one is busy, every method already taken is released in
reverse order and the whole set is tried again after a short backoff, until
``timeout_s`` has passed. Because we never wait while holding part of the
set, a program that takes the same locks in another order (Postfix's
``mailbox_delivery_lock = fcntl, dotlock``) can delay us but never
deadlock with us.

The methods, keyed by name in ``LOCK_METHODS``:

* ``dotlock``: the file ``MBOX.lock``, created NFS-safely as procmail and
  liblockfile do it. A unique temp file in the spool directory is linked
  to the lock name. link() is atomic on NFS too, but its reply can be lost
  and the retransmitted call then fails with EEXIST although it succeeded,
  so the link count of the temp file decides. A dotlock whose mtime is
  older than ``dotlock_stale_s`` is taken to be left over by a crashed
  holder and removed, and so is a dotlock of ours (it contains
  "PID HOSTNAME") whose process no longer exists on this host. The holder
  refreshes its mtime every
  ``dotlock_refresh_s`` from a background thread, so a long expunge is not
  mistaken for a crash.
* ``fcntl``: a POSIX record lock on the whole file, exclusive. On Linux we
  use open file description locks (F_OFD_SETLK), which conflict with the
  classic F_SETLK locks other programs take but are not dropped when this
  process closes some other descriptor of the same file. A classic lock
  would be released silently by any close() of the mbox anywhere in the
  process, for example by a scanner that opens the file by path.
* ``flock``: a BSD flock(2) lock, exclusive. Since Linux 2.6.12 an NFS
  client emulates it with a whole-file fcntl lock (flock(2)), so on NFS it
  adds nothing to ``fcntl`` and interacts with it; list only one there.

The mbox file descriptor a lock opens (read-write) is the one callers read
and write through while they hold the lock.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from spoolgate.config import ConfigReader
from spoolgate.errors import LockError, LockTimeoutError, MboxError

log = logging.getLogger(__name__)


class LockKind(enum.Enum):
    """One way of locking an mbox; the value is its name in the config."""

    DOTLOCK = "dotlock"
    FCNTL = "fcntl"
    FLOCK = "flock"


# The defaults, and where each number comes from:
# - 300 s stale age: liblockfile's lockfile_create(3) treats a dotlock older
#   than 5 minutes as stale and recommends that holders touch it about every minute
#   (hence 60 s refresh). procmail waits longer (LOCKTIMEOUT, 1024 s) and
#   Dovecot 2.3 shorter (mbox_dotlock_change_timeout, 2 min).
# - 30 s total wait: a POP3 client is waiting on the other end; Dovecot
#   waits up to 5 min (mbox_lock_timeout) but serves IMAP sessions that can
#   afford it. A timeout is a temporary failure, so callers reply "try
#   again later".
DEFAULT_ORDER = (LockKind.DOTLOCK, LockKind.FCNTL)
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_DOTLOCK_STALE_S = 300.0
DEFAULT_DOTLOCK_REFRESH_S = 60.0
_RETRY_FIRST_S = 0.01
_RETRY_MAX_S = 0.5


@dataclass(frozen=True, slots=True)
class LockHints:
    """Settings that lock errors tell the user to change, in the caller's terms.

    The defaults name the ``[locking]`` keys of a config file, for
    ``spoolgate pop3d``. A command line tool passes hints that name its own
    options instead. A hint of None is left out of the message.

    Attributes:
        timeout: the wait setting, formatted with ``timeout_s``.
        dotlock_stale: the setting of the age after which a dotlock is stale.
        dotlock_denied: how to go on when no dotlock can be created.
        no_write_access: how to go on when the mbox cannot be opened
            read-write.
    """

    timeout: str | None = "see locking.timeout_s = {timeout_s:g}"
    dotlock_stale: str | None = "locking.dotlock_stale_s"
    dotlock_denied: str = (
        "set locking.dotlock_optional = true to rely on the other locks"
    )
    no_write_access: str | None = None


@dataclass(frozen=True, slots=True)
class LockSettings:
    """Lock set for an mbox: the methods, their order and the wait bounds.

    Attributes:
        order: lock methods in the order they are taken.
        timeout_s: total time to keep trying the whole set.
        dotlock_stale_s: age (seconds since its mtime) after which someone
            else's dotlock is removed as left over by a crash.
        dotlock_refresh_s: how often a held dotlock's mtime is refreshed.
        dotlock_optional: if true, a dotlock that cannot be created because
            the spool directory is not writable by us is skipped with a
            warning, and the other locks still protect the mbox.
        hints: the settings that error messages tell the user to change.
    """

    order: tuple[LockKind, ...] = DEFAULT_ORDER
    timeout_s: float = DEFAULT_TIMEOUT_S
    dotlock_stale_s: float = DEFAULT_DOTLOCK_STALE_S
    dotlock_refresh_s: float = DEFAULT_DOTLOCK_REFRESH_S
    dotlock_optional: bool = False
    hints: LockHints = LockHints()

    @classmethod
    def from_config(cls, reader: ConfigReader) -> LockSettings:
        """Read the ``[locking]`` table; errors are collected in ``reader``."""
        names = reader.get_str_list("order", [k.value for k in DEFAULT_ORDER])
        order = _parse_order(reader, names)
        stale_s = reader.get_float("dotlock_stale_s", DEFAULT_DOTLOCK_STALE_S, min=1.0)
        refresh_s = reader.get_float(
            "dotlock_refresh_s", DEFAULT_DOTLOCK_REFRESH_S, min=0.1
        )
        if refresh_s >= stale_s:
            reader.error(
                "dotlock_refresh_s",
                refresh_s,
                f"must be less than dotlock_stale_s ({stale_s:g}), or other "
                "programs break our dotlock while we hold it",
            )
        return cls(
            order=order,
            timeout_s=reader.get_float("timeout_s", DEFAULT_TIMEOUT_S, min=0.0),
            dotlock_stale_s=stale_s,
            dotlock_refresh_s=refresh_s,
            dotlock_optional=reader.get_bool("dotlock_optional", False),
        )


def _parse_order(reader: ConfigReader, names: tuple[str, ...]) -> tuple[LockKind, ...]:
    allowed = ", ".join(k.value for k in LockKind)
    if not names:
        reader.error("order", list(names), f"must name at least one of {allowed}")
        return DEFAULT_ORDER
    kinds: list[LockKind] = []
    for name in names:
        try:
            kind = LockKind(name)
        except ValueError:
            reader.error("order", list(names), f"unknown lock {name!r}: use {allowed}")
            return DEFAULT_ORDER
        if kind in kinds:
            reader.error("order", list(names), f"{name!r} is listed twice")
            return DEFAULT_ORDER
        kinds.append(kind)
    return tuple(kinds)


@dataclass(frozen=True, slots=True)
class Busy:
    """Reason one lock method could not be taken on this try."""

    kind: LockKind
    holder: str
    dotlock_age_s: float | None = None


class LockMethod(Protocol):
    """One lock of a set, bound to one mbox; table entries build these."""

    @property
    def is_held(self) -> bool:
        """Whether the lock is held; false after a skipped optional dotlock."""
        ...

    def try_acquire(self) -> Busy | None:
        """Take the lock without blocking; return None if taken, else why not.

        Raises LockError when the lock cannot be taken at all (permissions).
        """
        ...

    def release(self) -> None:
        """Release the lock; call only after try_acquire returned None."""
        ...


@dataclass(frozen=True, slots=True)
class _Target:
    path: Path
    fd: int
    settings: LockSettings


# struct flock on Linux: l_type and l_whence (short), l_start and l_len
# (off_t, 64-bit in CPython builds), l_pid (pid_t), padded to 32 bytes.
_FLOCK_STRUCT = struct.Struct("hhqqi4x")


class _FcntlLock:
    is_held = True

    def __init__(self, target: _Target) -> None:
        self._fd = target.fd
        self._path = target.path

    def try_acquire(self) -> Busy | None:
        if not hasattr(fcntl, "F_OFD_SETLK"):
            return self._try_classic()
        request = _FLOCK_STRUCT.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, request)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise _lock_failed(self._path, LockKind.FCNTL, exc) from exc
            return Busy(LockKind.FCNTL, self._holder())
        return None

    def _try_classic(self) -> Busy | None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise _lock_failed(self._path, LockKind.FCNTL, exc) from exc
            return Busy(LockKind.FCNTL, "another process")
        return None

    def _holder(self) -> str:
        """Name the process holding a conflicting lock, as reported by the kernel."""
        probe = _FLOCK_STRUCT.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            reply = fcntl.fcntl(self._fd, fcntl.F_OFD_GETLK, probe)
        except OSError:
            return "another process"
        pid = _FLOCK_STRUCT.unpack(reply)[4]
        # Open file description locks report pid -1: the holder is unknown.
        return f"pid {pid}" if pid > 0 else "another process"

    def release(self) -> None:
        if not hasattr(fcntl, "F_OFD_SETLK"):
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            return
        request = _FLOCK_STRUCT.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0)
        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, request)


class _FlockLock:
    is_held = True

    def __init__(self, target: _Target) -> None:
        self._fd = target.fd
        self._path = target.path

    def try_acquire(self) -> Busy | None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise _lock_failed(self._path, LockKind.FLOCK, exc) from exc
            return Busy(LockKind.FLOCK, "another process")
        return None

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class _Dotlock:
    """``MBOX.lock`` made with link(), refreshed while held.

    The holder keeps a descriptor of the lock file open. That pins its inode
    number, so comparing inode numbers distinguishes our lock from one another
    program made after removing ours (a freed inode number is reused at
    once on ext4 and tmpfs).
    """

    def __init__(self, target: _Target) -> None:
        self._path = target.path
        self._settings = target.settings
        self.lock_path = Path(f"{target.path}.lock")
        self._fd = -1
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def try_acquire(self) -> Busy | None:
        created = self._create_temp()
        if created is None:
            return None
        temp, fd = created
        try:
            linked = self._link(temp)
        except BaseException:
            os.close(fd)
            raise
        finally:
            _unlink_quietly(temp)
        if not linked:
            os.close(fd)
            return self._busy_or_break()
        self._fd = fd
        self._start_refresher()
        return None

    def _create_temp(self) -> tuple[Path, int] | None:
        """Create the unique temp file; None if skipped as not writable."""
        host = socket.gethostname().replace("/", "_")
        name = f".{self._path.name}.{host}.{os.getpid()}.{secrets.token_hex(4)}"
        temp = self._path.parent / name
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except OSError as exc:
            if exc.errno not in _NOT_WRITABLE:
                raise _lock_failed(self._path, LockKind.DOTLOCK, exc) from exc
            if not self._settings.dotlock_optional:
                raise _dotlock_denied(self._path, self._settings, exc) from exc
            log.warning(
                "dotlock skipped mbox=%s dir=%s error=%s setting=%s",
                self._path,
                self._path.parent,
                exc.strerror,
                "locking.dotlock_optional",
            )
            return None
        try:
            os.write(fd, _owner_line())
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(temp)
            raise _lock_failed(self._path, LockKind.DOTLOCK, exc) from exc
        return temp, fd

    def _link(self, temp: Path) -> bool:
        try:
            os.link(temp, self.lock_path)
        except FileExistsError:
            # NFS: a retransmitted link() that already succeeded fails with
            # EEXIST; the temp file's link count of 2 shows it did.
            return os.lstat(temp).st_nlink == 2
        except OSError as exc:
            if exc.errno in _NOT_WRITABLE:
                raise _dotlock_denied(self._path, self._settings, exc) from exc
            raise _lock_failed(self._path, LockKind.DOTLOCK, exc) from exc
        return True

    def _busy_or_break(self) -> Busy | None:
        try:
            st = os.lstat(self.lock_path)
        except FileNotFoundError:
            return Busy(LockKind.DOTLOCK, f"{self.lock_path} (just removed)")
        age_s = time.time() - st.st_mtime
        holder = f"dotlock {self.lock_path}"
        dead_owner = self._is_dead_local_owner()
        if age_s < self._settings.dotlock_stale_s and not dead_owner:
            return Busy(LockKind.DOTLOCK, holder, age_s)
        self._break_stale(st, age_s, "holder died" if dead_owner else "too old")
        return Busy(LockKind.DOTLOCK, f"{holder} (stale, removed)", age_s)

    def _is_dead_local_owner(self) -> bool:
        """Check whether the dotlock is one of ours whose process is gone.

        Our dotlocks contain "PID HOSTNAME". A process id is only meaningful
        on its own host, so locks of other hosts (NFS) and of other programs
        wait for the stale age. A reused pid makes a dead holder look alive,
        which only delays us.
        """
        try:
            with open(self.lock_path, "rb") as lock_file:
                content = lock_file.read(300)
        except OSError:
            return False
        fields = content.split()
        if len(fields) != 2 or not fields[0].isdigit():
            return False
        if fields[1] != socket.gethostname().encode(errors="replace"):
            return False
        try:
            os.kill(int(fields[0]), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def _break_stale(self, seen: os.stat_result, age_s: float, why: str) -> None:
        # Compare again right before unlinking so that a fresh lock made by
        # someone who broke the stale one first is left alone. The window
        # between this lstat and the unlink is microseconds; two breakers
        # must both have judged the same lock stale within it.
        try:
            now = os.lstat(self.lock_path)
            if (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
                return
            os.unlink(self.lock_path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _lock_failed(self._path, LockKind.DOTLOCK, exc) from exc
        log.warning(
            "stale dotlock removed lock=%s reason=%s age_s=%.0f stale_s=%g",
            self.lock_path,
            why,
            age_s,
            self._settings.dotlock_stale_s,
        )

    def _start_refresher(self) -> None:
        self._stop.clear()
        self._refresher = threading.Thread(
            target=self._refresh_loop, name=f"dotlock-refresh {self._path}", daemon=True
        )
        self._refresher.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._settings.dotlock_refresh_s):
            self.refresh()

    @property
    def is_held(self) -> bool:
        return self._fd >= 0

    def _is_ours(self) -> bool:
        try:
            return os.lstat(self.lock_path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return False

    def refresh(self) -> None:
        """Touch the dotlock so others do not judge it stale."""
        if self._fd < 0:
            return
        try:
            if self._is_ours():
                os.utime(self._fd)
                return
            problem = "another program removed or replaced it"
        except OSError as exc:
            problem = f"refreshing it failed: {exc.strerror}"
        stale_setting = self._settings.hints.dotlock_stale
        fix = f"; raise {stale_setting} if that program broke it as stale"
        log.error(
            "dotlock lost lock=%s: %s%s",
            self.lock_path,
            problem,
            fix if stale_setting else "",
        )

    def release(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        if self._fd < 0:
            return
        try:
            if self._is_ours():
                os.unlink(self.lock_path)
            else:
                log.error("dotlock lost lock=%s: not ours at release", self.lock_path)
        finally:
            os.close(self._fd)
            self._fd = -1


LockFactory = Callable[[_Target], LockMethod]

LOCK_METHODS: dict[LockKind, LockFactory] = {
    LockKind.DOTLOCK: _Dotlock,
    LockKind.FCNTL: _FcntlLock,
    LockKind.FLOCK: _FlockLock,
}


@dataclass(slots=True)
class MboxLock:
    """A held lock set on one mbox and the read-write descriptor it opened.

    Read and write the mbox through ``fd`` while the lock is held; do not
    close it. ``release()`` releases the locks in reverse order and closes
    ``fd``. Not safe to share between threads.
    """

    path: Path
    fd: int
    settings: LockSettings
    held: list[tuple[LockKind, LockMethod]] = field(default_factory=list)
    waited_s: float = 0.0

    @property
    def kinds(self) -> tuple[LockKind, ...]:
        """The lock methods held, in the order taken."""
        return tuple(kind for kind, _ in self.held)

    def refresh(self) -> None:
        """Touch the dotlock now; long operations call this between steps."""
        for _, method in self.held:
            if isinstance(method, _Dotlock):
                method.refresh()

    def release(self) -> None:
        """Release every lock in reverse order, then close the descriptor."""
        _release_all(self.path, self.held)
        self.held = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        log.debug("mbox unlocked mbox=%s", self.path)


def _release_all(path: Path, held: list[tuple[LockKind, LockMethod]]) -> None:
    # Keep releasing after a failure: a lock left behind blocks delivery.
    for kind, method in reversed(held):
        try:
            method.release()
        except OSError as exc:
            log.error("unlock failed mbox=%s lock=%s error=%s", path, kind.value, exc)


def acquire(
    path: Path,
    settings: LockSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MboxLock:
    """Open ``path`` read-write and take the lock set; blocks up to timeout_s.

    Raises LockTimeoutError if the set could not be taken in time,
    LockError if it cannot be taken at all, MboxError if the mbox cannot
    be opened. Nothing stays locked or open when it raises.
    """
    fd = _open_mbox(path, settings.hints)
    started = clock()
    delay = _RETRY_FIRST_S
    try:
        while True:
            result = _try_once(path, fd, settings)
            if isinstance(result, MboxLock):
                result.waited_s = clock() - started
                log.debug("mbox locked mbox=%s waited_s=%.3f", path, result.waited_s)
                return result
            waited = clock() - started
            if waited >= settings.timeout_s:
                raise _timeout(path, settings, result, waited)
            sleep(min(delay, settings.timeout_s - waited))
            delay = min(delay * 2, _RETRY_MAX_S)
    except BaseException:
        os.close(fd)
        raise


def _try_once(path: Path, fd: int, settings: LockSettings) -> MboxLock | Busy:
    """Try the whole set once; on a busy step release what was taken."""
    target = _Target(path, fd, settings)
    held: list[tuple[LockKind, LockMethod]] = []
    try:
        for kind in settings.order:
            method = LOCK_METHODS[kind](target)
            busy = method.try_acquire()
            if busy is not None:
                _release_all(path, held)
                return busy
            if method.is_held:
                held.append((kind, method))
        if not _is_same_file(path, fd):
            _release_all(path, held)
            return Busy(settings.order[-1], f"{path} was replaced while locking")
    except BaseException:
        _release_all(path, held)
        raise
    return MboxLock(path, fd, settings, held)


def _is_same_file(path: Path, fd: int) -> bool:
    """Check that ``path`` still names the file we opened and locked."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


@contextmanager
def lock_mbox(
    path: Path,
    settings: LockSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[MboxLock]:
    """Hold the lock set on ``path`` for the ``with`` block; see ``acquire``."""
    lock = acquire(path, settings, clock=clock, sleep=sleep)
    try:
        yield lock
    finally:
        lock.release()


def _open_mbox(path: Path, hints: LockHints) -> int:
    try:
        # O_NOFOLLOW: a link in a shared spool could lead to another user's mbox.
        return os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise MboxError(f"cannot lock {path}: mbox not found") from exc
    except IsADirectoryError as exc:
        raise MboxError(
            f"cannot lock {path}: it is a directory; give the path of an mbox file"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MboxError(
                f"cannot lock {path}: it is a symbolic link; replace it with "
                "the mbox file itself"
            ) from exc
        fix = f"; {hints.no_write_access}" if hints.no_write_access else ""
        raise MboxError(
            f"cannot lock {path}: opening it read-write failed: {exc.strerror}; "
            f"fcntl and flock locks and expunge need write access to the mbox{fix}"
        ) from exc


def _timeout(
    path: Path, settings: LockSettings, busy: Busy, waited_s: float
) -> LockTimeoutError:
    hints = settings.hints
    if busy.dotlock_age_s is not None:
        stale = f"stale after {settings.dotlock_stale_s:g} s"
        if hints.dotlock_stale:
            stale += f"; see {hints.dotlock_stale}"
        detail = f"{busy.holder} held for {busy.dotlock_age_s:.0f} s ({stale})"
    else:
        detail = f"{busy.kind.value} lock held by {busy.holder}"
    timeout = ""
    if hints.timeout:
        timeout = f" ({hints.timeout.format(timeout_s=settings.timeout_s)})"
    return LockTimeoutError(
        f"cannot lock {path}: {detail}; timed out after {waited_s:.1f} s{timeout}"
    )


def _lock_failed(path: Path, kind: LockKind, exc: OSError) -> LockError:
    return LockError(f"cannot lock {path}: {kind.value} lock failed: {exc}")


def _dotlock_denied(path: Path, settings: LockSettings, exc: OSError) -> LockError:
    directory = path.parent
    return LockError(
        f"cannot lock {path}: creating a dotlock in {directory} failed: "
        f"{exc.strerror}; let spoolgate write there (Debian: run it with group "
        f"mail, since {directory} is usually mode 2775 root:mail) or "
        f"{settings.hints.dotlock_denied}"
    )


def _owner_line() -> bytes:
    return f"{os.getpid()} {socket.gethostname()}\n".encode(errors="replace")


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
