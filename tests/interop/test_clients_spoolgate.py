"""Real POP3 clients against ``spoolgate pop3d`` running as a child process.

The drivers are first checked against Dovecot (``test_clients_dovecot.py``),
so a failure here points at spoolgate. Each client must store every message
byte for byte as served: From_ line removed, ``>From`` quoting kept for
mboxo and undone once for mboxrd, CRLF line ends.
"""

from __future__ import annotations

import poplib
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clients import (
    Account,
    Client,
    PoplibClient,
    Security,
    served_messages,
)
from deliveries import download_during_deliveries, message_id
from spoolgate_pop3d import SpoolgateServer
from support import Spool, check_download, client_cases

from spoolgate.mbox.cache import open_index, scan_file
from spoolgate.mbox.generate import GenerateOptions, generate_bytes
from spoolgate.mbox.index import Variant

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("openssl") is None,
        reason="openssl not installed (needed for the test certificate)",
    ),
]

DEADLINE_S = 120.0

StartServer = Callable[[Path, bytes, bool], SpoolgateServer]


def start_servers() -> Iterator[StartServer]:
    servers: list[SpoolgateServer] = []

    def start(root: Path, data: bytes, mboxrd: bool) -> SpoolgateServer:
        server = SpoolgateServer(root, mboxrd=mboxrd)
        servers.append(server)
        server.prepare(data)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.kill()


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Return a function that serves an mbox with a new ``spoolgate pop3d``."""
    yield from start_servers()


@pytest.fixture(scope="module")
def module_start_server() -> Iterator[StartServer]:
    yield from start_servers()


@pytest.fixture(scope="module")
def mboxo_server(
    module_start_server: StartServer, module_public_dir: Path, mboxo_spool: Spool
) -> SpoolgateServer:
    """A server shared by the tests that keep every message of an mboxo spool."""
    return module_start_server(module_public_dir / "mboxo", mboxo_spool.data, False)


@pytest.fixture(scope="module")
def mboxrd_server(
    module_start_server: StartServer, module_public_dir: Path, mboxrd_spool: Spool
) -> SpoolgateServer:
    """A server that reads its spool as mboxrd, so it undoes one quoting level."""
    return module_start_server(module_public_dir / "mboxrd", mboxrd_spool.data, True)


def account_of(server: SpoolgateServer) -> Account:
    assert server.account is not None
    return server.account


def uidls(account: Account) -> list[bytes]:
    """Return the UIDL of each message, in msgno order."""
    session = poplib.POP3(account.host, account.port, timeout=DEADLINE_S)
    session.user(account.user)
    session.pass_(account.password)
    listing = session.uidl()[1]
    session.quit()
    return [line.split()[1] for line in listing]


def assert_empty_valid_mbox(server: SpoolgateServer) -> None:
    """Assert the mbox is empty and its index cache agrees with a rescan."""
    assert server.mbox.read_bytes() == b""
    variant = Variant.MBOXRD if server.mboxrd else Variant.MBOXO
    index, _ = open_index(server.mbox, server.cache_dir, variant, write=False)
    assert len(index) == 0
    assert index.same_records(scan_file(server.mbox, variant))


@pytest.mark.parametrize(("client", "security"), client_cases(every_security=True))
def test_client_keep_mboxo_every_message(
    client: Client,
    security: Security,
    mboxo_server: SpoolgateServer,
    public_dir: Path,
    mboxo_spool: Spool,
) -> None:
    got = client.fetch(account_of(mboxo_server), public_dir, security=security)
    check_download(client, got, mboxo_spool.messages)


@pytest.mark.parametrize(("client", "security"), client_cases(every_security=False))
def test_client_keep_mboxrd_unquotes_from(
    client: Client,
    security: Security,
    mboxrd_server: SpoolgateServer,
    public_dir: Path,
    mboxrd_spool: Spool,
) -> None:
    assert any(b"\r\nFrom " in message for message in mboxrd_spool.messages)
    got = client.fetch(account_of(mboxrd_server), public_dir, security=security)
    check_download(client, got, mboxrd_spool.messages)


@pytest.mark.parametrize(("client", "security"), client_cases(every_security=False))
def test_client_delete_leaves_empty_mbox(
    client: Client,
    security: Security,
    start_server: StartServer,
    public_dir: Path,
    mboxo_spool: Spool,
) -> None:
    server = start_server(public_dir / "site", mboxo_spool.data, False)
    got = client.fetch(account_of(server), public_dir, security=security, keep=False)
    check_download(client, got, mboxo_spool.messages)
    assert PoplibClient().fetch(account_of(server), public_dir) == []
    server.stop()
    assert_empty_valid_mbox(server)


def test_uidls_survive_restart_and_cache_loss(
    start_server: StartServer, public_dir: Path, mboxo_spool: Spool
) -> None:
    server = start_server(public_dir / "site", mboxo_spool.data, False)
    first = uidls(account_of(server))
    assert len(first) == len(mboxo_spool.messages)
    assert len(set(first)) == len(first)

    server.stop()
    server.start()
    assert uidls(account_of(server)) == first

    server.stop()
    shutil.rmtree(server.cache_dir)
    server.start()
    assert uidls(account_of(server)) == first


@pytest.mark.skipif(shutil.which("procmail") is None, reason="procmail not installed")
def test_delivery_during_sessions_loses_nothing(
    start_server: StartServer, public_dir: Path, mboxo_spool: Spool
) -> None:
    server = start_server(public_dir / "site", mboxo_spool.data, False)
    download_during_deliveries(
        account_of(server), server.mbox, public_dir, mboxo_spool.messages
    )
    server.stop()
    assert_empty_valid_mbox(server)


def test_retr_last_message_during_append(
    start_server: StartServer, public_dir: Path, mboxo_spool: Spool
) -> None:
    """procmail 3.22 appends by writing "F" alone, then the rest (strace).

    A session must still read the last message of its snapshot while only
    that first byte of the next message is there.
    """
    server = start_server(public_dir / "site", mboxo_spool.data, False)
    account = account_of(server)
    session = poplib.POP3(account.host, account.port, timeout=DEADLINE_S)
    session.user(account.user)
    session.pass_(account.password)
    last = len(mboxo_spool.messages)
    with server.mbox.open("ab") as mbox:
        # The first write of a procmail delivery, the rest still to come.
        mbox.write(b"F")
        mbox.flush()
        lines = session.retr(last)[1]
    assert b"".join(line + b"\r\n" for line in lines) == mboxo_spool.messages[-1]
    session.quit()


# SIGKILL during QUIT's expunge: after a restart every kept message is
# there once and whole, and each deleted one is gone or whole.

KILL_ROUNDS = 10
KILL_SEED = 20261204


@pytest.fixture(scope="module")
def big_spool() -> Spool:
    """About 6 MiB in 150 messages, so an expunge moves megabytes."""
    options = GenerateOptions(messages=150, target_size=6 * 1024 * 1024, seed=11)
    data, manifest = generate_bytes(options)
    return Spool(data, served_messages(data, manifest, False), False)


def login_and_delete(account: Account, deleted: list[int]) -> poplib.POP3:
    """Log in and DELE the messages; the caller sends QUIT."""
    session = poplib.POP3(account.host, account.port, timeout=DEADLINE_S)
    session.user(account.user)
    session.pass_(account.password)
    for msgno in deleted:
        session.dele(msgno)
    return session


def send_quit(session: poplib.POP3) -> None:
    """Send QUIT without waiting for the reply (poplib's quit() waits)."""
    session.sock.sendall(b"QUIT\r\n")


def fetch_all(account: Account) -> list[bytes]:
    session = poplib.POP3(account.host, account.port, timeout=DEADLINE_S)
    session.user(account.user)
    session.pass_(account.password)
    count, _ = session.stat()
    messages = []
    for msgno in range(1, count + 1):
        lines = session.retr(msgno)[1]
        messages.append(b"".join(line + b"\r\n" for line in lines))
    session.quit()
    return messages


def check_after_kill(found: list[bytes], spool: Spool, deleted: set[int]) -> None:
    """Assert the kill lost, duplicated, reordered and garbled nothing."""
    original = {message_id(m): (n, m) for n, m in enumerate(spool.messages, 1)}
    seen = Counter(message_id(m) for m in found)
    assert [mid for mid, count in seen.items() if count > 1] == []
    for message in found:
        assert message == original[message_id(message)][1], message_id(message)
    numbers = [original[message_id(m)][0] for m in found]
    assert numbers == sorted(numbers)
    kept = set(range(1, len(spool.messages) + 1)) - deleted
    assert kept <= set(numbers)


def test_sigkill_during_expunge_loses_nothing(
    public_dir: Path, big_spool: Spool
) -> None:
    rng = random.Random(KILL_SEED)
    server = SpoolgateServer(public_dir / "site")
    server.prepare(big_spool.data)
    count = len(big_spool.messages)
    # One uninterrupted QUIT measures how long the expunge takes.
    account = server.start()
    session = login_and_delete(account, sorted(rng.sample(range(1, count // 3), 10)))
    started = time.monotonic()
    assert session.quit().startswith(b"+OK")
    quit_s = time.monotonic() - started
    server.stop()

    resumed = 0
    try:
        for _ in range(KILL_ROUNDS):
            server.mbox.write_bytes(big_spool.data)
            account = server.start()
            deleted = sorted(rng.sample(range(1, count // 3), 10))
            session = login_and_delete(account, deleted)
            send_quit(session)
            # The kill instant is drawn over the measured QUIT time, so some
            # kills land before, some inside and some after the expunge.
            time.sleep(rng.uniform(0, quit_s * 1.5))
            server.kill()
            session.close()

            account = server.start()
            check_after_kill(fetch_all(account), big_spool, set(deleted))
            resumed += any("expunge resume" in line for line in server.drain_log())
            server.stop()
            assert scan_file(server.mbox).same_records(
                open_index(server.mbox, server.cache_dir, write=False)[0]
            )
    finally:
        server.kill()
    # At least one kill must have landed inside an expunge, or the test
    # proved nothing about crash safety.
    assert resumed >= 1, f"no kill interrupted an expunge (QUIT took {quit_s:.3f} s)"
