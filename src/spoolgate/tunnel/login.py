"""User login at the bastion: ``spoolgate login`` and the login service.

A stolen client key must not be enough to reach files, so a user proves
who they are to the bastion over the tunnel. The service learns the client
from the connection's source address (the tunnel address the bastion binds
to the client's certificate). On success it binds the user's uid and gids
(from the bastion's passwd and group databases) to that client in the
:class:`~spoolgate.tunnel.rpcpolicy.RPCPolicy` for ``ttl_s`` seconds.

The protocol is line-based, one request and one reply per line, LF ends
a line::

    S: SPOOLGATE-LOGIN 1 <nonce, 32 hex digits>
    C: PASSWORD <user> <password, base64>
    C: SSHSIG <user> <armored ssh signature, base64>
    C: LOGOUT <user>
    C: QUIT
    S: OK <text>   |   NO <text>   |   BAD <text>

An SSH signature is made by ``ssh-keygen -Y sign -n spoolgate-login`` over
:func:`signed_message` (the nonce and the user name), and checked with
``ssh-keygen -Y verify`` against the user's authorized keys on the bastion.
A nonce is good for one attempt. Every failed proof gets the same ``NO``
after the same delay; the reason goes to the log, never the password.

:class:`LoginServerProtocol` is the pure core (framing, limits, timeout);
:class:`LoginService` does the I/O around it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import os
import pwd
import secrets
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from spoolgate.auth import Credential, PAMAuthenticator
from spoolgate.auth.credential import Authenticator
from spoolgate.config import ConfigReader
from spoolgate.errors import (
    AuthBackendError,
    AuthError,
    LoginFailedError,
    LoginProtocolError,
    TunnelError,
    TunnelUnreachableError,
)
from spoolgate.tunnel.repeats import RepeatCounter, RepeatSummary
from spoolgate.tunnel.rpcpolicy import RPCPolicy, UserIdentity, address_key

__all__ = [
    "GREETING",
    "SSH_NAMESPACE",
    "KeyLogin",
    "LoginReply",
    "LoginServerProtocol",
    "LoginService",
    "LoginSettings",
    "Logout",
    "PasswordLogin",
    "Quit",
    "format_request",
    "parse_greeting",
    "parse_reply",
    "read_login_config",
    "signed_message",
    "start_login_service",
]

log = logging.getLogger(__name__)

GREETING = b"SPOOLGATE-LOGIN 1"
SSH_NAMESPACE = "spoolgate-login"
NONCE_BYTES = 16
# An armored ed25519 signature is about 300 bytes, an RSA-4096 one about
# 1 KiB; base64 adds a third. 8 KiB leaves room for both and for a password.
DEFAULT_MAX_LINE_OCTETS = 8192
MAX_USER_OCTETS = 64
METHODS = ("password", "ssh-key")
LOGIN_FAILED_REPLY = "login failed"
# Key types ssh-keygen -Y accepts in an allowed-signers file (OpenSSH 9).
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


# -- the pure protocol ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PasswordLogin:
    """A login with a password; the password never shows in ``repr``."""

    user: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyLogin:
    """A login with an SSH signature (armored text) over the nonce."""

    user: str
    signature: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Logout:
    """Remove a user's binding to this client."""

    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class Quit:
    """End the session."""


Request = PasswordLogin | KeyLogin | Logout | Quit


@dataclasses.dataclass(frozen=True, slots=True)
class LoginReply:
    """A reply line: ``ok`` for OK, the text after the status word."""

    ok: bool
    text: str


def signed_message(nonce: str, user: str) -> bytes:
    """Return the bytes an SSH key signs for a login of ``user``."""
    return f"spoolgate-login v1\nnonce={nonce}\nuser={user}\n".encode()


def _check_user(user: str) -> str:
    if not user or len(user.encode()) > MAX_USER_OCTETS:
        raise LoginProtocolError(f"user name must be 1..{MAX_USER_OCTETS} octets")
    if not all(char.isalnum() or char in "._-" for char in user):
        raise LoginProtocolError(f"user name {user!r}: only letters, digits, . _ -")
    return user


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LoginProtocolError(f"{what} is not valid base64") from exc


