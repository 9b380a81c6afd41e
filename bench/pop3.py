"""Time spoolgate pop3d and Dovecot 2.3 side by side on the same mboxes.

Each server gets its own copy of every mbox, because Dovecot edits the
files it serves (it adds X-IMAPbase, X-UID and Status headers on the first
open). Both run on 127.0.0.1 and check the same {SHA512-CRYPT} passwd line
(5000 rounds, a few ms per login in both). The client is Python's poplib
in this process, over plain POP3 without TLS. The page cache is warm: the
mboxes were just written, and nothing drops caches.

Scenarios, each repeated ``--reps`` times (the median is printed):

  big first      login+STAT+UIDL+QUIT on the big mbox, no index yet
  big cached     the same again, index in place
  big login      login+STAT+QUIT only, index in place: the cost of the
                 password check and of opening the maildrop
  big append     after one message was appended to the mbox
  big delete     after a message in the middle was removed by rewriting
                 the rest of the file in place, as a mail client does
  small retr     login, then RETR of every message of the small mbox
  concurrent     ``--clients`` sessions at once, each its own user and
                 mbox, each login+UIDL+RETR of 10 messages+QUIT (wall time)

For each repetition both servers start afresh with fresh copies and no
index: spoolgate's cache directory and Dovecot's index are deleted.

    python bench/pop3.py                           # 100,000 messages, 3 reps
    python bench/pop3.py --json
    python bench/pop3.py --messages 300 --small 50 --clients 3 --reps 1

Needs root (Dovecot runs its mail processes as the mail user) and the
Debian packages dovecot-core and dovecot-pop3d.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import poplib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "interop"))

from clients import Account  # noqa: E402
from dovecot import DovecotServer, missing_requirements  # noqa: E402
from spoolgate_pop3d import SpoolgateServer  # noqa: E402

from spoolgate.mbox.generate import (  # noqa: E402
    GenerateOptions,
    generate_bytes,
    generate_file,
)

PASSWORD = "bench password"
BIG_USER = "big"
SMALL_USER = "small"
RETR_PER_CLIENT = 10
CONCURRENT_MESSAGES = 100
COPY_CHUNK_BYTES = 16 * 1024 * 1024
SCENARIOS = (
    "big first",
    "big cached",
    "big login",
    "big append",
    "big delete",
    "small retr",
    "concurrent",
)


@dataclass(frozen=True, slots=True)
class DataSet:
    """The pristine mboxes every repetition copies from."""

    big: Path
    small: Path
    concurrent: Path
    extra: bytes
    big_messages: int
    big_bytes: int
    small_messages: int
    concurrent_users: tuple[str, ...]


@dataclass(slots=True)
class Results:
    """Samples in seconds, and the message counts each server reported."""

    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    refresh: list[str] = field(default_factory=list)

    def add(self, server: str, scenario: str, seconds: float, count: int) -> None:
        self.seconds.setdefault(scenario, {}).setdefault(server, []).append(seconds)
        self.counts.setdefault(scenario, {}).setdefault(server, []).append(count)
        print(
            f"{server:9} {scenario:12} {seconds:9.3f} s  messages={count}", flush=True
        )


class Side(Protocol):
    """One POP3 server under test, with its own copies of the mboxes."""

    name: str

    def mbox(self, user: str) -> Path: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def delete_index(self) -> None: ...

    def account(self, user: str) -> Account: ...

    def refresh_outcomes(self) -> list[str]: ...


class SpoolgateSide:
    """``spoolgate pop3d`` as a child process."""

    name = "spoolgate"

    def __init__(self, root: Path, passwd_lines: list[str]) -> None:
        self.server = SpoolgateServer(root, user=BIG_USER, password=PASSWORD)
        self.server.prepare(b"", passwd_lines=passwd_lines)
        # Every client connects from 127.0.0.1, so the per-address limit on
        # waiting password checks (3 by default) would fail the concurrent
        # logins that Dovecot, which has no such limit, accepts.
        with self.server.config.open("a") as config:
            config.write("max_pending_auth_per_address = 1000\n")

    def mbox(self, user: str) -> Path:
        return self.server.spool_dir / user

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def delete_index(self) -> None:
        shutil.rmtree(self.server.root / "cache", ignore_errors=True)

    def account(self, user: str) -> Account:
        assert self.server.account is not None
        return Account(
            self.server.account.host, self.server.account.port, 0, user, PASSWORD
        )

    def refresh_outcomes(self) -> list[str]:
        lines = self.server.drain_log()
        self.server.log_lines = []
        # The big mbox's "index open" lines: outcome, bytes parsed, seconds.
        marker = f"/{BIG_USER} refresh="
        return [
            line.split("index open ")[1].strip()
            for line in lines
            if "index open" in line and marker in line
        ]


class DovecotSide:
    """Dovecot 2.3 serving ``spool/%u`` for every user."""

    name = "dovecot"

    def __init__(self, root: Path, passwd_lines: list[str]) -> None:
        self.spool = root / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.server = DovecotServer(
            self.spool / "%u",
            root / "dovecot",
            user=BIG_USER,
            password=PASSWORD,
            passwd_lines=passwd_lines,
        )

    def mbox(self, user: str) -> Path:
        return self.spool / user

    def start(self) -> None:
        for path in self.spool.iterdir():
            shutil.chown(path, "mail", "mail")
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def delete_index(self) -> None:
        self.server.reset_index()

    def account(self, user: str) -> Account:
        assert self.server.account is not None
        return Account(
            self.server.account.host, self.server.account.port, 0, user, PASSWORD
        )

    def refresh_outcomes(self) -> list[str]:
        return []


def hash_password(password: str) -> str:
    """Return a {SHA512-CRYPT} hash, which both servers verify natively."""
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    return "{SHA512-CRYPT}" + result.stdout.strip()


def make_data(work: Path, args: argparse.Namespace) -> DataSet:
    """Generate the pristine mboxes (deterministic for the given options)."""
    big, small, concurrent = work / "big.mbox", work / "small.mbox", work / "c.mbox"
    big_messages, big_bytes = generate_file(
        big,
        GenerateOptions(
            messages=args.messages, format="mboxo", seed=1, attach_rate=0.002
        ),
    )
    small_messages, _ = generate_file(
        small, GenerateOptions(messages=args.small, format="mboxo", seed=2)
    )
    generate_file(
        concurrent,
        GenerateOptions(messages=CONCURRENT_MESSAGES, format="mboxo", seed=3),
    )
    # Another seed, so the appended message is new to both servers.
    extra, _ = generate_bytes(GenerateOptions(messages=1, format="mboxo", seed=4242))
    users = tuple(f"c{number:02d}" for number in range(args.clients))
    return DataSet(
        big, small, concurrent, extra, big_messages, big_bytes, small_messages, users
    )


def delete_middle(path: Path) -> int:
    """Remove the message nearest the middle by moving the rest down in place.

    Returns the number of bytes removed.
    """
    with path.open("r+b") as mbox:
        size = mbox.seek(0, os.SEEK_END)
        start = find_boundary(mbox, size // 2)
        end = find_boundary(mbox, start + 1)
        if start < 0 or end < 0:
            raise RuntimeError(f"{path}: no message boundary after the middle")
        read_at, write_at = end, start
        while read_at < size:
            mbox.seek(read_at)
            chunk = mbox.read(COPY_CHUNK_BYTES)
            mbox.seek(write_at)
            mbox.write(chunk)
            read_at += len(chunk)
            write_at += len(chunk)
        mbox.truncate(write_at)
    return end - start


def find_boundary(mbox: BinaryIO, offset: int) -> int:
    """Return the offset of the next From_ line after an empty line, or -1."""
    window = 1024 * 1024
    while True:
        mbox.seek(offset)
        data = mbox.read(window + 7)
        if len(data) < 7:
            return -1
        found = data.find(b"\n\nFrom ")
        if found >= 0:
            return offset + found + 2
        offset += window


def login(account: Account) -> poplib.POP3:
    session = poplib.POP3(account.host, account.port, timeout=3600)
    session.user(account.user)
    session.pass_(account.password)
    return session


def stat_uidl(account: Account) -> tuple[float, int]:
    """Time login+STAT+UIDL+QUIT; return seconds and the message count."""
    started = time.perf_counter()
    session = login(account)
    count, _ = session.stat()
    listing = session.uidl()[1]
    session.quit()
    seconds = time.perf_counter() - started
    if len(listing) != count:
        raise RuntimeError(f"UIDL listed {len(listing)} messages, STAT {count}")
    return seconds, count


def login_stat(account: Account) -> tuple[float, int]:
    """Time login+STAT+QUIT; return seconds and the message count."""
    started = time.perf_counter()
    session = login(account)
    count, _ = session.stat()
    session.quit()
    return time.perf_counter() - started, count


def retr_all(account: Account, limit: int | None = None) -> tuple[float, int]:
    """Time login+UIDL+RETR of every (or the first ``limit``) message+QUIT."""
    started = time.perf_counter()
    session = login(account)
    count = len(session.uidl()[1])
    for msgno in range(1, min(count, limit or count) + 1):
        session.retr(msgno)
    session.quit()
    return time.perf_counter() - started, count


def concurrent_sessions(side: Side, users: tuple[str, ...]) -> tuple[float, int]:
    """Time sessions of every user at once; return wall seconds and messages."""
    barrier = threading.Barrier(len(users) + 1)
    counts: list[int] = []
    errors: list[BaseException] = []

    def client(user: str) -> None:
        barrier.wait()
        try:
            counts.append(retr_all(side.account(user), RETR_PER_CLIENT)[1])
        except (OSError, poplib.error_proto) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{side.name}: {len(errors)} sessions failed: {errors[0]!r}")
    return seconds, sum(counts)


def copy_spool(side: Side, data: DataSet) -> None:
    shutil.copyfile(data.big, side.mbox(BIG_USER))
    shutil.copyfile(data.small, side.mbox(SMALL_USER))
    for user in data.concurrent_users:
        shutil.copyfile(data.concurrent, side.mbox(user))


def run_round(side: Side, data: DataSet, results: Results) -> None:
    """Run every scenario once on fresh copies with no index."""
    copy_spool(side, data)
    side.delete_index()
    side.start()
    try:
        big = side.account(BIG_USER)

        def record(scenario: str, sample: tuple[float, int]) -> None:
            results.add(side.name, scenario, *sample)

        record("big first", stat_uidl(big))
        record("big cached", stat_uidl(big))
        record("big login", login_stat(big))
        with side.mbox(BIG_USER).open("ab") as mbox:
            mbox.write(data.extra)
        record("big append", stat_uidl(big))
        delete_middle(side.mbox(BIG_USER))
        record("big delete", stat_uidl(big))
        # Untimed first opens, so the timed runs below use an index.
        stat_uidl(side.account(SMALL_USER))
        for user in data.concurrent_users:
            stat_uidl(side.account(user))
        record("small retr", retr_all(side.account(SMALL_USER)))
        record("concurrent", concurrent_sessions(side, data.concurrent_users))
        results.refresh += [f"{side.name}: {r}" for r in side.refresh_outcomes()]
    finally:
        side.stop()


def machine() -> dict[str, str]:
    """Describe the machine: CPU, cores, RAM, kernel, Python, Dovecot."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    dovecot = subprocess.run(
        ["/usr/sbin/dovecot", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram_gib": f"{mem_kib / 1024 / 1024:.1f}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dovecot": dovecot,
        "commit": commit,
    }


