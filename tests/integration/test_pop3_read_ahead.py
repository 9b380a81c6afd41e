"""Read-ahead of the messages after a RETR: what it reads and when it drops them.

The server reads up to a few small messages after the one a RETR asks
for, in the same worker-thread call, and serves the next RETRs from
them. These tests change a read-ahead message on disk to see whether a
RETR was served from memory or read the mbox again.
"""

from __future__ import annotations

import asyncio
import poplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoolgate.auth import set_password
from spoolgate.mbox.cache import scan_file
from spoolgate.mbox.generate import GenerateOptions, generate_bytes
from spoolgate.mbox.lock import LockSettings
from spoolgate.pop3.config import (
    AuthConfig,
    ListenConfig,
    MaildropConfig,
    ServerConfig,
)
from spoolgate.pop3.maildrop_store import MaildropStore, MboxMaildrop
from spoolgate.pop3.server import (
    READ_AHEAD_BYTES,
    READ_AHEAD_MESSAGES,
    POP3Server,
    _open_and_read_ahead,
    build_runtime,
)

USER = "ann"
PASSWORD = "correct horse battery staple"
DEADLINE_S = 10.0
MESSAGES = 20


def write_mbox(path: Path, messages: int = MESSAGES) -> None:
    data, _ = generate_bytes(GenerateOptions(messages=messages, format="mboxo"))
    path.write_bytes(data)


def break_from_line(mbox: Path, msgno: int) -> None:
    """Overwrite the From_ line start of ``msgno`` in place, as a foreign edit."""
    offset = [record for record in scan_file(mbox) if not record.is_hidden][
        msgno - 1
    ].offset
    with mbox.open("r+b") as file:
        file.seek(offset)
        file.write(b"X")


def maildrop_config(root: Path) -> MaildropConfig:
    return MaildropConfig(
        mbox=str(root / "spool" / "{user}"),
        cache=str(root / "cache" / "{user}"),
        locking=LockSettings(timeout_s=2.0),
    )


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "spool").mkdir()
    write_mbox(tmp_path / "spool" / USER)
    return tmp_path


@pytest.fixture
def maildrop(spool: Path) -> Iterator[MboxMaildrop]:
    opened = MaildropStore(maildrop_config(spool)).open(USER)
    yield opened
    opened.close()


def test_read_ahead_takes_following_messages(maildrop: MboxMaildrop) -> None:
    _, _, ended, following = _open_and_read_ahead(maildrop, 3)
    assert ended
    assert list(following) == list(range(4, 4 + READ_AHEAD_MESSAGES))
    for msgno, message in following.items():
        assert message == maildrop.read_whole(msgno, READ_AHEAD_BYTES)


def test_read_ahead_stops_at_last_message(maildrop: MboxMaildrop) -> None:
    _, _, _, following = _open_and_read_ahead(maildrop, MESSAGES - 1)
    assert list(following) == [MESSAGES]


def test_read_ahead_stays_within_byte_budget(spool: Path) -> None:
    mbox = spool / "spool" / USER
    big = b"x" * 1000 + b"\n"
    with mbox.open("ab") as file:
        for number in range(3):
            file.write(b"From big@example.org Fri Dec  4 10:00:00 2026\n")
            file.write(f"Subject: big {number}\n\n".encode())
            file.write(big * (READ_AHEAD_BYTES // len(big) // 2))
    opened = MaildropStore(maildrop_config(spool)).open(USER)
    try:
        _, _, _, following = _open_and_read_ahead(opened, MESSAGES)
    finally:
        opened.close()
    assert list(following) == [MESSAGES + 1]


def test_read_ahead_ends_quietly_at_changed_message(
    spool: Path, maildrop: MboxMaildrop
) -> None:
    # Message 3 now ends at no From_ line, so it fails its check.
    break_from_line(spool / "spool" / USER, 4)
    _, _, ended, following = _open_and_read_ahead(maildrop, 1)
    assert ended
    assert list(following) == [2]


class ServerThread:
    """A POP3Server on its own event loop in a thread, plaintext login allowed."""

    def __init__(self, root: Path) -> None:
        passwd = root / "passwd"
        set_password(passwd, USER, PASSWORD)
        config = ServerConfig(
            listen=ListenConfig("127.0.0.1", 0, None),
            auth=AuthConfig(passwd_file=passwd),
            maildrop=maildrop_config(root),
            allow_plaintext_auth=True,
            shutdown_timeout_s=1.0,
        )
        self.server = POP3Server(build_runtime(config))
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> poplib.POP3:
        self._thread.start()
        assert self._ready.wait(DEADLINE_S), "server did not start"
        port = self.server.ports["pop3"]
        client = poplib.POP3("127.0.0.1", port, timeout=DEADLINE_S)
        client.user(USER)
        client.pass_(PASSWORD)
        return client

    def __exit__(self, *exc_info: object) -> None:
        future = asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop)
        future.result(DEADLINE_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(DEADLINE_S)
        self.loop.close()


def test_retr_in_order_served_from_read_ahead(spool: Path) -> None:
    with ServerThread(spool) as client:
        expected = client.retr(2)[1]
        client.retr(1)
        break_from_line(spool / "spool" / USER, 2)
        # Message 2 was read and checked with message 1's call.
        assert client.retr(2)[1] == expected
        client.quit()


@pytest.mark.parametrize("command", ["dele 5", "rset"])
def test_retr_after_dele_or_rset_rereads(spool: Path, command: str) -> None:
    with ServerThread(spool) as client:
        client.retr(1)
        break_from_line(spool / "spool" / USER, 2)
        client._shortcmd(command)
        with pytest.raises(poplib.error_proto, match="cannot be read now"):
            client.retr(2)
        client.rset()
        client.quit()


def test_retr_out_of_order_rereads(spool: Path) -> None:
    with ServerThread(spool) as client:
        client.retr(1)
        break_from_line(spool / "spool" / USER, 3)
        client.retr(10)
        with pytest.raises(poplib.error_proto, match="cannot be read now"):
            client.retr(3)
        client.quit()