def parse_request(line: bytes) -> Request:
    """Parse one request line (without its LF); raise LoginProtocolError."""
    try:
        text = line.decode("ascii").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise LoginProtocolError("request is not ASCII") from exc
    verb, _, rest = text.partition(" ")
    args = rest.split(" ") if rest else []
    if verb == "QUIT" and not args:
        return Quit()
    if verb == "LOGOUT" and len(args) == 1:
        return Logout(_check_user(args[0]))
    if verb == "PASSWORD" and len(args) == 2:
        secret = _b64(args[1], "password")
        return PasswordLogin(
            _check_user(args[0]), secret.decode("utf-8", "surrogateescape")
        )
    if verb == "SSHSIG" and len(args) == 2:
        return KeyLogin(_check_user(args[0]), _b64(args[1], "signature"))
    # The verb alone: the arguments may hold a password.
    raise LoginProtocolError(f"unknown request {verb[:16]!r} or wrong arguments")


def format_request(request: Request) -> bytes:
    """Encode a request as one line, LF included."""
    if isinstance(request, PasswordLogin):
        secret = request.password.encode("utf-8", "surrogateescape")
        text = f"PASSWORD {request.user} {base64.b64encode(secret).decode()}"
    elif isinstance(request, KeyLogin):
        text = f"SSHSIG {request.user} {base64.b64encode(request.signature).decode()}"
    elif isinstance(request, Logout):
        text = f"LOGOUT {request.user}"
    else:
        text = "QUIT"
    return text.encode() + b"\n"


def parse_greeting(line: bytes) -> str:
    """Return the nonce of a greeting line; raise LoginProtocolError."""
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or b" ".join(parts[:2]) != GREETING:
        raise LoginProtocolError(
            f"login service greeting {line[:40]!r} is not {GREETING.decode()}"
        )
    nonce = parts[2].decode("ascii", "replace")
    if len(nonce) != 2 * NONCE_BYTES or any(c not in "0123456789abcdef" for c in nonce):
        raise LoginProtocolError(f"login service greeting: bad nonce {nonce!r}")
    return nonce


def parse_reply(line: bytes) -> LoginReply:
    """Parse an OK, NO or BAD reply line; raise LoginProtocolError otherwise."""
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    word, _, rest = text.partition(" ")
    if word == "OK":
        return LoginReply(True, rest)
    if word in ("NO", "BAD"):
        return LoginReply(False, rest)
    raise LoginProtocolError(f"login service reply {text[:40]!r} is not OK/NO/BAD")


class LoginServerProtocol:
    """The service side of one login session, without I/O.

    Feed it received bytes; it returns complete requests. It enforces the
    line length limit, the session deadline and one proof per nonce.
    """

    def __init__(
        self,
        nonce: str,
        now: float,
        timeout_s: float,
        max_line_octets: int = DEFAULT_MAX_LINE_OCTETS,
    ) -> None:
        self.nonce = nonce
        self.deadline = now + timeout_s
        self._max_line = max_line_octets
        self._buffer = bytearray()
        self._proof_used = False

    def greeting(self) -> bytes:
        """Return the first line the service sends."""
        return GREETING + b" " + self.nonce.encode() + b"\n"

    def is_expired(self, now: float) -> bool:
        """Tell whether the session ran past its deadline."""
        return now >= self.deadline

    def feed(self, data: bytes) -> list[Request]:
        """Add received bytes; return the requests they complete.

        Raises LoginProtocolError for a line over the limit, a malformed
        request, or a second proof on one nonce. The caller then replies
        BAD and closes the session.
        """
        self._buffer += data
        requests: list[Request] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._check_length(len(line))
            requests.append(self._accept(parse_request(line)))
        self._check_length(len(self._buffer))
        return requests

    def _check_length(self, length: int) -> None:
        if length > self._max_line:
            raise LoginProtocolError(
                f"request line longer than {self._max_line} octets"
            )

    def _accept(self, request: Request) -> Request:
        if isinstance(request, PasswordLogin | KeyLogin):
            if self._proof_used:
                raise LoginProtocolError("one login attempt per session")
            self._proof_used = True
        return request


def format_reply(ok: bool, text: str) -> bytes:
    """Encode an OK or NO reply line."""
    return f"{'OK' if ok else 'NO'} {text}\n".encode()


# -- settings -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LoginSettings:
    """Settings of the login service (``[login]``)."""

    host: str = ""
    port: int = 7451
    ttl_s: float = 8 * 3600.0
    methods: tuple[str, ...] = METHODS
    pam_service: str = "spoolgate"
    authorized_keys: str = "%h/.ssh/authorized_keys"
    failure_delay_s: float = 2.0
    timeout_s: float = 60.0
    max_line_octets: int = DEFAULT_MAX_LINE_OCTETS
    ssh_keygen: str = "ssh-keygen"


