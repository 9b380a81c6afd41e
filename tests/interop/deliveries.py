"""Deliver with procmail while real clients download and delete.

``download_during_deliveries`` runs the clients in turn, each deleting
what it downloaded, while a thread delivers messages with procmail. Every
message, from the spool or delivered, must reach exactly one client, whole.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from clients import CLIENTS, Account, Client, expected_forms, to_crlf

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)
DEADLINE_S = 120.0
DELIVERIES = 40


def make_delivery(number: int) -> bytes:
    """Build a message whose last line carries a digest of the rest."""
    head = (
        b"From: sender@example.org\n"
        b"To: ann@example.org\n"
        b"Message-ID: <delivery-%d@test.example>\n"
        b"Subject: delivery %d\n\n" % (number, number)
    )
    body = b"".join(b"line %d of delivery %d\n" % (i, number) for i in range(20))
    digest = hashlib.sha256(head + body).hexdigest().encode()
    return head + body + b"digest " + digest + b"\n"


def message_id(message: bytes) -> bytes:
    """Return a message's Message-ID."""
    match = MESSAGE_ID.search(message)
    assert match is not None, message[:200]
    return match.group(1)


class Deliverer(threading.Thread):
    """Deliver messages into an mbox with procmail, one every 50 ms or so."""

    def __init__(self, mbox: Path, rcdir: Path, count: int) -> None:
        super().__init__(daemon=True)
        self.mbox = mbox
        self.count = count
        self.rcfile = rcdir / "procmailrc"
        # LOCKSLEEP=0: retry a busy dotlock without procmail's 8 s pause.
        self.rcfile.write_text(f"DEFAULT={mbox}\nLOCKSLEEP=0\n")
        self.messages: dict[bytes, bytes] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        for number in range(self.count):
            message = make_delivery(number)
            result = subprocess.run(
                ["procmail", "-f", "sender@example.org", "-m", str(self.rcfile)],
                input=message,
                capture_output=True,
                timeout=DEADLINE_S,
                check=False,
            )
            if result.returncode != 0:
                self.errors.append(result.stderr.decode(errors="replace"))
            self.messages[message_id(message)] = to_crlf(message)
            # Spread the deliveries over several client sessions.
            time.sleep(0.05)


def download_during_deliveries(
    account: Account, mbox: Path, workdir: Path, spool_messages: list[bytes]
) -> None:
    """Assert every message reaches one client whole while procmail delivers."""
    expected = {message_id(m): m for m in spool_messages}
    deliverer = Deliverer(mbox, workdir, DELIVERIES)
    clients = [c for c in CLIENTS if c.missing() is None]
    stored: list[tuple[Client, bytes]] = []
    deliverer.start()
    deadline = time.monotonic() + DEADLINE_S
    for round_number in range(1000):
        assert time.monotonic() < deadline, "deliveries were not all fetched in time"
        client = clients[round_number % len(clients)]
        got = client.fetch(account, workdir, keep=False)
        stored += [(client, message) for message in got]
        if not got and not deliverer.is_alive():
            break
    deliverer.join(DEADLINE_S)

    assert deliverer.errors == []
    expected.update(deliverer.messages)
    counts = Counter(message_id(message) for _, message in stored)
    assert set(counts) == set(expected)
    assert [mid for mid, n in counts.items() if n != 1] == []
    for client, message in stored:
        wanted = expected_forms(client, [expected[message_id(message)]])[0]
        assert message == wanted, f"{client.name}: {message_id(message)!r} differs"
