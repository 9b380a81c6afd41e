"""A private Dovecot POP3 server on one mbox, on free loopback ports.

``DovecotServer(mbox, state).start()`` runs ``dovecot.sh run`` (Dovecot in
the foreground) as our child, waits until both ports greet, and returns the
``Account`` to log in with. For several users, put ``%u`` in ``mbox`` and
pass ``passwd_lines`` (``user:{SCHEME}hash``). ``stop()`` sends SIGTERM to
that PID and waits.
Dovecot edits the mbox it serves (it adds X-IMAPbase, X-UID and Status
headers on the first login and rewrites the file on DELE), so give it a
copy. The mbox's directory and its parents must be enterable by the
``mail`` user, which runs Dovecot's mail processes.

Standard library only, so ``bench/pop3.py`` can use it as well.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

from clients import Account

SCRIPT = Path(__file__).resolve().parent / "dovecot.sh"
HOST = "127.0.0.1"
USER = "test"
PASSWORD = "testpass"
MAIL_USER = "mail"
START_ATTEMPTS = 3


def missing_requirements() -> str | None:
    """Return why Dovecot cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "Dovecot needs root to run its mail processes as the mail user"
    if not (
        Path("/usr/sbin/dovecot").exists() and Path("/usr/lib/dovecot/pop3").exists()
    ):
        return (
            "Dovecot not installed (scripts/install-test-deps.sh installs "
            "dovecot-core and dovecot-pop3d)"
        )
    if shutil.which("openssl") is None:
        return "openssl not installed (needed for Dovecot's test certificate)"
    try:
        pwd.getpwnam(MAIL_USER)
    except KeyError:
        return f"system user {MAIL_USER} not found (Dovecot runs mail processes as it)"
    return None


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def greets(port: int, use_tls: bool) -> bool:
    """Return whether a POP3 server on ``port`` sends its +OK greeting."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            if use_tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                with context.wrap_socket(sock) as tls:
                    return tls.recv(64).startswith(b"+OK")
            return sock.recv(64).startswith(b"+OK")
    except (OSError, ssl.SSLError):
        return False


class DovecotServer:
    """One Dovecot instance serving ``mbox`` with its state under ``state``."""

    def __init__(
        self,
        mbox: Path,
        state: Path,
        *,
        user: str = USER,
        password: str = PASSWORD,
        passwd_lines: list[str] | None = None,
    ) -> None:
        self.mbox = mbox
        self.state = state
        self.user = user
        self.password = password
        self.passwd_lines = passwd_lines
        self.process: subprocess.Popen[bytes] | None = None
        self.account: Account | None = None

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log(self) -> Path:
        """Dovecot's log file: logins, logouts and errors."""
        return self.state / "dovecot.log"

    def start(self, timeout_s: float = 30.0) -> Account:
        """Start Dovecot on two free ports, and retry if another process took one."""
        for _ in range(START_ATTEMPTS):
            account = self._try_start(timeout_s)
            if account is not None:
                self.account = account
                return account
        raise RuntimeError(
            f"Dovecot did not start in {START_ATTEMPTS} attempts; see {self.log}"
        )

    def _try_start(self, timeout_s: float) -> Account | None:
        port, tls_port = free_port(), free_port()
        env = dict(
            os.environ,
            DOVECOT_STATE=str(self.state),
            DOVECOT_MBOX=str(self.mbox),
            DOVECOT_PORT=str(port),
            DOVECOT_PORT_SSL=str(tls_port),
            DOVECOT_USER=self.user,
            DOVECOT_PASS=self.password,
            DOVECOT_MAIL_USER=MAIL_USER,
        )
        self.state.mkdir(parents=True, exist_ok=True)
        if self.passwd_lines is not None:
            users = self.state / "users"
            users.write_text("".join(line + "\n" for line in self.passwd_lines))
            users.chmod(0o600)
            env["DOVECOT_PASSWD_FILE"] = str(users)
        self.process = subprocess.Popen(
            [str(SCRIPT), "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._check_failed_start()
                return None
            if greets(port, use_tls=False) and greets(tls_port, use_tls=True):
                return Account(HOST, port, tls_port, self.user, self.password)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"Dovecot did not greet within {timeout_s} s; see {self.log}"
        )

    def _check_failed_start(self) -> None:
        """Return if a port clash stopped Dovecot, so the caller retries, else raise."""
        assert self.process is not None
        _, stderr = self.process.communicate()
        self.process = None
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        if "Address already in use" in log[-2000:]:
            return None
        raise RuntimeError(
            f"Dovecot exited at start: {stderr.decode(errors='replace')[-2000:]} "
            f"{log[-2000:]}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send SIGTERM to Dovecot's master process and wait for it to exit."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()

    def reset_index(self) -> None:
        """Delete Dovecot's index, so the next login reads the mbox anew."""
        if self.process is not None:
            raise RuntimeError("stop Dovecot before deleting its index")
        shutil.rmtree(self.state / "index", ignore_errors=True)
        shutil.rmtree(self.state / "mail", ignore_errors=True)
