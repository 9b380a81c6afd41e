"""``spoolgate demo`` in a child process: read its JSON line, fetch with poplib."""

from __future__ import annotations

import json
import os
import poplib
import selectors
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoolgate.mbox.cache import scan_file

DEADLINE_S = 30.0

OWN_MBOX = (
    b"From ann@example.org Fri Dec  4 09:00:00 2026\n"
    b"From: ann@example.org\nSubject: first\n\nhello\n.dot line\n\n"
    b"From bob@example.org Fri Dec  4 10:00:00 2026\n"
    b"From: bob@example.org\nSubject: second\n\nbye\n"
)


class Demo:
    """A running ``spoolgate demo --json`` and the details it printed."""

    def __init__(self, state_dir: Path, *extra: str) -> None:
        command = [sys.executable, "-m", "spoolgate", "demo", "--json"]
        command += ["--state-dir", str(state_dir), "--messages", "25"]
        command += ["--pop3-port", "0", "--pop3s-port", "0", *extra]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.details = json.loads(self._first_line())

    def _first_line(self) -> bytes:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(DEADLINE_S):
                raise AssertionError("demo printed no JSON line in time")
        line = self.process.stdout.readline()
        assert line, f"demo exited: {self.stderr_text()}"
        return line

    def stderr_text(self) -> str:
        self.process.kill()
        _, err = self.process.communicate(timeout=DEADLINE_S)
        return err.decode(errors="replace")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.details["certificate"])

    def login_pop3s(self) -> poplib.POP3_SSL:
        client = poplib.POP3_SSL(
            self.details["host"],
            self.details["pop3s_port"],
            context=self.context(),
            timeout=DEADLINE_S,
        )
        client.user(self.details["user"])
        client.pass_(self.details["password"])
        return client

    def stop(self) -> int:
        os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(DEADLINE_S)


@pytest.fixture
def demos() -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        if demo.process.poll() is None:
            demo.process.kill()
            demo.process.wait(DEADLINE_S)


def test_demo_json_serves_generated_spool(tmp_path: Path, demos: list[Demo]) -> None:
    state_dir = tmp_path / "state"
    demo = Demo(state_dir)
    demos.append(demo)
    details = demo.details
    assert details["host"] == "127.0.0.1"
    assert details["user"] == "demo"
    assert Path(details["state_dir"]) == state_dir.resolve()
    assert (state_dir / "password").stat().st_mode & 0o777 == 0o600
    assert (state_dir / "password").read_text().strip() == details["password"]
    client = demo.login_pop3s()
    count, _ = client.stat()
    assert count == details["messages"]
    assert count == len(scan_file(details["mbox"]))
    assert client.retr(1)[0].startswith(b"+OK")
    client.quit()
    started = time.monotonic()
    assert demo.stop() == 0
    assert time.monotonic() - started < 10


def test_demo_stls_port_serves_after_starttls(
    tmp_path: Path, demos: list[Demo]
) -> None:
    demo = Demo(tmp_path / "state")
    demos.append(demo)
    client = poplib.POP3(
        demo.details["host"], demo.details["pop3_port"], timeout=DEADLINE_S
    )
    client.stls(demo.context())
    client.user(demo.details["user"])
    client.pass_(demo.details["password"])
    assert client.stat()[0] == demo.details["messages"]
    client.quit()
    assert demo.stop() == 0


def test_demo_own_mbox_serves_a_copy(tmp_path: Path, demos: list[Demo]) -> None:
    own = tmp_path / "mine.mbox"
    own.write_bytes(OWN_MBOX)
    demo = Demo(tmp_path / "state", "--mbox", str(own))
    demos.append(demo)
    assert Path(demo.details["mbox"]) != own.resolve()
    client = demo.login_pop3s()
    _, lines, _ = client.retr(1)
    assert lines == [
        b"From: ann@example.org",
        b"Subject: first",
        b"",
        b"hello",
        b".dot line",
    ]
    _, lines, _ = client.retr(2)
    assert lines[-1] == b"bye"
    client.dele(1)
    client.quit()
    assert demo.stop() == 0
    assert own.read_bytes() == OWN_MBOX