def read_login_config(root: ConfigReader) -> LoginSettings:
    """Read ``[login]``; errors are collected in ``root``."""
    table = root.table("login")
    listen = table.get_str("listen", ":7451")
    host, _, port_text = listen.rpartition(":")
    if not port_text.isdigit() or int(port_text) > 65535:
        table.error("listen", listen, "must be host:port (host may be empty)")
        port_text = "7451"
    methods = table.get_str_list("methods", METHODS)
    for method in methods:
        if method not in METHODS:
            table.error("methods", method, f"must be one of {', '.join(METHODS)}")
    return LoginSettings(
        host=host.strip("[]"),
        port=int(port_text),
        ttl_s=table.get_float("ttl_s", 8 * 3600.0, min=1, max=30 * 86400),
        methods=tuple(m for m in methods if m in METHODS),
        pam_service=table.get_str("pam_service", "spoolgate"),
        authorized_keys=table.get_str("authorized_keys", "%h/.ssh/authorized_keys"),
        failure_delay_s=table.get_float("failure_delay_s", 2.0, min=0, max=60),
        timeout_s=table.get_float("timeout_s", 60.0, min=1, max=3600),
        max_line_octets=table.get_int(
            "max_line_octets", DEFAULT_MAX_LINE_OCTETS, min=512, max=1 << 20
        ),
        ssh_keygen=table.get_str("ssh_keygen", "ssh-keygen"),
    )


# -- identities and proofs --------------------------------------------------------


