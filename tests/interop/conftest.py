"""Fixtures for tests with real POP3 clients: spools, Dovecot and client ids."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot import DovecotServer, missing_requirements
from support import Spool, StartDovecot, make_spool


@pytest.fixture(scope="session")
def mboxo_spool() -> Spool:
    return make_spool(mboxrd=False)


@pytest.fixture(scope="session")
def mboxrd_spool() -> Spool:
    return make_spool(mboxrd=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A temporary directory the mail user can enter (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="spoolgate-interop-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def module_public_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spoolgate-interop-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def dovecot_factory(root: Path) -> Iterator[StartDovecot]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    servers: list[DovecotServer] = []

    def start(directory: Path, data: bytes) -> DovecotServer:
        directory.mkdir(mode=0o755, exist_ok=True)
        mbox = directory / "inbox.mbox"
        mbox.write_bytes(data)
        server = DovecotServer(mbox, directory / "dovecot")
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def start_dovecot(public_dir: Path) -> Iterator[StartDovecot]:
    """Return a function that serves a copy of an mbox with a new Dovecot."""
    yield from dovecot_factory(public_dir)


@pytest.fixture(scope="module")
def module_dovecot(module_public_dir: Path) -> Iterator[StartDovecot]:
    yield from dovecot_factory(module_public_dir)
