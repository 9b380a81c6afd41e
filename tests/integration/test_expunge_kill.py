"""Kill an expunging process at random points and check nothing is lost.

Each round writes a generated mbox and starts a child process that
expunges a random set of messages with a small chunk size, so the copy
takes many steps. In half the rounds the child SIGKILLs itself after a
random copy step. In the others the parent SIGKILLs it after a random
delay drawn over the measured length of an uninterrupted expunge, which
can land inside a write. In about half the interrupted rounds a second
child resumes the expunge and is killed too. Finally this process opens
the mbox, which finishes the expunge, and checks: every kept message
present once, byte for byte, in order; the deleted ones gone; the file a
valid mbox whose index equals a full rescan.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from spoolgate.mbox.cache import Refresh, scan_file
from spoolgate.mbox.lock import LockSettings
from spoolgate.mbox.store import Mailbox

ROUNDS = 40
SEED = 20261204

# The child kills itself after step ``kill_at`` of the copy when it is
# above 0: that puts kill points exactly between durable steps, while the
# parent's timer puts others anywhere, including inside a write.
CHILD = """
import os, signal, sys
from pathlib import Path
from spoolgate.mbox.lock import LockSettings
from spoolgate.mbox.store import Mailbox

mbox, cache, chunk, deleted, mode, kill_at = sys.argv[1:]
steps = []

def progress(copied):
    steps.append(copied)
    if len(steps) == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)

box = Mailbox.open(
    Path(mbox), Path(cache), lock_settings=LockSettings(timeout_s=30),
    chunk_size=int(chunk),
)
print("ready", flush=True)
if mode == "expunge":
    box.expunge([int(n) for n in deleted.split(",")], progress=progress)
box.close()
print("done", flush=True)
"""


def make_message(rng: random.Random, number: int) -> bytes:
    """Build one message with varied size, quoting and line ends."""
    lines = [
        b"line %d of message %d %s" % (i, number, b"y" * rng.randrange(70))
        for i in range(rng.choice([1, 3, 10, 40, 120]))
    ]
    if rng.random() < 0.3:
        lines.insert(0, b">From a quoted line")
    if rng.random() < 0.2:
        lines.insert(1, b"From here on, body text")
    end = b"\r\n" if rng.random() < 0.1 else b"\n"
    head = [
        b"From: sender%d@example.org" % number,
        b"Message-ID: <%d.%d@kill.test>" % (number, rng.randrange(10**9)),
        b"Subject: message %d" % number,
        b"",
    ]
    content = end.join(head + lines) + end
    return b"From sender@example.org Fri Dec  4 16:00:00 2026\n" + content + b"\n"


@dataclass
class Round:
    mbox: Path
    cache: Path
    messages: list[bytes]
    deleted: set[int]
    chunk_size: int

    @property
    def steps(self) -> int:
        """Estimate the copy steps: bytes after the first deleted message."""
        first = min(self.deleted)
        moved = sum(
            len(m)
            for n, m in enumerate(self.messages)
            if n > first and n not in self.deleted
        )
        return max(-(-moved // self.chunk_size), 1)

    @property
    def kept(self) -> bytes:
        return b"".join(m for n, m in enumerate(self.messages) if n not in self.deleted)


def new_round(rng: random.Random, directory: Path) -> Round:
    directory.mkdir()
    (directory / "spool").mkdir()
    mbox = directory / "spool" / "ann"
    messages = [make_message(rng, n) for n in range(rng.randrange(10, 40))]
    mbox.write_bytes(b"".join(messages))
    deleted = set(rng.sample(range(len(messages)), rng.randrange(1, len(messages))))
    chunk_size = rng.choice([64, 256, 1024])
    round_ = Round(mbox, directory / "cache", messages, deleted, chunk_size)
    # Index the mbox first, as a POP3 login would before the expunge.
    with Mailbox.open(mbox, round_.cache, lock_settings=LockSettings()):
        pass
    return round_


def start_child(round_: Round, mode: str, kill_at: int = 0) -> subprocess.Popen[str]:
    deleted = ",".join(str(n) for n in sorted(round_.deleted))
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(round_.mbox),
            str(round_.cache),
            str(round_.chunk_size),
            deleted,
            mode,
            str(kill_at),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_to_end(round_: Round) -> float:
    """Expunge in a child without killing it; return seconds per step."""
    child = start_child(round_, "expunge")
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    started = time.monotonic()
    assert child.stdout.readline() == "done\n"
    elapsed = time.monotonic() - started
    assert child.wait(timeout=60) == 0
    return elapsed / round_.steps


def kill_after(child: subprocess.Popen[str], delay_s: float) -> None:
    time.sleep(delay_s)  # the random kill point, not a wait for a state
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)


def journal_exists(round_: Round) -> bool:
    return any(round_.cache.glob("*.expunge"))


def check_round(round_: Round) -> None:
    with Mailbox.open(round_.mbox, round_.cache, lock_settings=LockSettings()) as box:
        if round_.mbox.read_bytes() == b"".join(round_.messages):
            # Killed before the journal existed: nothing was changed yet.
            box.expunge(round_.deleted)
    assert not journal_exists(round_)
    assert round_.mbox.read_bytes() == round_.kept
    rescan = scan_file(round_.mbox)
    assert len(rescan) == len(round_.messages) - len(round_.deleted)
    with Mailbox.open(round_.mbox, round_.cache, lock_settings=LockSettings()) as box:
        assert box.report.outcome is Refresh.HIT
        assert box.index.same_records(rescan)
    assert not Path(f"{round_.mbox}.lock").exists()


@pytest.mark.slow
def test_expunge_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    calibration = new_round(rng, tmp_path / "calibration")
    step_s = run_to_end(calibration)
    assert calibration.mbox.read_bytes() == calibration.kept

    interrupted = 0
    for number in range(ROUNDS):
        round_ = new_round(rng, tmp_path / f"round{number}")
        if number % 2:
            child = start_child(round_, "expunge", rng.randrange(1, round_.steps + 1))
            child.wait(timeout=60)
        else:
            child = start_child(round_, "expunge")
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            kill_after(child, rng.uniform(0, step_s * round_.steps * 1.2))
        interrupted += journal_exists(round_)
        if journal_exists(round_) and rng.random() < 0.5:
            resumer = start_child(round_, "open")
            kill_after(resumer, rng.uniform(0, 0.3))
        check_round(round_)
    # Most kills must land inside the copy loop, or the test proves little.
    assert interrupted >= ROUNDS // 2, f"only {interrupted} kills hit an expunge"
