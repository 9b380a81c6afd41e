"""Our mbox locks against Debian's procmail and its lockfile(1) tool.

procmail (Debian 12 package 3.22-27) delivers to ``DEFAULT`` under a
dotlock (``MBOX.lock``, made with link()) and then a blocking fcntl lock,
and writes the message while holding both. These tests check that each
side waits for the other and that concurrent deliveries and our reads
lose and garble nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from spoolgate.errors import LockTimeoutError
from spoolgate.mbox.cache import scan_file
from spoolgate.mbox.lock import LockKind, LockSettings, acquire, lock_mbox
from spoolgate.mbox.store import Mailbox

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("procmail") is None or shutil.which("lockfile") is None,
        reason="procmail not installed (scripts/install-test-deps.sh installs it)",
    ),
]

SENDER = b"From sender@example.org "


@dataclass(frozen=True)
class Spool:
    mbox: Path
    rcfile: Path
    log: Path


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    mbox = tmp_path / "ann"
    mbox.write_bytes(b"")
    log = tmp_path / "procmail.log"
    rcfile = tmp_path / "procmailrc"
    # LOCKSLEEP=0 makes procmail retry a busy dotlock without its default
    # 8 s pause, so the tests stay fast.
    rcfile.write_text(f"DEFAULT={mbox}\nLOGFILE={log}\nVERBOSE=on\nLOCKSLEEP=0\n")
    return Spool(mbox, rcfile, log)


def make_message(number: int, body_lines: int = 3) -> bytes:
    """Build a message whose last body line carries a digest of the rest."""
    head = (
        SENDER + b"Fri Dec  4 16:00:00 2026\n"
        b"From: sender@example.org\n"
        b"Message-ID: <%d@test.example>\n"
        b"Subject: message %d\n\n" % (number, number)
    )
    body = b"".join(b"line %d of message %d\n" % (i, number) for i in range(body_lines))
    digest = hashlib.sha256(head + body).hexdigest().encode()
    return head + body + b"digest " + digest + b"\n"


def deliver(spool: Spool, message: bytes) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        ["procmail", "-m", str(spool.rcfile)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None
    child.stdin.write(message)
    child.stdin.close()
    return child


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def split_mbox(data: bytes) -> list[bytes]:
    """Split an mbox of test messages; procmail adds an empty line to each."""
    assert data == b"" or data.startswith(SENDER)
    parts = data.split(b"\n\n" + SENDER)
    messages = [parts[0] + b"\n\n"] + [SENDER + p + b"\n\n" for p in parts[1:]]
    messages[-1] = messages[-1][:-2]
    return messages if data else []


def check_complete(message: bytes) -> None:
    """Assert one stored message is whole: its digest line matches."""
    assert message.endswith(b"\n\n"), message[-80:]
    text, _, tail = message[:-1].rpartition(b"digest ")
    assert hashlib.sha256(text).hexdigest().encode() + b"\n" == tail, message[:80]


def wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def test_procmail_waits_for_our_dotlock(spool: Spool) -> None:
    message = make_message(1)
    with lock_mbox(spool.mbox, LockSettings()):
        child = deliver(spool, message)
        # procmail logs "Locking" for every try; a second line is a retry.
        wait_for(
            lambda: (
                spool.log.exists()
                and spool.log.read_text().count(f'Locking "{spool.mbox}.lock"') >= 2
            )
        )
        assert child.poll() is None
        assert spool.mbox.read_bytes() == b""
    assert child.wait(timeout=30) == 0
    assert spool.mbox.read_bytes() == message + b"\n"


def test_procmail_waits_for_our_fcntl_lock(spool: Spool) -> None:
    if wchan(os.getpid()) == "":
        pytest.skip("/proc/PID/wchan unreadable: cannot see procmail block")
    message = make_message(2)
    with lock_mbox(spool.mbox, LockSettings(order=(LockKind.FCNTL,))):
        child = deliver(spool, message)
        # procmail takes its dotlock first, then blocks in fcntl(F_SETLKW).
        wait_for(lambda: wchan(child.pid) == "fcntl_setlk")
        assert Path(f"{spool.mbox}.lock").exists()
        assert spool.mbox.read_bytes() == b""
    assert child.wait(timeout=30) == 0
    assert spool.mbox.read_bytes() == message + b"\n"
    assert not Path(f"{spool.mbox}.lock").exists()


@pytest.fixture
def lockfile_held(spool: Spool) -> Iterator[Path]:
    dotlock = Path(f"{spool.mbox}.lock")
    subprocess.run(["lockfile", "-r0", str(dotlock)], check=True, timeout=30)
    yield dotlock
    dotlock.unlink(missing_ok=True)


def test_lock_times_out_on_lockfile_dotlock(spool: Spool, lockfile_held: Path) -> None:
    with pytest.raises(LockTimeoutError) as info:
        acquire(spool.mbox, LockSettings(timeout_s=0.3))
    message = str(info.value)
    assert f"cannot lock {spool.mbox}: dotlock {lockfile_held} held for" in message
    assert "see locking.dotlock_stale_s" in message
    assert "see locking.timeout_s = 0.3" in message
    assert lockfile_held.exists()


def test_lock_waits_until_lockfile_released(spool: Spool, lockfile_held: Path) -> None:
    waiting = threading.Event()
    kinds: list[LockKind] = []

    def sleep(seconds: float) -> None:
        waiting.set()
        time.sleep(seconds)

    def take() -> None:
        with lock_mbox(spool.mbox, LockSettings(timeout_s=30), sleep=sleep) as held:
            kinds.extend(held.kinds)

    taker = threading.Thread(target=take)
    taker.start()
    assert waiting.wait(timeout=10)
    assert not kinds
    lockfile_held.unlink()  # lockfile(1) holders unlock with rm -f
    taker.join(timeout=30)
    assert kinds == [LockKind.DOTLOCK, LockKind.FCNTL]


def read_cycles(mbox: Path, cache: Path, done: threading.Event) -> list[int]:
    """Open the mbox under its lock, refresh the index and check every
    message until ``done``; return the message counts seen."""
    counts: list[int] = []
    while not done.is_set() and len(counts) < 2000:
        with Mailbox.open(mbox, cache, lock_settings=LockSettings(timeout_s=60)) as box:
            data = mbox.read_bytes()
            assert box.index.same_records(scan_file(mbox))
            pop3 = [b"".join(box.read_message(n)) for n in range(len(box.index))]
        messages = split_mbox(data)
        for message, octets in zip(messages, pop3, strict=True):
            check_complete(message)
            assert octets == message.split(b"\n", 1)[1][:-1].replace(b"\n", b"\r\n")
        assert not counts or len(messages) >= counts[-1]
        counts.append(len(messages))
    return counts


@pytest.mark.slow
def test_procmail_concurrent_deliveries_with_reads(
    spool: Spool, tmp_path: Path
) -> None:
    workers, per_worker = 8, 25
    messages = [make_message(n, body_lines=n % 40) for n in range(workers * per_worker)]

    def run_worker(first: int) -> None:
        for message in messages[first::workers]:
            child = deliver(spool, message)
            assert child.wait(timeout=120) == 0

    done = threading.Event()
    with ThreadPoolExecutor(max_workers=workers + 1) as pool:
        reader = pool.submit(read_cycles, spool.mbox, tmp_path / "cache", done)
        delivered = [pool.submit(run_worker, w) for w in range(workers)]
        try:
            for future in delivered:
                future.result(timeout=300)
        finally:
            done.set()
        counts = reader.result(timeout=120)
    assert len(counts) > 1
    stored = split_mbox(spool.mbox.read_bytes())
    assert len(stored) == len(messages)
    assert Counter(stored) == Counter(m + b"\n" for m in messages)


def test_expunge_during_procmail_deliveries(spool: Spool, tmp_path: Path) -> None:
    first = [make_message(n, body_lines=n % 7) for n in range(20)]
    spool.mbox.write_bytes(b"".join(m + b"\n" for m in first))
    later = [make_message(100 + n) for n in range(8)]
    children: list[subprocess.Popen[bytes]] = []
    with Mailbox.open(spool.mbox, tmp_path / "cache", chunk_size=128) as box:
        # Deliveries start while we hold the lock, so they race the expunge.
        children = [deliver(spool, message) for message in later]
        box.expunge(range(0, 20, 2))
    for child in children:
        assert child.wait(timeout=60) == 0
    stored = split_mbox(spool.mbox.read_bytes())
    assert stored[:10] == [m + b"\n" for m in first[1::2]]
    assert Counter(stored[10:]) == Counter(m + b"\n" for m in later)
    with Mailbox.open(spool.mbox, tmp_path / "cache") as box:
        assert box.index.same_records(scan_file(spool.mbox))
