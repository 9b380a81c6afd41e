"""Drivers for real POP3 clients: each downloads a maildrop and returns it.

Every driver runs its client as a subprocess with a timeout, in a temporary
directory of its own, against any POP3 server (Dovecot or spoolgate) given
as an ``Account``. ``fetch`` returns the messages the client stored, in
msgno order, after undoing the storage format where that format can be
undone (the From_ line the client wrote, mboxrd quoting). Line ends are
returned as CRLF, the form POP3 sends, because mbox-writing clients store
LF.

Some clients change what they store in ways that cannot be undone. A
driver's ``stored_form`` applies the same change to a message as the
server sent it, and tests compare ``fetch`` output with ``stored_form`` of
the expected messages:

* procmail (as fetchmail's MDA) writes mboxo: a body line starting with
  "From " gets a ">" that no reader can tell from an original one, and a
  message ending in an empty line gets no extra separator line.
* getmail6 parses every message with Python's email package and writes it
  back (compat32 policy), which refolds header lines over 78 characters.

This module uses only the standard library, so ``bench/pop3.py`` can use
it as well. Run as a script, it is the poplib client (``poplib`` mode).
"""

from __future__ import annotations

import argparse
import enum
import getpass
import json
import os
import poplib
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

DEFAULT_TIMEOUT_S = 120.0

# A From_ line as the clients write it: sender, then an asctime date.
# procmail puts two spaces after the sender.
FROM_LINE = re.compile(
    rb"^From \S+ +\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\r?\n", re.MULTILINE
)
MBOXRD_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)
BODY_FROM = re.compile(rb"^From ", re.MULTILINE)


class Security(enum.Enum):
    """How a client protects the session."""

    PLAIN = "plain"
    STLS = "stls"
    POP3S = "pop3s"


@dataclass(frozen=True, slots=True)
class Account:
    """Where and as whom a client logs in: POP3 port (STLS) and POP3S port."""

    host: str
    port: int
    tls_port: int
    user: str
    password: str

    def port_for(self, security: Security) -> int:
        """Return the POP3S port for POP3S and the POP3 port otherwise."""
        return self.tls_port if security is Security.POP3S else self.port


class ClientError(AssertionError):
    """A client exited with an error or stored something unreadable."""


