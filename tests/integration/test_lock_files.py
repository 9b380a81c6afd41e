"""Tests for spoolgate.mbox.lock on real files: conflicts, staleness, cleanup."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from spoolgate.errors import LockError, LockTimeoutError, MboxError
from spoolgate.mbox import lock as lockmod
from spoolgate.mbox.lock import LockKind, LockSettings, acquire, lock_mbox

FAST = LockSettings(timeout_s=0.2)


class FakeTime:
    """A monotonic clock that advances only when ``sleep`` is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def mbox(tmp_path: Path) -> Path:
    path = tmp_path / "ann"
    path.write_bytes(b"From a@b Fri Dec  4 16:00:00 2026\n\nhi\n")
    return path


def wait_for(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_lock_default_set_creates_and_removes_dotlock(mbox: Path) -> None:
    dotlock = Path(f"{mbox}.lock")
    with lock_mbox(mbox, FAST) as held:
        assert dotlock.exists()
        assert held.kinds == (LockKind.DOTLOCK, LockKind.FCNTL)
        fd = held.fd
        assert os.pread(fd, 4, 0) == b"From"
    assert not dotlock.exists()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_lock_leaves_no_temp_files(mbox: Path) -> None:
    with lock_mbox(mbox, FAST):
        names = sorted(p.name for p in mbox.parent.iterdir())
    assert names == ["ann", "ann.lock"]
    assert sorted(p.name for p in mbox.parent.iterdir()) == ["ann"]


@pytest.mark.parametrize("kind", list(LockKind))
def test_lock_each_kind_excludes_second_holder(mbox: Path, kind: LockKind) -> None:
    settings = LockSettings(order=(kind,), timeout_s=0.1)
    with lock_mbox(mbox, settings):
        with pytest.raises(LockTimeoutError) as info:
            acquire(mbox, settings)
    assert f"cannot lock {mbox}: " in str(info.value)
    assert "see locking.timeout_s = 0.1" in str(info.value)
    with lock_mbox(mbox, settings) as again:
        assert again.kinds == (kind,)


def test_lock_fcntl_conflicts_with_classic_lockf_in_child(mbox: Path) -> None:
    # A child holds a classic F_SETLK lock, as procmail and Postfix take it.
    code = (
        "import fcntl, sys\n"
        f"f = open({str(mbox)!r}, 'r+')\n"
        "fcntl.lockf(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "locked\n"
        settings = LockSettings(order=(LockKind.FCNTL,), timeout_s=0.1)
        with pytest.raises(LockTimeoutError) as info:
            acquire(mbox, settings)
        assert f"fcntl lock held by pid {child.pid}" in str(info.value)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    with lock_mbox(mbox, LockSettings(order=(LockKind.FCNTL,), timeout_s=1)):
        pass


def test_lock_fresh_dotlock_times_out_with_age(mbox: Path) -> None:
    dotlock = Path(f"{mbox}.lock")
    dotlock.write_bytes(b"")
    past = time.time() - 40
    os.utime(dotlock, (past, past))
    with pytest.raises(LockTimeoutError) as info:
        acquire(mbox, FAST)
    message = str(info.value)
    assert f"dotlock {dotlock} held for 40 s" in message
    assert "(stale after 300 s; see locking.dotlock_stale_s)" in message
    assert dotlock.exists()


def test_lock_stale_dotlock_is_broken(
    mbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dotlock = Path(f"{mbox}.lock")
    dotlock.write_bytes(b"")
    past = time.time() - 301
    os.utime(dotlock, (past, past))
    with caplog.at_level(logging.WARNING), lock_mbox(mbox, FAST):
        assert os.stat(dotlock).st_mtime > past + 200
    assert not dotlock.exists()
    assert "stale dotlock removed" in caplog.text


def test_lock_dotlock_of_dead_local_process_is_broken(mbox: Path) -> None:
    dotlock = Path(f"{mbox}.lock")
    # 999999999 is above Linux's maximum pid (4194304), so no process has it.
    dotlock.write_bytes(f"999999999 {socket.gethostname()}\n".encode())
    with lock_mbox(mbox, FAST):
        assert dotlock.read_bytes().split()[0] == str(os.getpid()).encode()


def test_lock_dotlock_of_other_host_waits(mbox: Path) -> None:
    dotlock = Path(f"{mbox}.lock")
    dotlock.write_bytes(b"999999999 other-host.example\n")
    with pytest.raises(LockTimeoutError):
        acquire(mbox, FAST)
    assert dotlock.exists()


def test_lock_dotlock_of_live_process_waits(mbox: Path) -> None:
    dotlock = Path(f"{mbox}.lock")
    dotlock.write_bytes(f"{os.getpid()} {socket.gethostname()}\n".encode())
    with pytest.raises(LockTimeoutError):
        acquire(mbox, FAST)


def test_lock_stale_age_is_configurable(mbox: Path) -> None:
    dotlock = Path(f"{mbox}.lock")
    dotlock.write_bytes(b"")
    past = time.time() - 20
    os.utime(dotlock, (past, past))
    settings = LockSettings(timeout_s=0.5, dotlock_stale_s=10, dotlock_refresh_s=1)
    with lock_mbox(mbox, settings):
        pass


def test_lock_held_dotlock_is_refreshed(mbox: Path) -> None:
    settings = LockSettings(dotlock_stale_s=5, dotlock_refresh_s=0.02)
    dotlock = Path(f"{mbox}.lock")
    with lock_mbox(mbox, settings):
        past = time.time() - 100
        os.utime(dotlock, (past, past))
        wait_for(lambda: os.stat(dotlock).st_mtime > past + 50)


def test_lock_busy_step_releases_earlier_steps(mbox: Path) -> None:
    fcntl_only = LockSettings(order=(LockKind.FCNTL,))
    dotlock = Path(f"{mbox}.lock")
    fake = FakeTime()
    seen: list[bool] = []

    def sleep(seconds: float) -> None:
        seen.append(dotlock.exists())
        fake.sleep(seconds)

    with lock_mbox(mbox, fcntl_only), pytest.raises(LockTimeoutError):
        acquire(mbox, LockSettings(timeout_s=1), clock=fake.clock, sleep=sleep)
    assert seen
    assert not any(seen)
    assert not dotlock.exists()


def test_lock_wait_is_bounded_with_backoff(mbox: Path) -> None:
    fake = FakeTime()
    settings = LockSettings(order=(LockKind.FLOCK,), timeout_s=3)
    with lock_mbox(mbox, settings), pytest.raises(LockTimeoutError) as info:
        acquire(mbox, settings, clock=fake.clock, sleep=fake.sleep)
    assert fake.now == pytest.approx(3.0)
    assert fake.sleeps[:3] == [0.01, 0.02, 0.04]
    assert max(fake.sleeps) == 0.5
    assert len(fake.sleeps) < 20
    assert "timed out after 3.0 s" in str(info.value)


def test_lock_failing_step_releases_everything(
    mbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def __init__(self, target: object) -> None:
            pass

        def try_acquire(self) -> None:
            raise LockError("broken on purpose")

        def release(self) -> None:
            raise AssertionError("never acquired")

    monkeypatch.setitem(lockmod.LOCK_METHODS, LockKind.FLOCK, Broken)
    order = (LockKind.DOTLOCK, LockKind.FCNTL, LockKind.FLOCK)
    with pytest.raises(LockError, match="broken on purpose"):
        acquire(mbox, LockSettings(order=order))
    assert not Path(f"{mbox}.lock").exists()
    with lock_mbox(mbox, LockSettings(order=(LockKind.FCNTL,), timeout_s=0)):
        pass


def test_lock_missing_mbox_is_mbox_error(tmp_path: Path) -> None:
    with pytest.raises(MboxError, match="mbox not found"):
        acquire(tmp_path / "nobody", FAST)
    assert list(tmp_path.iterdir()) == []


def test_lock_release_keeps_foreign_dotlock(
    mbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dotlock = Path(f"{mbox}.lock")
    with caplog.at_level(logging.ERROR), lock_mbox(mbox, FAST):
        dotlock.unlink()
        dotlock.write_bytes(b"someone else\n")
    assert dotlock.read_bytes() == b"someone else\n"
    assert "dotlock lost" in caplog.text


@pytest.fixture
def readonly_spool() -> Iterator[Path]:
    """A spool directory we cannot write, with a mbox we can."""
    spool = Path(tempfile.mkdtemp(prefix="spoolgate-ro-"))
    mbox = spool / "ann"
    mbox.write_bytes(b"From a@b Fri Dec  4 16:00:00 2026\n\nhi\n")
    mbox.chmod(0o666)
    spool.chmod(0o555)
    try:
        yield spool
    finally:
        spool.chmod(0o755)
        mbox.unlink()
        spool.rmdir()


def lock_as_nobody(mbox: Path, optional: bool) -> tuple[str, str]:
    """Lock ``mbox`` in a forked child running as nobody, since root may
    write anywhere; return the kinds held (or the error) and the log."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        status = 1
        with os.fdopen(write_end, "w") as out:
            try:
                status = run_child_lock(mbox, optional, out)
            finally:
                out.flush()
                os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        output = inp.read()
    os.waitpid(pid, 0)
    result, _, logged = output.partition("\n")
    return result, logged


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_child_lock(mbox: Path, optional: bool, out: TextIO) -> int:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    handler = ListHandler()
    logging.getLogger("spoolgate").addHandler(handler)
    settings = LockSettings(timeout_s=0.2, dotlock_optional=optional)
    try:
        with lock_mbox(mbox, settings) as held:
            result = " ".join(k.value for k in held.kinds)
    except LockError as exc:
        result = f"error: {exc}"
    out.write(result + "\n" + "\n".join(handler.lines))
    return 0


def test_lock_unwritable_spool_names_directory_and_fix(readonly_spool: Path) -> None:
    result, _ = lock_as_nobody(readonly_spool / "ann", optional=False)
    assert result.startswith("error: ")
    assert f"creating a dotlock in {readonly_spool} failed" in result
    assert "locking.dotlock_optional = true" in result
    assert "group mail" in result


def test_lock_unwritable_spool_skips_optional_dotlock(readonly_spool: Path) -> None:
    result, logged = lock_as_nobody(readonly_spool / "ann", optional=True)
    assert result == "fcntl"
    assert "dotlock skipped" in logged
