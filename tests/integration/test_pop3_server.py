"""The POP3 server on 127.0.0.1 with real mbox files, driven by poplib.

Most tests run the server in a thread of this process so they can read
its logs and its session count. Tests of signals and memory use run
``spoolgate pop3d`` as a child process.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import poplib
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from spoolgate.auth import set_password
from spoolgate.errors import MboxError
from spoolgate.mbox.cache import Refresh, cache_path_for, open_index, scan_file
from spoolgate.mbox.generate import GenerateOptions, generate_bytes
from spoolgate.mbox.lock import LockSettings
from spoolgate.mbox.scan import read_message
from spoolgate.mbox.store import Mailbox
from spoolgate.pop3.config import (
    AuthConfig,
    ListenConfig,
    MaildropConfig,
    ServerConfig,
    TLSConfig,
)
from spoolgate.pop3.server import (
    POP3Server,
    SessionLogFilter,
    build_runtime,
    warn_risky_settings,
)

USER = "ann"
PASSWORD = "correct horse battery staple"
DEADLINE_S = 10.0
MESSAGES = 12


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def passwd_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One argon2id passwd line, hashed once for the whole module."""
    path = tmp_path_factory.mktemp("passwd") / "passwd"
    set_password(path, USER, PASSWORD)
    return path.read_text()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