class Client(Protocol):
    """One real POP3 client behind a common interface."""

    name: str
    securities: tuple[Security, ...]

    def missing(self) -> str | None:
        """Return why the client cannot run here, or None if it can."""
        ...

    def fetch(
        self,
        account: Account,
        workdir: Path,
        *,
        security: Security = Security.PLAIN,
        keep: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[bytes]:
        """Download every message; delete them on the server unless ``keep``."""
        ...

    def stored_form(self, message: bytes) -> bytes:
        """Return ``message`` (CRLF, as served) as this client can store it."""
        ...


def to_crlf(data: bytes) -> bytes:
    """Return ``data`` with every line end, LF or CRLF, as CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def served_messages(
    mbox: bytes, manifest: list[dict[str, int]], mboxrd: bool
) -> list[bytes]:
    """Return the messages a POP3 server serves from a generated mbox.

    ``manifest`` is the generator's list of records (offset and length in
    the file). Each message loses its From_ line and the empty separator
    line after it, gets CRLF line ends and, when the server reads the mbox
    as mboxrd, loses one ">" of each quoted From line.
    """
    messages = []
    for entry in manifest:
        chunk = mbox[entry["offset"] : entry["offset"] + entry["length"]]
        content = chunk[chunk.index(b"\n") + 1 :]
        if content.endswith(b"\n") and not entry.get("no_final_newline"):
            content = content[:-1]
        if mboxrd:
            content = MBOXRD_QUOTED.sub(rb"\1", content)
        messages.append(to_crlf(content))
    return messages


def split_mbox(data: bytes, *, mboxrd: bool) -> list[bytes]:
    """Split an mbox a client wrote into messages, in CRLF form.

    A message starts at a From_ line at the start of the file or after an
    empty line. The empty line before the next From_ line is a separator.
    """
    if not data:
        return []
    starts = [
        match.start()
        for match in FROM_LINE.finditer(data)
        if match.start() == 0 or data[match.start() - 2 : match.start()] == b"\n\n"
    ]
    if starts[:1] != [0]:
        raise ClientError(
            f"stored mbox does not start with a From_ line: {data[:80]!r}"
        )
    messages = []
    for start, end in zip(starts, [*starts[1:], len(data)], strict=True):
        chunk = data[start:end]
        content = chunk[chunk.index(b"\n") + 1 :]
        if content.endswith(b"\n\n") or (end == len(data) and content.endswith(b"\n")):
            content = content[:-1]
        if mboxrd:
            content = MBOXRD_QUOTED.sub(rb"\1", content)
        messages.append(to_crlf(content))
    return messages


def read_numbered(directory: Path) -> list[bytes]:
    """Read files named ``N.eml`` in numeric order."""
    files = sorted(directory.glob("*.eml"), key=lambda path: int(path.stem))
    return [to_crlf(path.read_bytes()) for path in files]


def run_client(
    command: list[str], cwd: Path, timeout_s: float, ok_codes: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[bytes]:
    """Run one client command and raise ClientError with its output if it fails."""
    env = dict(os.environ, HOME=str(cwd), LC_ALL="C.UTF-8")
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClientError(f"{command[0]} timed out after {timeout_s} s") from exc
    if result.returncode not in ok_codes:
        raise ClientError(
            f"{' '.join(command)} exited with {result.returncode}: "
            f"{result.stderr[-2000:]!r} {result.stdout[-1000:]!r}"
        )
    return result


def missing_program(*programs: str) -> str | None:
    """Return a skip reason naming the first program not on PATH."""
    for program in programs:
        if shutil.which(program) is None:
            return f"{program} not installed (scripts/install-test-deps.sh installs it)"
    return None


class PoplibClient:
    """Python's poplib, run as a subprocess of this very file."""

    name = "poplib"
    securities: tuple[Security, ...] = (Security.PLAIN, Security.STLS, Security.POP3S)

    def missing(self) -> str | None:
        return None

    def fetch(
        self,
        account: Account,
        workdir: Path,
        *,
        security: Security = Security.PLAIN,
        keep: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[bytes]:
        out = Path(tempfile.mkdtemp(prefix="poplib-", dir=workdir))
        request = {
            "host": account.host,
            "port": account.port_for(security),
            "security": security.value,
            "user": account.user,
            "password": account.password,
            "keep": keep,
            "timeout_s": timeout_s,
        }
        (out / "request.json").write_text(json.dumps(request))
        run_client([sys.executable, __file__, "poplib", str(out)], out, timeout_s)
        return read_numbered(out)

    def stored_form(self, message: bytes) -> bytes:
        return message


class CurlClient:
    """curl: LIST for the count, then one RETR per message on one connection."""

    name = "curl"
    securities: tuple[Security, ...] = (Security.PLAIN, Security.STLS, Security.POP3S)

    def missing(self) -> str | None:
        return missing_program("curl")

    def fetch(
        self,
        account: Account,
        workdir: Path,
        *,
        security: Security = Security.PLAIN,
        keep: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[bytes]:
        out = Path(tempfile.mkdtemp(prefix="curl-", dir=workdir))
        # The credential goes in a config file (-K), not on the command line,
        # quoted so that spaces and quotes in the password survive.
        credential = f"{account.user}:{account.password}"
        escaped = credential.replace("\\", "\\\\").replace('"', '\\"')
        config = out / "curlrc"
        config.write_text(f'user = "{escaped}"\n')
        config.chmod(0o600)
        scheme = "pop3s" if security is Security.POP3S else "pop3"
        url = f"{scheme}://{account.host}:{account.port_for(security)}/"
        # -k accepts the test servers' self-signed certificates; --ssl-reqd
        # makes curl issue STLS on a pop3:// URL and fail without it.
        base = ["curl", "-sS", "--max-time", str(timeout_s), "-K", str(config)]
        if security is not Security.PLAIN:
            base += ["-k", "--ssl-reqd"]
        listing = run_client([*base, url], out, timeout_s).stdout
        # curl prints LIST's scan lines ("msgno size"), or an empty line for
        # an empty maildrop.
        count = len(re.findall(rb"^\d+ \d+", listing, re.MULTILINE))
        if count == 0:
            return []
        # A URL glob makes curl reuse one session for every message.
        glob = f"{url}[1-{count}]"
        run_client([*base, glob, "-o", str(out / "#1.eml")], out, timeout_s)
        if not keep:
            run_client([*base, "-X", "DELE", "-I", glob], out, timeout_s)
        return read_numbered(out)

    def stored_form(self, message: bytes) -> bytes:
        return message


class FetchmailClient:
    """fetchmail delivering through procmail into an mbox."""

    name = "fetchmail"
    securities: tuple[Security, ...] = (Security.PLAIN, Security.STLS, Security.POP3S)

    def missing(self) -> str | None:
        return missing_program("fetchmail", "procmail")

    def fetch(
        self,
        account: Account,
        workdir: Path,
        *,
        security: Security = Security.PLAIN,
        keep: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[bytes]:
        out = Path(tempfile.mkdtemp(prefix="fetchmail-", dir=workdir))
        mbox = out / "out.mbox"
        procmailrc = out / "procmailrc"
        procmailrc.write_text(f"DEFAULT={mbox}\nLOGFILE={out / 'procmail.log'}\n")
        tls = {
            Security.PLAIN: "sslproto ''",
            Security.STLS: "sslproto 'tls1.2+' no sslcertck",
            Security.POP3S: "ssl no sslcertck",
        }[security]
        rcfile = out / "fetchmailrc"
        # "set invisible" stops fetchmail adding its own Received header;
        # norewrite keeps addresses in the headers as the server sent them.
        rcfile.write_text(
            "set no syslog\nset invisible\n"
            f"poll {account.host} service {account.port_for(security)} "
            f"protocol pop3 auth password timeout {int(timeout_s)}\n"
            f'  user "{account.user}" password "{account.password}" '
            f'is "{getpass.getuser()}" here\n'
            f"  {tls}\n"
            f"  fetchall {'keep' if keep else 'nokeep'} norewrite\n"
            f'  mda "/usr/bin/procmail -f %F -m {procmailrc}"\n'
        )
        rcfile.chmod(0o600)
        command = ["fetchmail", "-f", str(rcfile), "--idfile", str(out / "ids")]
        command += ["--pidfile", str(out / "pid")]
        # Exit code 1 means "no mail", which an empty maildrop gives.
        run_client(command, out, timeout_s, ok_codes=(0, 1))
        return split_mbox(mbox.read_bytes() if mbox.exists() else b"", mboxrd=False)

    def stored_form(self, message: bytes) -> bytes:
        quoted = BODY_FROM.sub(b">From ", message)
        if quoted.endswith(b"\r\n\r\n"):
            quoted = quoted[:-2]
        return quoted


class MpopClient:
    """mpop delivering into an mboxrd file, without a configuration file."""

    name = "mpop"
    securities: tuple[Security, ...] = (Security.PLAIN, Security.STLS, Security.POP3S)

    def missing(self) -> str | None:
        return missing_program("mpop")

    def fetch(
        self,
        account: Account,
        workdir: Path,
        *,
        security: Security = Security.PLAIN,
        keep: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[bytes]:
        out = Path(tempfile.mkdtemp(prefix="mpop-", dir=workdir))
        mbox = out / "out.mbox"
        mbox.touch()
        password = out / "password"
        password.write_text(account.password)
        password.chmod(0o600)
        tls = {
            Security.PLAIN: ["--tls=off"],
            Security.STLS: ["--tls=on", "--tls-starttls=on", "--tls-certcheck=off"],
            Security.POP3S: ["--tls=on", "--tls-starttls=off", "--tls-certcheck=off"],
        }[security]
        command = [
            "mpop",
            "--quiet",
            f"--host={account.host}",
            f"--port={account.port_for(security)}",
            *tls,
            "--auth=user",
            f"--user={account.user}",
            f"--passwordeval=cat {password}",
            f"--delivery=mbox,{mbox}",
            f"--keep={'on' if keep else 'off'}",
            "--only-new=off",
            "--received-header=off",
            f"--uidls-file={out / 'uidls'}",
            f"--timeout={int(timeout_s)}",
        ]
        run_client(command, out, timeout_s)
        return split_mbox(mbox.read_bytes(), mboxrd=True)

    def stored_form(self, message: bytes) -> bytes:
        return message


# getmail6's own message class, run by the interpreter getmail runs on, so
# the refolding matches what getmail wrote byte for byte.
GETMAIL_FLATTEN = """
import json, sys
from getmailcore.message import Message
out = []
for text in json.load(sys.stdin):
    raw = text.encode("latin-1").replace(b"\\r\\n", b"\\n")
    # getmail passes poplib's lines plus an empty one, as split() gives.
    message = Message(fromlines=raw.split(b"\\n"))
    out.append(message.flatten(False, False).decode("latin-1"))
json.dump(out, sys.stdout)
"""


# getmail6 (6.18.11) forks a child for every delivery and installs its
# SIGCHLD handler only after fork(). A child that exits first is never
# noticed, and getmail waits for its timeout (seen in about 1 of 10 runs).
# This wrapper replaces that handler with a blocking waitpid() and then
# runs getmail unchanged otherwise.
GETMAIL_WRAPPER = """
import os, runpy, sys
from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError

def prepare_child(self):
    pass

def wait_for_child(self, childpid):
    pid, status = os.waitpid(childpid, 0)
    if not os.WIFEXITED(status):
        raise getmailOperationError("child %d ended with status %d" % (pid, status))
    return os.WEXITSTATUS(status)

baseclasses.ForkingBase._prepare_child = prepare_child
baseclasses.ForkingBase._wait_for_child = wait_for_child
program = sys.argv[1]
sys.argv = [program, *sys.argv[2:]]
runpy.run_path(program, run_name="__main__")
"""


class GetmailClient:
    """getmail6 delivering into an mboxrd file (it has no STLS for POP3)."""

    name = "getmail"
    securities: tuple[Security, ...] = (Security.PLAIN, Security.POP3S)

    def missing(self) -> str | None:
        reason = missing_program("getmail")
        if reason is None and self.interpreter() is None:
            reason = "getmail's Python interpreter not found"
        return reason

    @staticmethod
    def interpreter() -> str | None:
        """Return the interpreter named on getmail's #! line."""
        program = shutil.which("getmail")
        if program is None:
            return None
        first = Path(program).read_bytes().split(b"\n", 1)[0]
        if not first.startswith(b"#!"):
            return None
        return first[2:].decode().split()[0]

    def fetch(
        self,
        account: Account,
        workdir: Path,
        *,
        security: Security = Security.PLAIN,
        keep: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[bytes]:
        # As root, getmail delivers as the mail user, which must be able to
        # enter ``workdir`` and its parents.
        out = Path(tempfile.mkdtemp(prefix="getmail-", dir=workdir))
        mbox = out / "out.mbox"
        mbox.touch()
        owner = ""
        if os.geteuid() == 0:
            out.chmod(0o755)
            shutil.chown(mbox, "mail", "mail")
            owner = "user = mail\n"
        retriever = (
            "SimplePOP3SSLRetriever"
            if security is Security.POP3S
            else "SimplePOP3Retriever"
        )
        (out / "getmailrc").write_text(
            f"[retriever]\ntype = {retriever}\nserver = {account.host}\n"
            f"port = {account.port_for(security)}\nusername = {account.user}\n"
            f"password = {account.password}\ntimeout = {int(timeout_s)}\n"
            f"[destination]\ntype = Mboxrd\npath = {mbox}\n{owner}"
            "[options]\nread_all = true\n"
            f"delete = {'false' if keep else 'true'}\n"
            "delivered_to = false\nreceived = false\nverbose = 0\n"
        )
        (out / "getmailrc").chmod(0o600)
        program, interpreter = shutil.which("getmail"), self.interpreter()
        if program is None or interpreter is None:
            raise ClientError(f"getmail cannot run here: {self.missing()}")
        command = [interpreter, "-c", GETMAIL_WRAPPER, program]
        command += [f"--getmaildir={out}", "--rcfile=getmailrc"]
        run_client(command, out, timeout_s)
        return split_mbox(mbox.read_bytes(), mboxrd=True)

    def stored_form(self, message: bytes) -> bytes:
        return self.stored_forms([message])[0]

    def stored_forms(self, messages: list[bytes]) -> list[bytes]:
        """Return getmail's rewritten form of each message, in one subprocess."""
        interpreter = self.interpreter()
        if interpreter is None:
            raise ClientError("getmail's Python interpreter not found")
        result = subprocess.run(
            [interpreter, "-c", GETMAIL_FLATTEN],
            input=json.dumps([m.decode("latin-1") for m in messages]).encode(),
            capture_output=True,
            timeout=DEFAULT_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise ClientError(f"getmail flatten failed: {result.stderr[-2000:]!r}")
        texts: list[str] = json.loads(result.stdout)
        return [to_crlf(text.encode("latin-1")) for text in texts]


CLIENTS: tuple[Client, ...] = (
    PoplibClient(),
    CurlClient(),
    FetchmailClient(),
    MpopClient(),
    GetmailClient(),
)


def expected_forms(client: Client, messages: list[bytes]) -> list[bytes]:
    """Return ``client.stored_form`` of each message, batched where it helps."""
    if isinstance(client, GetmailClient):
        return client.stored_forms(messages)
    return [client.stored_form(message) for message in messages]


def connect(request: dict[str, str | int | bool | float]) -> poplib.POP3:
    """Open a poplib session with the settings in ``request`` and log in."""
    host, port = str(request["host"]), int(request["port"])
    timeout_s = float(request["timeout_s"])
    # The test servers' certificates are self-signed.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    session: poplib.POP3
    if request["security"] == Security.POP3S.value:
        session = poplib.POP3_SSL(host, port, context=context, timeout=timeout_s)
    else:
        session = poplib.POP3(host, port, timeout=timeout_s)
        if request["security"] == Security.STLS.value:
            session.stls(context=context)
    session.user(str(request["user"]))
    session.pass_(str(request["password"]))
    return session


def poplib_main(out: Path) -> int:
    """Download every message into ``out/N.eml``, then QUIT."""
    request = json.loads((out / "request.json").read_text())
    session = connect(request)
    count, _ = session.stat()
    for msgno in range(1, count + 1):
        _, lines, _ = session.retr(msgno)
        (out / f"{msgno}.eml").write_bytes(b"".join(line + b"\r\n" for line in lines))
        if not request["keep"]:
            session.dele(msgno)
    session.quit()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mode", choices=["poplib"])
    parser.add_argument("out", type=Path, help="directory with request.json")
    args = parser.parse_args(argv)
    return poplib_main(args.out)


if __name__ == "__main__":
    sys.exit(main())