def lookup_user(name: str) -> UserIdentity:
    """Return a user's uid and every gid (primary and supplementary).

    Raises LoginFailedError if the user does not exist on the bastion.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise LoginFailedError(f"login: no user {name!r} on the bastion") from exc
    gids = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return UserIdentity(entry.pw_name, entry.pw_uid, frozenset(gids))


def authorized_keys_path(pattern: str, name: str) -> Path:
    """Expand ``%h`` (home) and ``%u`` (user) in an authorized-keys pattern."""
    try:
        home = pwd.getpwnam(name).pw_dir
    except KeyError as exc:
        raise LoginFailedError(f"login: no user {name!r} on the bastion") from exc
    return Path(pattern.replace("%h", home).replace("%u", name).replace("%%", "%"))


def allowed_signers(user: str, authorized_keys: str) -> str:
    """Turn authorized_keys lines into ``ssh-keygen -Y verify`` signer lines.

    Options before the key type (``from=``, ``command=``...) are dropped,
    because they restrict SSH sessions and do not apply to signatures.
    ``cert-authority`` lines are skipped.
    """
    lines: list[str] = []
    for raw in authorized_keys.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "cert-authority" in line.split(" ")[0]:
            continue
        words = line.split()
        for index, word in enumerate(words[:-1]):
            if word in KEY_TYPES:
                lines.append(f"{user} {word} {words[index + 1]}\n")
                break
    return "".join(lines)


def read_authorized_keys(path: Path, identity: UserIdentity) -> str:
    """Read a user's authorized keys, refusing files others may change.

    Like sshd's StrictModes: the file must belong to the user or root and
    must not be writable by group or others.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise LoginFailedError(f"login: cannot open {path}: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        st = os.fstat(f.fileno())
        if st.st_uid not in (0, identity.uid) or st.st_mode & (
            stat.S_IWGRP | stat.S_IWOTH
        ):
            raise LoginFailedError(
                f"login: {path} must belong to {identity.name} or root and not be "
                "writable by group or others"
            )
        return f.read(1 << 20)


async def verify_ssh_signature(
    settings: LoginSettings, identity: UserIdentity, message: bytes, signature: bytes
) -> None:
    """Check an SSH signature with ``ssh-keygen -Y verify``; raise if invalid."""
    path = authorized_keys_path(settings.authorized_keys, identity.name)
    signers = allowed_signers(identity.name, read_authorized_keys(path, identity))
    if not signers:
        raise LoginFailedError(f"login: no usable keys in {path}")
    with tempfile.TemporaryDirectory(prefix="spoolgate-login-") as tmp:
        signers_path = Path(tmp, "allowed_signers")
        signers_path.write_text(signers)
        signature_path = Path(tmp, "signature")
        signature_path.write_bytes(signature)
        argv = [
            settings.ssh_keygen, "-Y", "verify", "-f", str(signers_path),
            "-I", identity.name, "-n", SSH_NAMESPACE, "-s", str(signature_path),
        ]  # fmt: skip
        code, output = await _run(argv, message, settings.timeout_s)
    if code != 0:
        raise LoginFailedError(
            f"login: ssh signature of {identity.name} not accepted by "
            f"{path}: {output.strip()[:200]}"
        )


async def _run(argv: list[str], stdin: bytes, timeout_s: float) -> tuple[int, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        raise AuthBackendError(
            f"login: cannot run {argv[0]}: {exc.strerror}; install openssh-client"
        ) from exc
    try:
        output, _ = await asyncio.wait_for(process.communicate(stdin), timeout_s)
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise AuthBackendError(f"login: {argv[0]} timed out") from exc
    return process.returncode or 0, output.decode(errors="replace")


# -- the service ----------------------------------------------------------------------


class LoginService:
    """The login service: one asyncio server, bindings go to ``policy``.

    ``addresses`` maps a peer IP address (as text) to a client name.
    """

    def __init__(
        self,
        policy: RPCPolicy,
        addresses: Mapping[str, str],
        settings: LoginSettings,
        authenticator: Authenticator | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_interval_s: float = 60.0,
    ) -> None:
        self._policy = policy
        self._addresses = {address_key(a): name for a, name in addresses.items()}
        self._settings = settings
        self._authenticator = authenticator or PAMAuthenticator(settings.pam_service)
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        # Idle sessions that time out are logged once per client and
        # interval, then counted: a stuck client may open hundreds.
        self._timeouts = RepeatCounter(log_interval_s)
        self._summary_task: asyncio.Task[None] | None = None
        self.failures = 0
        self.logins = 0

    @property
    def port(self) -> int:
        """The port the service listens on (the kernel's choice for port 0)."""
        if self._server is None or not self._server.sockets:
            return 0
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def set_addresses(self, addresses: Mapping[str, str]) -> None:
        """Replace the peer-address-to-client map (on a config reload)."""
        self._addresses = {address_key(a): name for a, name in addresses.items()}

    async def start(self) -> None:
        """Listen; raise TunnelError if the address cannot be bound."""
        host = self._settings.host or None
        try:
            self._server = await asyncio.start_server(
                self._serve, host, self._settings.port
            )
        except OSError as exc:
            raise TunnelError(
                f"login service: cannot listen on {self._settings.host}:"
                f"{self._settings.port}: {exc.strerror}"
            ) from exc
        log.info("login service listening port=%d", self.port)
        self._summary_task = asyncio.create_task(self._log_summaries())

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._summary_task is not None:
            self._summary_task.cancel()
            self._summary_task = None
        self._log_timeout_summaries(self._timeouts.take_all(self._clock()))

    async def _log_summaries(self) -> None:
        while True:
            await asyncio.sleep(self._timeouts.interval_s)
            self._log_timeout_summaries(self._timeouts.take_due(self._clock()))

    def _log_timeout_summaries(self, summaries: list[RepeatSummary]) -> None:
        for summary in summaries:
            log.info(
                "login sessions timed out %s: %d more in %.0f s after the one logged",
                summary.key,
                summary.count,
                summary.seconds,
            )

    def _log_timeout(self, client: str, peer: str) -> None:
        first = self._timeouts.note(f"client={client}", self._clock())
        log.log(
            logging.INFO if first else logging.DEBUG,
            "login session ended client=%s peer=%s: timed out after %.0f s",
            client,
            peer,
            self._settings.timeout_s,
        )

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}"
        client = self._addresses.get(address_key(str(peer[0])))
        try:
            if client is None:
                log.warning("login service refused peer=%s: unknown address", peer_text)
                return
            await self._session(client, peer_text, reader, writer)
        except TimeoutError:
            assert client is not None
            self._log_timeout(client, peer_text)
        except ConnectionError as exc:
            log.info(
                "login session ended client=%s peer=%s: %s", client, peer_text, exc
            )
        finally:
            writer.close()

    async def _session(
        self,
        client: str,
        peer: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        protocol = LoginServerProtocol(
            secrets.token_hex(NONCE_BYTES),
            self._clock(),
            self._settings.timeout_s,
            self._settings.max_line_octets,
        )
        writer.write(protocol.greeting())
        while True:
            remaining = protocol.deadline - self._clock()
            if remaining <= 0:
                self._log_timeout(client, peer)
                return
            data = await asyncio.wait_for(reader.read(4096), remaining)
            if not data:
                return
            try:
                requests = protocol.feed(data)
            except LoginProtocolError as exc:
                log.warning(
                    "login protocol error client=%s peer=%s: %s", client, peer, exc
                )
                writer.write(f"BAD {exc}\n".encode())
                await writer.drain()
                return
            for request in requests:
                if isinstance(request, Quit):
                    writer.write(format_reply(True, "bye"))
                    await writer.drain()
                    return
                reply = await self._handle(client, peer, protocol.nonce, request)
                writer.write(reply)
                await writer.drain()

    async def _handle(
        self, client: str, peer: str, nonce: str, request: Request
    ) -> bytes:
        if isinstance(request, Logout):
            removed = self._policy.unbind(client, request.user)
            log.info(
                "logout client=%s peer=%s user=%s bound=%s",
                client,
                peer,
                request.user,
                removed,
            )
            return format_reply(True, "unbound" if removed else "not bound")
        assert isinstance(request, PasswordLogin | KeyLogin)
        method = "password" if isinstance(request, PasswordLogin) else "ssh-key"
        # One proof at a time per client, failure delay included, so parallel
        # connections do not multiply the rate of guesses.
        lock = self._locks.setdefault(client, asyncio.Lock())
        async with lock:
            try:
                if method not in self._settings.methods:
                    raise LoginFailedError(f"login: method {method} is not enabled")
                identity = await self._prove(nonce, request)
                binding = self._policy.bind(
                    client, identity, self._clock(), self._settings.ttl_s
                )
            except AuthError as exc:
                return await self._failed(client, peer, request.user, method, exc)
        self.logins += 1
        gids = ",".join(str(gid) for gid in sorted(identity.gids))
        log.info(
            "login ok client=%s peer=%s user=%s method=%s uid=%d gids=%s ttl_s=%g",
            client, peer, identity.name, method, identity.uid, gids,
            self._settings.ttl_s,
        )  # fmt: skip
        ttl = round(binding.expires_at - binding.bound_at)
        text = f"bound user={identity.name} uid={identity.uid} gids={gids} ttl_s={ttl}"
        return format_reply(True, text)

    async def _prove(
        self, nonce: str, request: PasswordLogin | KeyLogin
    ) -> UserIdentity:
        if isinstance(request, PasswordLogin):
            credential = Credential(request.user, request.password)
            name = await asyncio.to_thread(self._authenticator.authenticate, credential)
            return lookup_user(name)
        identity = lookup_user(request.user)
        message = signed_message(nonce, request.user)
        await verify_ssh_signature(self._settings, identity, message, request.signature)
        return identity

    async def _failed(
        self, client: str, peer: str, user: str, method: str, exc: AuthError
    ) -> bytes:
        self.failures += 1
        log.warning(
            "login failed client=%s peer=%s user=%s method=%s: %s",
            client,
            peer,
            user,
            method,
            exc,
        )
        await asyncio.sleep(self._settings.failure_delay_s)
        return format_reply(False, LOGIN_FAILED_REPLY)


async def start_login_service(
    policy: RPCPolicy,
    addresses: Mapping[str, str],
    settings: LoginSettings,
    authenticator: Authenticator | None = None,
) -> LoginService:
    """Create the login service for ``policy`` and start listening."""
    service = LoginService(policy, addresses, settings, authenticator)
    await service.start()
    return service


# -- the client side (``spoolgate login``) ------------------------------------------


def sign_with_ssh_key(
    key: Path, message: bytes, ssh_keygen: str = "ssh-keygen", timeout_s: float = 60
) -> bytes:
    """Sign ``message`` with ``ssh-keygen -Y sign``; return the armored signature."""
    argv = [ssh_keygen, "-Y", "sign", "-f", str(key), "-n", SSH_NAMESPACE]
    try:
        result = subprocess.run(
            argv, input=message, capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"login: cannot run {ssh_keygen} to sign: {exc}") from exc
    if result.returncode != 0:
        raise AuthError(
            f"login: {ssh_keygen} -Y sign with {key} failed: "
            f"{result.stderr.decode(errors='replace').strip()[:200]}"
        )
    return result.stdout


class LoginClient:
    """A blocking connection to the login service, for ``spoolgate login``."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise TunnelUnreachableError(
                f"login: cannot connect to the login service at {host}:{port}: "
                f"{exc}; is the tunnel up?"
            ) from exc
        self._file = self._sock.makefile("rb")
        self.nonce = parse_greeting(self._readline())

    def _readline(self) -> bytes:
        try:
            line = self._file.readline(DEFAULT_MAX_LINE_OCTETS)
        except OSError as exc:
            raise TunnelUnreachableError(f"login: connection failed: {exc}") from exc
        if not line:
            raise LoginProtocolError("login service closed the connection")
        return line

    def request(self, request: Request) -> LoginReply:
        """Send one request and return the reply."""
        try:
            self._sock.sendall(format_request(request))
        except OSError as exc:
            raise TunnelUnreachableError(f"login: connection failed: {exc}") from exc
        return parse_reply(self._readline())

    def close(self) -> None:
        """Close the connection."""
        self._file.close()
        self._sock.close()