class Site:
    """Files of one server: spool, cache, passwd, certificate, settings."""

    def __init__(self, root: Path, passwd_text: str, ca: trustme.CA) -> None:
        self.root = root
        self.spool = root / "spool"
        self.spool.mkdir()
        self.mbox = self.spool / USER
        data, _ = generate_bytes(GenerateOptions(messages=MESSAGES, format="mboxo"))
        self.mbox.write_bytes(data)
        self.passwd = root / "passwd"
        self.passwd.write_text(passwd_text)
        self.passwd.chmod(0o600)
        self.ca = ca
        self.cert, self.key = root / "cert.pem", root / "key.pem"
        self.write_certificate(ca)
        self.config = ServerConfig(
            listen=ListenConfig("127.0.0.1", 0, 0),
            tls=TLSConfig(self.cert, self.key),
            auth=AuthConfig(passwd_file=self.passwd),
            maildrop=MaildropConfig(
                mbox=str(self.spool / "{user}"),
                cache=str(root / "cache" / "{user}"),
                locking=LockSettings(timeout_s=2.0),
            ),
            failed_login_delay_s=0.05,
            shutdown_timeout_s=1.0,
        )

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache" / USER

    def write_certificate(self, ca: trustme.CA) -> None:
        issued = ca.issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(self.cert)
        issued.private_key_pem.write_to_path(self.key)
        self.key.chmod(0o600)

    def client_context(self, ca: trustme.CA | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        (ca or self.ca).configure_trust(context)
        return context

    def expected_messages(self) -> list[bytes]:
        """Return the POP3 octets of each visible message, read independently."""
        data = self.mbox.read_bytes()
        index = scan_file(self.mbox)
        return [
            b"".join(read_message([data[r.offset : r.offset + r.length]]))
            for r in index
            if not r.is_hidden
        ]


@pytest.fixture
def site(tmp_path: Path, passwd_text: str, ca: trustme.CA) -> Site:
    return Site(tmp_path, passwd_text, ca)


class ServerThread:
    """A POP3Server running on its own event loop in a thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.server = POP3Server(build_runtime(config))
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(DEADLINE_S), "server did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        future = asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop)
        future.result(DEADLINE_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(DEADLINE_S)
        self.loop.close()

    @property
    def pop3_port(self) -> int:
        return self.server.ports["pop3"]

    @property
    def pop3s_port(self) -> int:
        return self.server.ports["pop3s"]

    def sessions(self) -> int:
        return self.server.session_count


def run_server(config: ServerConfig) -> ServerThread:
    return ServerThread(config)


def connect_stls(site: Site, port: int) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port, timeout=DEADLINE_S)
    client.stls(site.client_context())
    return client


def login_pop3s(site: Site, port: int) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL(
        "127.0.0.1", port, context=site.client_context(), timeout=DEADLINE_S
    )
    client.user(USER)
    client.pass_(PASSWORD)
    return client


def message_bytes(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def test_session_every_command_matches_mbox(site: Site) -> None:
    expected = site.expected_messages()
    before = site.mbox.read_bytes()
    with run_server(site.config) as running:
        client = connect_stls(site, running.pop3_port)
        capabilities = client.capa()
        assert "USER" in capabilities
        assert "STLS" not in capabilities
        client.user(USER)
        client.pass_(PASSWORD)
        count, octets = client.stat()
        assert count == len(expected)
        assert octets == sum(len(m) for m in expected)
        _, listing, _ = client.list()
        assert listing == [b"%d %d" % (n + 1, len(m)) for n, m in enumerate(expected)]
        assert client.list(2).split()[1:] == [b"2", b"%d" % len(expected[1])]
        _, uidls, _ = client.uidl()
        assert len({line.split()[1] for line in uidls}) == len(expected)
        assert client.uidl(3).split()[2] == uidls[2].split()[1]
        for number, message in enumerate(expected, start=1):
            _, lines, _ = client.retr(number)
            assert message_bytes(lines) == message
        _, top, _ = client.top(1, 0)
        assert message_bytes(top) == expected[0].split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert client.noop().startswith(b"+OK")
        client.dele(1)
        assert client.stat() == (count - 1, octets - len(expected[0]))
        client.rset()
        assert client.stat() == (count, octets)
        assert client.quit().startswith(b"+OK")
    assert site.mbox.read_bytes() == before


def test_auth_plain_initial_response_logs_in(site: Site) -> None:
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    with run_server(site.config) as running:
        client = poplib.POP3_SSL(
            "127.0.0.1",
            running.pop3s_port,
            context=site.client_context(),
            timeout=DEADLINE_S,
        )
        assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
        assert client.stat()[0] == MESSAGES
        client.quit()


def test_pop3s_retr_matches_mbox(site: Site) -> None:
    expected = site.expected_messages()
    with run_server(site.config) as running:
        client = login_pop3s(site, running.pop3s_port)
        _, lines, _ = client.retr(len(expected))
        assert message_bytes(lines) == expected[-1]
        client.quit()


def test_plaintext_login_before_stls_rejected(site: Site) -> None:
    with run_server(site.config) as running:
        client = poplib.POP3("127.0.0.1", running.pop3_port, timeout=DEADLINE_S)
        capabilities = client.capa()
        assert "STLS" in capabilities
        assert "USER" not in capabilities
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.user(USER)
        client.quit()


def test_stls_drops_pipelined_plaintext(site: Site) -> None:
    with run_server(site.config) as running:
        sock = socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
        assert read_line(sock).startswith(b"+OK")
        sock.sendall(b"STLS\r\nUSER " + USER.encode() + b"\r\n")
        assert read_line(sock) == b"+OK begin TLS negotiation\r\n"
        context = site.client_context()
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"PASS " + PASSWORD.encode() + b"\r\n")
            assert read_line(tls).startswith(b"-ERR PASS must follow")


def test_missing_mbox_is_empty_maildrop(site: Site) -> None:
    site.mbox.unlink()
    with run_server(site.config) as running:
        client = login_pop3s(site, running.pop3s_port)
        assert client.stat() == (0, 0)
        client.quit()


def test_invalid_mbox_login_gets_sys_perm(site: Site) -> None:
    site.mbox.write_bytes(b"this is not an mbox\n")
    with run_server(site.config) as running:
        client = login_context_client(site, running.pop3s_port)
        client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/PERM\]"):
            client.pass_(PASSWORD)
        client.quit()


def test_symlinked_mbox_login_gets_sys_perm(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="spoolgate")
    site.mbox.rename(site.spool / "dan")
    site.mbox.symlink_to("dan")
    with run_server(site.config) as running:
        client = login_context_client(site, running.pop3s_port)
        client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/PERM\]"):
            client.pass_(PASSWORD)
        client.quit()
    assert "symbolic link" in caplog.text


def test_mailbox_open_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "dan"
    target.write_bytes(b"From a@b Thu Jan  1 00:00:00 2026\n\nhi\n")
    link = tmp_path / "fay"
    link.symlink_to(target)
    with pytest.raises(MboxError, match="symbolic link"):
        Mailbox.open(link, tmp_path / "cache")


def test_plaintext_allowed_logs_in_and_warns(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    config = replace(site.config, allow_plaintext_auth=True)
    warn_risky_settings(config)
    assert "allow_plaintext_auth = true" in caplog.text
    with run_server(config) as running:
        client = poplib.POP3("127.0.0.1", running.pop3_port, timeout=DEADLINE_S)
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.stat()[0] == MESSAGES
        client.quit()


def timed_failed_login(site: Site, port: int, user: str) -> tuple[float, str]:
    client = login_context_client(site, port)
    client.user(user)
    started = time.monotonic()
    with pytest.raises(poplib.error_proto) as failure:
        client.pass_("wrong password")
    elapsed = time.monotonic() - started
    client.quit()
    return elapsed, str(failure.value)


def login_context_client(site: Site, port: int) -> poplib.POP3_SSL:
    return poplib.POP3_SSL(
        "127.0.0.1", port, context=site.client_context(), timeout=DEADLINE_S
    )


def test_failed_login_delay_same_for_unknown_user(site: Site) -> None:
    config = replace(site.config, failed_login_delay_s=0.4)
    with run_server(config) as running:
        known_s, known_reply = timed_failed_login(site, running.pop3s_port, USER)
        unknown_s, unknown_reply = timed_failed_login(site, running.pop3s_port, "bob")
    assert known_s >= 0.4
    assert unknown_s >= 0.4
    assert known_reply == unknown_reply
    assert "[AUTH]" in known_reply


def timed_plain_login(port: int) -> float:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), DEADLINE_S * 3) as sock:
        assert read_line(sock).startswith(b"+OK")
        sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
        assert read_line(sock).startswith(b"+OK")
        reply = read_line(sock)
        elapsed = time.monotonic() - started
        assert reply.startswith(b"+OK"), reply
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock).startswith(b"+OK")
    return elapsed


def wrong_login(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), DEADLINE_S, (source, 0))
    assert read_line(sock).startswith(b"+OK")
    sock.sendall(f"USER {USER}\r\nPASS wrong\r\n".encode())
    return sock


def test_login_storm_leaves_correct_login_fast(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="spoolgate")
    config = replace(
        site.config,
        allow_plaintext_auth=True,
        max_connections_per_address=100,
    )
    with run_server(config) as running:
        port = running.pop3_port
        baseline = sorted(timed_plain_login(port) for _ in range(3))[1]
        # 60 wrong passwords in flight from 12 addresses; every other
        # client leaves at once, as a scanner that gave up would.
        flood = [wrong_login(port, f"127.0.0.{2 + n % 12}") for n in range(60)]
        for sock in flood[1::2]:
            sock.close()
        stormy = timed_plain_login(port)
        for sock in flood[::2]:
            sock.close()
        wait_until(lambda: running.sessions() == 0, "sessions to end")
    # Loose on purpose: with checks queued first come first served, this
    # login waited for all 60 hashes, about 45 times the baseline.
    assert stormy < 20 * baseline + 1.0, (stormy, baseline)
    assert "reason='left during login'" in caplog.text


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def test_connections_per_address_limit_refuses_extra(site: Site) -> None:
    config = replace(site.config, max_connections_per_address=2)
    with run_server(config) as running:
        held = [
            socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
            for _ in range(2)
        ]
        for sock in held:
            assert read_line(sock).startswith(b"+OK")
        extra = socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
        assert read_line(extra).startswith(b"-ERR [SYS/TEMP] too many connections")
        assert extra.recv(1) == b""
        for sock in [*held, extra]:
            sock.close()
        wait_until(lambda: running.sessions() == 0, "sessions to end")
        again = socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
        assert read_line(again).startswith(b"+OK")
        again.close()


def test_pop3s_refusal_closes_without_plaintext(site: Site) -> None:
    config = replace(site.config, max_connections=1)
    with run_server(config) as running:
        held = socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
        assert read_line(held).startswith(b"+OK")
        extra = socket.create_connection(("127.0.0.1", running.pop3s_port), DEADLINE_S)
        assert extra.recv(100) == b""
        extra.close()
        held.close()


def test_idle_timeout_closes_session(site: Site) -> None:
    config = replace(site.config, idle_timeout_s=0.3)
    with run_server(config) as running:
        sock = socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
        assert read_line(sock).startswith(b"+OK")
        started = time.monotonic()
        assert read_line(sock) == b"-ERR idle timeout, closing connection\r\n"
        assert sock.recv(1) == b""
        assert time.monotonic() - started >= 0.3
        sock.close()


def test_idle_timeout_ignores_trickled_octets(site: Site) -> None:
    config = replace(site.config, idle_timeout_s=0.6)
    with run_server(config) as running:
        sock = socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
        assert read_line(sock).startswith(b"+OK")
        started = time.monotonic()
        sock.settimeout(0.2)
        reply = b""
        # One octet every 0.2 s, never a line feed, for at most 6 s.
        for _ in range(30):
            try:
                sock.sendall(b"X")
                reply = sock.recv(100)
                break
            except TimeoutError:
                continue
        elapsed = time.monotonic() - started
        sock.close()
    assert reply == b"-ERR idle timeout, closing connection\r\n"
    assert elapsed < 3.0


def test_idle_timeout_restarts_on_each_command(site: Site) -> None:
    config = replace(site.config, idle_timeout_s=0.6)
    with run_server(config) as running:
        sock = socket.create_connection(("127.0.0.1", running.pop3_port), DEADLINE_S)
        assert read_line(sock).startswith(b"+OK")
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            sock.sendall(b"CAPA\r\n")
            assert read_line(sock).startswith(b"+OK")
            while read_line(sock) != b".\r\n":
                pass
            # Pacing of the client's commands, not a wait for server state.
            time.sleep(0.2)
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock).startswith(b"+OK")
        sock.close()


def test_second_session_gets_in_use(site: Site) -> None:
    with run_server(site.config) as running:
        first = login_pop3s(site, running.pop3s_port)
        second = login_context_client(site, running.pop3s_port)
        second.user(USER)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_(PASSWORD)
        first.quit()
        second.user(USER)
        assert second.pass_(PASSWORD).startswith(b"+OK")
        second.quit()


def test_session_lock_file_excludes_other_process(site: Site) -> None:
    site.cache_dir.mkdir(parents=True)
    cache = cache_path_for(site.mbox, site.cache_dir)
    session_file = cache.with_name(cache.name + ".pop3")
    with session_file.open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with run_server(site.config) as running:
            client = login_context_client(site, running.pop3s_port)
            client.user(USER)
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                client.pass_(PASSWORD)
            client.quit()


NEW_MESSAGE = (
    b"From late@example.org Fri Dec  4 17:00:00 2026\n"
    b"From: late@example.org\nMessage-ID: <late@test>\nSubject: late\n\n"
    b"delivered during a session\n\n"
)


def test_snapshot_hides_mail_delivered_meanwhile(site: Site) -> None:
    expected = site.expected_messages()
    with run_server(site.config) as running:
        client = login_pop3s(site, running.pop3s_port)
        with site.mbox.open("ab") as mbox:
            mbox.write(NEW_MESSAGE)
        assert client.stat()[0] == MESSAGES
        client.dele(1)
        client.quit()
        client = login_pop3s(site, running.pop3s_port)
        assert client.stat()[0] == MESSAGES
        _, lines, _ = client.retr(1)
        assert message_bytes(lines) == expected[1]
        _, lines, _ = client.retr(MESSAGES)
        assert b"delivered during a session" in message_bytes(lines)
        client.quit()


def test_quit_expunge_updates_cache_without_rescan(site: Site) -> None:
    expected = site.expected_messages()
    with run_server(site.config) as running:
        client = login_pop3s(site, running.pop3s_port)
        client.dele(2)
        client.dele(5)
        assert b"2 deleted" in client.quit()
    index, report = open_index(site.mbox, site.cache_dir)
    assert report.outcome is Refresh.HIT
    assert index.same_records(scan_file(site.mbox))
    assert site.expected_messages() == [
        m for n, m in enumerate(expected, start=1) if n not in (2, 5)
    ]


def test_dropped_connection_expunges_nothing(site: Site) -> None:
    before = site.mbox.read_bytes()
    with run_server(site.config) as running:
        client = login_pop3s(site, running.pop3s_port)
        client.dele(1)
        client.close()
        wait_until(lambda: running.sessions() == 0, "the dropped session to end")
        assert site.mbox.read_bytes() == before
        again = login_pop3s(site, running.pop3s_port)
        assert again.stat()[0] == MESSAGES
        again.quit()


def test_logs_one_line_per_event_without_password(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="spoolgate")
    caplog.handler.addFilter(SessionLogFilter())
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    with run_server(site.config) as running:
        failing = login_context_client(site, running.pop3s_port)
        failing.user(USER)
        with pytest.raises(poplib.error_proto):
            failing.pass_(PASSWORD + "x")
        failing.quit()
        client = login_context_client(site, running.pop3s_port)
        client._shortcmd(f"AUTH PLAIN {token}")
        client.quit()
        wait_until(lambda: running.sessions() == 0, "sessions to end")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("spoolgate")]
    session_lines = [line for line in lines if line.startswith("pop3 ")]
    for event in ("connect", "logout"):
        found = [line for line in session_lines if line.startswith(f"pop3 {event} ")]
        assert len(found) == 2, event
        assert all(re.search(r"session=[0-9a-f]{8} ", line) for line in found)
    assert len([x for x in session_lines if x.startswith("pop3 login failed ")]) == 1
    assert len([x for x in session_lines if x.startswith("pop3 login session=")]) == 1
    index_lines = [line for line in lines if line.startswith("index open ")]
    assert index_lines
    assert all(re.search(r" session=[0-9a-f]{8}$", line) for line in index_lines)
    for line in lines:
        assert PASSWORD not in line
        assert token not in line
        assert base64.b64encode(PASSWORD.encode()).decode() not in line


# The child-process tests: signals and memory.


def write_toml(site: Site, **pop3: str) -> Path:
    settings = {"failed_login_delay_s": "0.05", "shutdown_timeout_s": "1.0", **pop3}
    pop3_lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    path = site.root / "pop3d.toml"
    path.write_text(
        '[listen]\nhost = "127.0.0.1"\npop3_port = 0\npop3s_port = 0\n'
        f'[tls]\ncertificate = "{site.cert}"\nprivate_key = "{site.key}"\n'
        f'[auth]\npasswd_file = "{site.passwd}"\n'
        f'[maildrop]\nmbox = "{site.spool}/{{user}}"\n'
        f'cache = "{site.root}/cache/{{user}}"\n'
        f"[locking]\ntimeout_s = 2.0\n[pop3]\n{pop3_lines}"
    )
    return path


@pytest.mark.parametrize("line", ["ann:{PLAIN}secret", "no colon here"])
def test_bad_passwd_line_exits_config_error(site: Site, line: str) -> None:
    site.passwd.write_text(line + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "spoolgate", "pop3d", "--config", str(write_toml(site))],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert result.returncode == 2
    assert "auth.passwd_file" in result.stderr


class ChildServer:
    """``spoolgate pop3d`` in a child process, its stderr read in a thread."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spoolgate", "-v", "pop3d", "--config", str(config)],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.ports = {
            kind: int(self.wait_for(rf"pop3 listen kind={kind} .* port=(\d+)").group(1))
            for kind in ("pop3", "pop3s")
        }

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + DEADLINE_S
        for line in self.seen:
            if match := re.search(pattern, line):
                return match
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no log line matched {pattern!r}: {self.seen[-5:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(DEADLINE_S)

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        assert match is not None
        return int(match.group(1))


@pytest.fixture
def child_factory() -> Iterator[Callable[[Path], ChildServer]]:
    started: list[ChildServer] = []

    def start(config: Path) -> ChildServer:
        child = ChildServer(config)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait(DEADLINE_S)


def test_sighup_reloads_certificate(
    site: Site, child_factory: Callable[[Path], ChildServer]
) -> None:
    child = child_factory(write_toml(site))
    other_ca = trustme.CA()
    site.write_certificate(other_ca)
    child.process.send_signal(signal.SIGHUP)
    child.wait_for("pop3 config reloaded")
    client = poplib.POP3_SSL(
        "127.0.0.1",
        child.ports["pop3s"],
        context=site.client_context(other_ca),
        timeout=DEADLINE_S,
    )
    client.user(USER)
    client.pass_(PASSWORD)
    client.quit()
    with pytest.raises(ssl.SSLCertVerificationError):
        login_pop3s(site, child.ports["pop3s"])
    assert child.stop() == 0


def test_sigterm_stops_without_expunge(
    site: Site, child_factory: Callable[[Path], ChildServer]
) -> None:
    before = site.mbox.read_bytes()
    child = child_factory(write_toml(site))
    client = login_pop3s(site, child.ports["pop3s"])
    client.dele(1)
    child.process.send_signal(signal.SIGTERM)
    child.wait_for("pop3 shutdown sessions=1")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", child.ports["pop3"]), DEADLINE_S)
    assert child.process.wait(DEADLINE_S) == 0
    assert site.mbox.read_bytes() == before
    child.wait_for(r"pop3 logout .*reason='server shutdown'")


LARGE_BODY_MIB = 50


def write_large_mbox(path: Path) -> int:
    """Write one message with a 50 MiB body; return its POP3 octet count."""
    line = b"x" * 78 + b"\n"
    lines = LARGE_BODY_MIB * 1024 * 1024 // len(line)
    header = b"From big@example.org Fri Dec  4 17:00:00 2026\nSubject: big\n\n"
    with path.open("wb") as mbox:
        mbox.write(header)
        block = line * 1024
        for _ in range(lines // 1024):
            mbox.write(block)
    body_lines = lines // 1024 * 1024
    return len(b"Subject: big\r\n\r\n") + body_lines * (len(line) + 1)


def retr_discarding(sock: socket.socket, octets: int) -> int:
    """Send RETR 1 and read the reply to its end; return the body octets."""
    sock.sendall(b"RETR 1\r\n")
    received = 0
    tail = b""
    while not tail.endswith(b"\r\n.\r\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed during RETR"
        received += len(chunk)
        tail = (tail + chunk)[-5:]
    return received


@pytest.mark.slow
def test_large_message_streams_with_flat_memory(
    site: Site, child_factory: Callable[[Path], ChildServer]
) -> None:
    octets = write_large_mbox(site.mbox)
    child = child_factory(write_toml(site, allow_plaintext_auth="true"))
    sock = socket.create_connection(("127.0.0.1", child.ports["pop3"]), DEADLINE_S)
    sock.settimeout(60)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"+OK")
    sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\nLIST 1\r\n".encode())
    assert reader.readline().startswith(b"+OK")
    assert reader.readline().startswith(b"+OK")
    assert reader.readline() == b"+OK 1 %d\r\n" % octets
    before_kib = child.peak_rss_kib()
    received = retr_discarding(sock, octets)
    growth_kib = child.peak_rss_kib() - before_kib
    assert received > octets
    assert growth_kib < 8 * 1024, f"peak RSS grew by {growth_kib} KiB"
    sock.sendall(b"QUIT\r\n")
    sock.close()
    assert child.stop() == 0
