"""``spoolgate pop3d`` as a child process, with its files in one directory.

``SpoolgateServer(root).prepare(mbox_data)`` writes the spool, a passwd
file (made with ``spoolgate passwd --stdin`` unless ready lines are given),
a self-signed certificate and a config that listens on 127.0.0.1 port 0.
``start()`` runs the server and reads the bound ports from its log;
``stop()`` sends SIGTERM and ``kill()`` SIGKILL, both to the child's PID.

Standard library only, so ``bench/pop3.py`` can use it as well.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from clients import Account

HOST = "127.0.0.1"
USER = "ann"
PASSWORD = "correct horse battery staple"
LISTEN_LINE = re.compile(r"pop3 listen kind=(pop3s?) host=\S+ port=(\d+)")


def spoolgate_command(*args: str) -> list[str]:
    """Return the command line that runs ``spoolgate`` with this interpreter."""
    return [sys.executable, "-m", "spoolgate", *args]


def write_certificate(certificate: Path, private_key: Path) -> None:
    """Write a self-signed certificate for 127.0.0.1 with openssl."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(private_key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    private_key.chmod(0o600)


class SpoolgateServer:
    """One ``spoolgate pop3d`` with its spool, cache and config under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        mboxrd: bool = False,
        user: str = USER,
        password: str = PASSWORD,
    ) -> None:
        self.root = root
        self.mboxrd = mboxrd
        self.user = user
        self.password = password
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.log_lines: list[str] = []
        self.account: Account | None = None

    @property
    def spool_dir(self) -> Path:
        """The directory of every user's mbox, named as the user."""
        return self.root / "spool"

    @property
    def mbox(self) -> Path:
        """The user's mbox."""
        return self.spool_dir / self.user

    @property
    def cache_dir(self) -> Path:
        """The directory of the user's index cache."""
        return self.root / "cache" / self.user

    @property
    def config(self) -> Path:
        """The server's TOML config file."""
        return self.root / "pop3d.toml"

    def prepare(
        self, mbox_data: bytes, *, passwd_lines: list[str] | None = None
    ) -> None:
        """Write the mbox, passwd file, certificate and config.

        ``passwd_lines`` (``user:{SCHEME}hash``) replace the one user made
        with ``spoolgate passwd``; other users' mboxes go in ``spool_dir``.
        """
        (self.root / "spool").mkdir(parents=True, exist_ok=True)
        self.mbox.write_bytes(mbox_data)
        passwd = self.root / "passwd"
        if passwd_lines is None:
            subprocess.run(
                spoolgate_command(
                    "passwd", "--stdin", "--file", str(passwd), self.user
                ),
                input=self.password + "\n",
                text=True,
                check=True,
                capture_output=True,
                timeout=60,
            )
        else:
            passwd.write_text("".join(line + "\n" for line in passwd_lines))
            passwd.chmod(0o600)
        certificate, private_key = self.root / "cert.pem", self.root / "key.pem"
        if not certificate.exists():
            write_certificate(certificate, private_key)
        variant = "mboxrd" if self.mboxrd else "mboxo"
        # Plaintext logins are allowed before STLS because clients in the
        # tests also log in without TLS, on loopback.
        self.config.write_text(
            f'[listen]\nhost = "{HOST}"\npop3_port = 0\npop3s_port = 0\n'
            f'[tls]\ncertificate = "{certificate}"\nprivate_key = "{private_key}"\n'
            f'[auth]\npasswd_file = "{passwd}"\n'
            f'[maildrop]\nmbox = "{self.root}/spool/{{user}}"\n'
            f'cache = "{self.root}/cache/{{user}}"\nvariant = "{variant}"\n'
            "[pop3]\nallow_plaintext_auth = true\nfailed_login_delay_s = 0.1\n"
            "shutdown_timeout_s = 5.0\nmax_connections_per_address = 100\n"
        )

    def start(self, timeout_s: float = 30.0) -> Account:
        """Start the server and wait until both listeners report their ports."""
        self.lines = queue.Queue()
        self.log_lines = []
        self.process = subprocess.Popen(
            spoolgate_command("-v", "pop3d", "--config", str(self.config)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
        ports: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ports) < 2:
            line = self.next_line(deadline)
            if match := LISTEN_LINE.search(line):
                ports[match.group(1)] = int(match.group(2))
        self.account = Account(
            HOST, ports["pop3"], ports["pop3s"], self.user, self.password
        )
        return self.account

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.put(line)

    def next_line(self, deadline: float) -> str:
        """Return the next log line; raise RuntimeError if none comes in time."""
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process is not None and self.process.poll() is not None:
                    break
                continue
            self.log_lines.append(line)
            return line
        raise RuntimeError(
            f"spoolgate pop3d logged nothing expected in time: {self.log_lines[-10:]}"
        )

    def drain_log(self) -> list[str]:
        """Return every log line so far, including those not yet read."""
        while True:
            try:
                self.log_lines.append(self.lines.get_nowait())
            except queue.Empty:
                return self.log_lines

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Send SIGTERM and wait for the exit; return the exit code."""
        return self._end(signal.SIGTERM, timeout_s)

    def kill(self, timeout_s: float = 30.0) -> int | None:
        """Send SIGKILL and wait for the exit; return the exit code."""
        return self._end(signal.SIGKILL, timeout_s)

    def _end(self, signum: signal.Signals, timeout_s: float) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout_s)
