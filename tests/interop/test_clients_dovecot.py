"""Check the client drivers against Dovecot, a reference POP3 server.

Dovecot 2.3 reads the mbox as mboxo: it serves each message as stored,
without the From_ line and with CRLF line ends. When every client stores
exactly those messages from Dovecot, a difference against spoolgate points
at spoolgate, not at a driver.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from clients import Client, PoplibClient, Security
from deliveries import download_during_deliveries
from dovecot import DovecotServer
from support import Spool, StartDovecot, check_download, client_cases

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def kept_server(
    module_dovecot: StartDovecot, module_public_dir: Path, mboxo_spool: Spool
) -> DovecotServer:
    """A Dovecot shared by the tests that keep every message."""
    return module_dovecot(module_public_dir / "kept", mboxo_spool.data)


def tls_logins(server: DovecotServer) -> int:
    """Count logins over TLS (STLS or POP3S) in Dovecot's log."""
    lines = server.log.read_text(errors="replace").splitlines()
    return sum(
        "pop3-login: Info: Login:" in line and ", TLS," in line for line in lines
    )


@pytest.mark.parametrize(("client", "security"), client_cases(every_security=True))
def test_client_keep_downloads_every_message(
    client: Client,
    security: Security,
    kept_server: DovecotServer,
    public_dir: Path,
    mboxo_spool: Spool,
) -> None:
    assert kept_server.account is not None
    before = tls_logins(kept_server)
    got = client.fetch(kept_server.account, public_dir, security=security)
    check_download(client, got, mboxo_spool.messages)
    if security is Security.PLAIN:
        assert tls_logins(kept_server) == before
    else:
        assert tls_logins(kept_server) > before


@pytest.mark.parametrize(("client", "security"), client_cases(every_security=False))
def test_client_delete_empties_maildrop(
    client: Client,
    security: Security,
    start_dovecot: StartDovecot,
    public_dir: Path,
    mboxo_spool: Spool,
) -> None:
    server = start_dovecot(public_dir / "deleted", mboxo_spool.data)
    assert server.account is not None
    got = client.fetch(server.account, public_dir, security=security, keep=False)
    check_download(client, got, mboxo_spool.messages)
    assert PoplibClient().fetch(server.account, public_dir) == []


@pytest.mark.skipif(shutil.which("procmail") is None, reason="procmail not installed")
def test_delivery_during_sessions_loses_nothing(
    start_dovecot: StartDovecot, public_dir: Path, mboxo_spool: Spool
) -> None:
    server = start_dovecot(public_dir / "site", mboxo_spool.data)
    assert server.account is not None
    download_during_deliveries(
        server.account, server.mbox, public_dir, mboxo_spool.messages
    )