def summarize(results: Results) -> dict[str, dict[str, float]]:
    """Return the median of each server per scenario and Dovecot/spoolgate."""
    summary: dict[str, dict[str, float]] = {}
    for scenario in SCENARIOS:
        samples = results.seconds.get(scenario, {})
        row = {name: statistics.median(values) for name, values in samples.items()}
        if row.get("spoolgate") and "dovecot" in row:
            row["ratio"] = row["dovecot"] / row["spoolgate"]
        summary[scenario] = row
    return summary


def print_table(summary: dict[str, dict[str, float]]) -> None:
    header = ("scenario", "spoolgate s", "dovecot s", "dovecot/spoolgate")
    print(f"\n{header[0]:12} {header[1]:>12} {header[2]:>12} {header[3]:>18}")
    for scenario, row in summary.items():
        cells = [
            f"{row[k]:12.3f}" if k in row else f"{'-':>12}"
            for k in ("spoolgate", "dovecot")
        ]
        ratio = f"{row['ratio']:17.1f}x" if "ratio" in row else f"{'-':>18}"
        print(f"{scenario:12} {cells[0]} {cells[1]} {ratio}")


def count_mismatches(results: Results) -> list[str]:
    """Return the scenarios where the two servers saw different counts."""
    return [
        scenario
        for scenario, by_server in results.counts.items()
        if len({tuple(counts) for counts in by_server.values()}) > 1
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--messages",
        type=int,
        default=100_000,
        help="messages in the big mbox (100000)",
    )
    parser.add_argument(
        "--small", type=int, default=1000, help="messages in the small mbox (1000)"
    )
    parser.add_argument(
        "--clients", type=int, default=50, help="concurrent sessions (50)"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument(
        "--only", choices=("spoolgate", "dovecot"), help="run one server only"
    )
    parser.add_argument(
        "--work", type=Path, help="scratch directory (default: a new one in /tmp)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only != "spoolgate" and (reason := missing_requirements()):
        print(f"cannot run Dovecot: {reason}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="spoolgate-bench-pop3-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    stdout = sys.stdout
    if args.json:
        # Progress lines go to stderr, so stdout holds only the JSON object.
        sys.stdout = sys.stderr
    try:
        data = make_data(work, args)
        users = (BIG_USER, SMALL_USER, *data.concurrent_users)
        passwd_hash = hash_password(PASSWORD)
        passwd_lines = [f"{user}:{passwd_hash}" for user in users]
        sides: list[Side] = []
        if args.only != "dovecot":
            sides.append(SpoolgateSide(work / "spoolgate", passwd_lines))
        if args.only != "spoolgate":
            sides.append(DovecotSide(work / "dovecot", passwd_lines))
        results = Results()
        for _ in range(args.reps):
            for side in sides:
                run_round(side, data, results)
        summary = summarize(results)
        print_table(summary)
        mismatches = count_mismatches(results)
        if mismatches:
            print(f"WARNING: message counts differ in {mismatches}", file=sys.stderr)
    finally:
        sys.stdout = stdout
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        report = {
            "machine": machine(),
            "data": {
                "big_messages": data.big_messages,
                "big_bytes": data.big_bytes,
                "small_messages": data.small_messages,
                "clients": len(data.concurrent_users),
                "reps": args.reps,
            },
            "median_s": summary,
            "samples_s": results.seconds,
            "counts": results.counts,
            "count_mismatches": mismatches,
            "spoolgate_refresh": results.refresh,
        }
        print(json.dumps(report, indent=1))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
