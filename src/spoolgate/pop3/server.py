"""The asyncio POP3 server: listeners, TLS, limits, logging, shutdown, reload.

Theory of operation. Each connection gets a session id and one task that
drives a sans-IO ``POP3Session`` (``spoolgate.pop3.protocol``): it feeds
received octets in, carries out the events that come out, and resolves
the paused ones. Everything that blocks (password hashing, PAM, mbox
locking, indexing, reading and expunging) runs in a worker thread, so a
slow mbox never stalls other sessions. Messages are streamed in chunks
of about ``STREAM_CHUNK_BYTES``, waiting for the socket to drain after
each, so a large message never sits whole in memory. The thread call of a
RETR or TOP of a small message also reads a few small messages after it,
so a client fetching in order gets most of them without a thread hop.

The POP3 port offers STLS (RFC 2595); the POP3S port starts TLS at once
(RFC 8314). Both take the TLS context from the current ``Runtime`` at
the time of the handshake, so a reload (SIGHUP) changes the certificate
for every later handshake.

Shutdown closes the listeners, lets sessions run for up to
``shutdown_timeout_s``, then cancels the rest. A cancelled or dropped
session never expunges: only QUIT does, and an expunge already running
in its thread is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import signal
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from spoolgate.auth import (
    Authenticator,
    Credential,
    PAMAuthenticator,
    PasswdAuthenticator,
)
from spoolgate.errors import (
    AuthBackendError,
    AuthBusyError,
    ConfigError,
    LoginFailedError,
    MaildropInUseError,
    MboxError,
    POP3ProtocolError,
    SpoolgateError,
    TemporaryError,
)
from spoolgate.pop3.auth_gate import AuthGate
from spoolgate.pop3.config import (
    AuthBackend,
    ServerConfig,
    TLSConfig,
    load_server_config,
)
from spoolgate.pop3.events import (
    AuthFailure,
    AuthRequest,
    Close,
    Event,
    Expunge,
    MaildropFailure,
    OpenMaildrop,
    Pending,
    Reply,
    SendMessage,
    StartTLS,
)
from spoolgate.pop3.maildrop_store import MaildropStore, MboxMaildrop
from spoolgate.pop3.protocol import POP3Session, ProtocolConfig
from spoolgate.pop3.stuffing import MessageEncoder

__all__ = [
    "POP3Server",
    "Runtime",
    "SessionLogFilter",
    "build_runtime",
    "serve",
    "warn_risky_settings",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_BYTES = 64 * 1024
STREAM_CHUNK_BYTES = 256 * 1024
# A RETR or TOP that reads a message in its worker-thread call also reads
# up to this many following messages, together at most READ_AHEAD_BYTES,
# so a client fetching in order skips the thread hop for those. A DELE,
# RSET, QUIT, the session's end or a RETR or TOP of a message not read
# ahead drops them.
# NOTE: a message read ahead was checked against the mbox when it was
# read, so a change to the mbox after that and before its RETR goes unseen.
READ_AHEAD_MESSAGES = 8
READ_AHEAD_BYTES = 64 * 1024
TLS_HANDSHAKE_TIMEOUT_S = 30.0
# Wait this long for a TLS peer's close_notify before dropping the connection.
CLOSE_TIMEOUT_S = 1.0
KIND_POP3 = "pop3"
KIND_POP3S = "pop3s"


@dataclass(frozen=True, slots=True)
class Runtime:
    """The parts a config reload replaces: settings, TLS context, password backend."""

    config: ServerConfig
    protocol: ProtocolConfig
    ssl_context: ssl.SSLContext | None
    authenticator: Authenticator


def build_runtime(config: ServerConfig) -> Runtime:
    """Load the certificate and the password backend named in ``config``.

    Blocks on file reads; raises ConfigError when the certificate or key
    cannot be loaded and AuthBackendError when the passwd file is unusable.
    """
    context = None if config.tls is None else _tls_context(config.tls)
    protocol = ProtocolConfig(
        tls_available=context is not None,
        allow_plaintext_auth=config.allow_plaintext_auth,
        implementation=config.implementation,
        max_bad_commands=config.max_bad_commands,
        max_auth_failures=config.max_auth_failures,
        max_sasl_line_octets=config.max_sasl_line_octets,
        max_buffered_octets=config.max_buffered_octets,
    )
    return Runtime(config, protocol, context, _authenticator(config))


def _tls_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.certificate, tls.private_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate {tls.certificate} with key "
            f"{tls.private_key}: {exc}; check that both are PEM files that match"
        ) from exc
    return context


def _authenticator(config: ServerConfig) -> Authenticator:
    if config.auth.backend is AuthBackend.PAM:
        return PAMAuthenticator(config.auth.pam_service)
    path = config.auth.passwd_file
    assert path is not None, "the config requires passwd_file"
    try:
        return PasswdAuthenticator(path)
    except AuthBackendError as exc:
        # At start and reload a bad file is the operator's to fix, not a
        # passing failure: report it as a config problem (exit status 2).
        raise ConfigError(
            f"auth.passwd_file = {str(path)!r}: {exc}; fix or remove the lines "
            "named (spoolgate passwd writes valid ones)"
        ) from exc


def warn_risky_settings(config: ServerConfig) -> None:
    """Log a WARNING for each setting that weakens the server."""
    if config.allow_plaintext_auth:
        log.warning(
            "pop3.allow_plaintext_auth = true: passwords are accepted before "
            "STLS and may cross the network unencrypted"
        )
    if config.idle_timeout_s < 600:
        log.warning(
            "pop3.idle_timeout_s = %g is below the 10 minutes RFC 1939 "
            "requires; slow clients may be logged out",
            config.idle_timeout_s,
        )


# The id of the session the current task or worker thread works for.
# asyncio.to_thread copies the context, so worker threads see it too.
_SESSION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "spoolgate_pop3_session_id", default=None
)


class SessionLogFilter(logging.Filter):
    """A handler filter that adds ``session=ID`` to other modules' records.

    The server's own lines name the session already; lines that the mbox
    and auth modules log while serving a session get it appended.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Append the session id once, then let the record pass."""
        session = _SESSION_ID.get()
        if session is None or record.name == __name__:
            return True
        if getattr(record, "pop3_session", None) is None:
            record.pop3_session = session
            record.msg = f"{record.msg} session={session}"
        return True


class _Reader(asyncio.StreamReader):
    """A StreamReader that can drop unread octets and reports when the peer left."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        # Set on end of input or a connection error, even while no task
        # reads: a password check waiting for a slot watches it.
        self.peer_left = asyncio.Event()

    def feed_eof(self) -> None:
        """Mark end of input and note that the peer has left."""
        super().feed_eof()
        self.peer_left.set()

    def set_exception(self, exc: Exception) -> None:
        """Keep the connection error and note that the peer has left."""
        super().set_exception(exc)
        self.peer_left.set()

    def discard_buffered(self) -> int:
        """Drop buffered input; return how many octets were dropped.

        RFC 2595 section 4 requires dropping input pipelined behind STLS,
        and StreamReader has no public method for it.
        """
        buffer: bytearray = self._buffer  # type: ignore[attr-defined]
        dropped = len(buffer)
        buffer.clear()
        return dropped


class POP3Server:
    """The listeners, the live sessions and the limits shared by them."""

    def __init__(self, runtime: Runtime, store: MaildropStore | None = None) -> None:
        self._runtime = runtime
        self._store = store or MaildropStore(runtime.config.maildrop)
        self._listeners: dict[str, asyncio.Server] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_address: Counter[str] = Counter()
        self._closing = False
        config = runtime.config
        self._auth_gate = AuthGate(
            config.max_concurrent_auth, config.max_pending_auth_per_address
        )

    @property
    def runtime(self) -> Runtime:
        """The settings sessions started now use."""
        return self._runtime

    @property
    def ports(self) -> dict[str, int]:
        """The bound port of each listener, by kind (``pop3``, ``pop3s``)."""
        return {
            kind: server.sockets[0].getsockname()[1]
            for kind, server in self._listeners.items()
        }

    @property
    def auth_gate(self) -> AuthGate:
        """The slots and threads password checks run in."""
        return self._auth_gate

    @property
    def session_count(self) -> int:
        """The number of connections being served."""
        return len(self._tasks)

    async def start(self) -> None:
        """Open the listeners named in the config."""
        listen = self._runtime.config.listen
        for kind, port in (
            (KIND_POP3, listen.pop3_port),
            (KIND_POP3S, listen.pop3s_port),
        ):
            if port is None:
                continue
            server = await self._listen(kind, listen.host, port)
            self._listeners[kind] = server
            log.info(
                "pop3 listen kind=%s host=%s port=%d",
                kind,
                listen.host,
                server.sockets[0].getsockname()[1],
            )

    async def _listen(self, kind: str, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()

        def protocol_factory() -> asyncio.StreamReaderProtocol:
            reader = _Reader(limit=READ_BYTES, loop=loop)

            async def connected(
                stream: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                assert isinstance(stream, _Reader), "the factory makes _Reader"
                # This coroutine is the top of its task: asyncio logs a task
                # that ends cancelled as an error, and shutdown cancels on purpose.
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serve_connection(kind, stream, writer)

            return asyncio.StreamReaderProtocol(reader, connected)

        try:
            return await loop.create_server(protocol_factory, host, port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for {kind} on {host} port {port}: {exc.strerror}; "
                "choose another port in [listen] or stop what uses it"
            ) from exc

    def reload(self, runtime: Runtime) -> None:
        """Use new settings for later sessions and handshakes."""
        old = self._runtime.config
        self._runtime = runtime
        self._store.reconfigure(runtime.config.maildrop)
        if runtime.config.listen != old.listen:
            log.warning(
                "pop3 reload cannot change [listen]; restart the server to "
                "listen on new addresses or ports"
            )
        gate = self._auth_gate
        if (
            runtime.config.max_concurrent_auth,
            runtime.config.max_pending_auth_per_address,
        ) != (
            gate.slots,
            gate.per_address,
        ):
            log.warning(
                "pop3 reload cannot change max_concurrent_auth or "
                "max_pending_auth_per_address; restart the server to apply them"
            )
        warn_risky_settings(runtime.config)
        log.info(
            "pop3 config reloaded tls=%s auth=%s max_connections=%d "
            "max_connections_per_address=%d",
            runtime.ssl_context is not None,
            runtime.config.auth.backend.value,
            runtime.config.max_connections,
            runtime.config.max_connections_per_address,
        )

    async def shutdown(self) -> None:
        """Stop listening, let sessions finish for a while, then cancel them."""
        self._closing = True
        for server in self._listeners.values():
            server.close()
        timeout = self._runtime.config.shutdown_timeout_s
        log.info("pop3 shutdown sessions=%d wait_s=%g", len(self._tasks), timeout)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in self._listeners.values():
            await server.wait_closed()
        self._auth_gate.close()
        log.info("pop3 stopped")

    async def _serve_connection(
        self, kind: str, reader: _Reader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None, "a connection runs in a task"
        peer = _peer_address(writer)
        connection = _Connection(self, kind, reader, writer, peer)
        refusal = self._refusal(peer.host)
        if refusal:
            await connection.refuse(refusal)
            return
        self._tasks.add(task)
        self._per_address[peer.host] += 1
        try:
            await connection.run()
        finally:
            self._tasks.discard(task)
            self._per_address[peer.host] -= 1
            if not self._per_address[peer.host]:
                del self._per_address[peer.host]

    def _refusal(self, host: str) -> str:
        config = self._runtime.config
        if self._closing:
            return "server shutting down"
        if len(self._tasks) >= config.max_connections:
            return "too many connections, try again later"
        if self._per_address[host] >= config.max_connections_per_address:
            return "too many connections from your address, try again later"
        return ""

    @property
    def store(self) -> MaildropStore:
        """The maildrop store sessions open maildrops from."""
        return self._store


@dataclass(frozen=True, slots=True)
class _Peer:
    host: str
    port: int

    def __str__(self) -> str:
        return (
            f"[{self.host}]:{self.port}"
            if ":" in self.host
            else f"{self.host}:{self.port}"
        )


def _peer_address(writer: asyncio.StreamWriter) -> _Peer:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return _Peer(str(name[0]), int(name[1]))
    return _Peer(str(name), 0)


class _SessionEndError(Exception):
    """The connection is gone or must end now; the reason is the message."""


async def _in_thread(
    func: Callable[..., T],
    *args: object,
    on_abandon: Callable[[T], None] | None = None,
    executor: Executor | None = None,
) -> T:
    """Run ``func`` in a worker thread and return its result.

    A thread cannot be stopped, so when the calling task is cancelled this
    still waits for the thread to end (an expunge is never left half-done
    by us) and passes an unwanted result to ``on_abandon``. ``executor``
    None is the loop's default executor.
    """
    # run_in_executor, unlike to_thread, needs no task of its own; the
    # context copy keeps the session id for log lines from the thread.
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    task = loop.run_in_executor(executor, context.run, func, *args)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                continue
        if on_abandon is not None and not task.cancelled() and task.exception() is None:
            on_abandon(task.result())
        raise


def _close_maildrop(maildrop: MboxMaildrop) -> None:
    maildrop.close()


def _open_and_read_ahead(
    maildrop: MboxMaildrop, msgno: int
) -> tuple[Iterator[bytes], bytes, bool, dict[int, bytes]]:
    """Open ``msgno`` and, if it was read whole and small, read the next ones.

    Returns ``open_message``'s result and the messages read ahead by
    msgno. Each is checked against the mbox as ``open_message`` checks,
    here in the same worker-thread call. A message after ``msgno`` that
    cannot be read ends the read-ahead without an error, and its own
    RETR reads it again and reports the error.
    """
    chunks, data, ended = maildrop.open_message(msgno, STREAM_CHUNK_BYTES)
    following: dict[int, bytes] = {}
    budget = READ_AHEAD_BYTES - len(data)
    last = min(maildrop.count(), msgno + READ_AHEAD_MESSAGES)
    for number in range(msgno + 1, last + 1) if ended else ():
        if budget <= 0:
            break
        try:
            message = maildrop.read_whole(number, budget)
        except (MboxError, OSError):
            break
        if message is None:
            break
        following[number] = message
        budget -= len(message)
    return chunks, data, ended, following


class _Connection:
    """One client connection and the session it carries."""

    def __init__(
        self,
        server: POP3Server,
        kind: str,
        reader: _Reader,
        writer: asyncio.StreamWriter,
        peer: _Peer,
    ) -> None:
        self._server = server
        self._runtime = server.runtime
        self._kind = kind
        self._reader = reader
        self._writer = writer
        self._peer = peer
        self._id = secrets.token_hex(4)
        self._out: list[bytes] = []
        # Messages read ahead by msgno, valid while deletion_changes is
        # the value noted with them.
        self._read_ahead: dict[int, bytes] = {}
        self._read_ahead_changes = 0
        self._maildrop: MboxMaildrop | None = None
        self._user: str | None = None
        self._started = time.monotonic()
        self._idle_since = self._started
        self._retrieved = 0
        self._deleted = 0
        self._octets_sent = 0

    def _fields(self) -> str:
        return f"session={self._id} peer={self._peer}"

    async def refuse(self, text: str) -> None:
        """Send one ``-ERR [SYS/TEMP]`` line and close, before any session.

        On the POP3S port the client expects a TLS handshake, and a plaintext
        line would show as a TLS error, so the connection is closed without
        one: a handshake would cost the CPU the server is short of.
        """
        log.warning(
            "pop3 refused %s listener=%s reason=%r", self._fields(), self._kind, text
        )
        if self._kind != KIND_POP3S:
            self._writer.write(f"-ERR [SYS/TEMP] {text}\r\n".encode("ascii"))
        await self._close_writer()

    async def run(self) -> None:
        """Serve the connection until the session ends or the peer leaves."""
        _SESSION_ID.set(self._id)
        log.info("pop3 connect %s listener=%s", self._fields(), self._kind)
        reason = "closed"
        try:
            reason = await self._run_session()
        except _SessionEndError as exc:
            reason = str(exc)
        except asyncio.CancelledError:
            reason = "server shutdown"
            self._writer.write(b"-ERR [SYS/TEMP] server shutting down\r\n")
            raise
        except Exception:
            reason = "internal error"
            log.exception("pop3 session failed %s", self._fields())
        finally:
            self._read_ahead.clear()
            self._release_maildrop()
            self._log_logout(reason)
            await self._close_writer()

    async def _run_session(self) -> str:
        tls_active = False
        if self._kind == KIND_POP3S:
            await self._start_tls()
            tls_active = True
        session = POP3Session(self._runtime.protocol, tls_active=tls_active)
        lines_seen = 0
        self._idle_since = time.monotonic()
        while True:
            event = session.next_event()
            if event is Pending.CLOSED:
                await self._flush()
                return "closed"
            if event is Pending.NEED_DATA:
                if session.deletion_changes != self._read_ahead_changes:
                    self._read_ahead.clear()
                if session.lines_received != lines_seen:
                    lines_seen = session.lines_received
                    self._idle_since = time.monotonic()
                await self._flush()
                await self._receive(session)
            elif event is Pending.PAUSED:
                raise AssertionError("session paused without an event to resolve")
            elif isinstance(event, Reply):
                # Most events are replies: queue them without a coroutine call.
                self._out.append(event.data)
            else:
                closed = await self._handle(session, event)
                if closed:
                    await self._flush()
                    return closed

    async def _receive(self, session: POP3Session) -> None:
        # The timer runs from the last complete line, so a client trickling
        # one octet at a time cannot hold the connection open.
        deadline = self._idle_since + self._runtime.config.idle_timeout_s
        loop = asyncio.get_running_loop()
        try:
            # asyncio.timeout, unlike wait_for, starts no task per read.
            async with asyncio.timeout_at(loop.time() + deadline - time.monotonic()):
                data = await self._reader.read(READ_BYTES)
        except TimeoutError:
            self._writer.write(b"-ERR idle timeout, closing connection\r\n")
            raise _SessionEndError("idle timeout") from None
        except ConnectionError:
            data = b""
        try:
            session.receive_data(data)
        except POP3ProtocolError as exc:
            log.warning("pop3 input limit %s error=%r", self._fields(), str(exc))
            self._writer.write(b"-ERR too much pipelined input, closing connection\r\n")
            raise _SessionEndError("input limit") from exc

    async def _handle(self, session: POP3Session, event: Event | Pending) -> str:
        """Carry out one event; return a close reason when the session ends."""
        if isinstance(event, Reply):
            self._out.append(event.data)
        elif isinstance(event, AuthRequest):
            await self._authenticate(session, event)
        elif isinstance(event, OpenMaildrop):
            await self._open_maildrop(session, event.user)
        elif isinstance(event, StartTLS):
            await self._start_tls(after_stls=True)
            session.tls_started()
        elif isinstance(event, SendMessage):
            await self._send_message(session, event)
        elif isinstance(event, Expunge):
            await self._expunge(session, event.msgnos)
        elif isinstance(event, Close):
            return event.reason.value
        return ""

    async def _flush(self) -> None:
        if self._out:
            self._writer.writelines(self._out)
            self._octets_sent += sum(len(data) for data in self._out)
            self._out.clear()
        transport = self._writer.transport
        # With nothing left in the write buffer, writing is not paused and
        # drain would return at once: skipping it saves arming a timeout.
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            return
        await self._drain()

    async def _drain(self) -> None:
        timeout = self._runtime.config.idle_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise _SessionEndError("idle timeout while sending") from None
        except ConnectionError as exc:
            raise _SessionEndError("connection lost") from exc

    async def _start_tls(self, *, after_stls: bool = False) -> None:
        """Run the TLS handshake; after STLS, first send the queued +OK.

        Reading pauses before the +OK goes out, so the client's TLS hello
        waits in the socket. Input already buffered was pipelined behind
        STLS in plaintext and is dropped (RFC 2595 section 4).
        """
        context = self._server.runtime.ssl_context
        if context is None:
            raise _SessionEndError("no TLS context")
        transport = self._writer.transport
        assert isinstance(transport, asyncio.Transport), "a TCP stream transport"
        transport.pause_reading()
        if after_stls:
            dropped = self._reader.discard_buffered()
            if dropped:
                log.warning(
                    "pop3 dropped input sent after STLS %s octets=%d",
                    self._fields(),
                    dropped,
                )
            await self._flush()
        try:
            await asyncio.wait_for(
                self._writer.start_tls(context), TLS_HANDSHAKE_TIMEOUT_S
            )
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            log.warning(
                "pop3 tls handshake failed %s error=%r", self._fields(), str(exc)
            )
            raise _SessionEndError("tls handshake failed") from exc
        log.info("pop3 tls %s version=%s", self._fields(), self._tls_version())

    def _tls_version(self) -> str:
        ssl_object = self._writer.get_extra_info("ssl_object")
        return str(ssl_object.version()) if ssl_object is not None else "none"

    async def _authenticate(self, session: POP3Session, request: AuthRequest) -> None:
        credential = Credential(request.user, request.password)
        authenticator = self._server.runtime.authenticator
        gate = self._server.auth_gate
        try:
            # The slot is released before the failed-login delay below.
            async with gate.slot(self._peer.host, self._reader.peer_left):
                user = await _in_thread(
                    authenticator.authenticate, credential, executor=gate.executor
                )
        except ConnectionAbortedError as exc:
            raise _SessionEndError("left during login") from exc
        except AuthBusyError as exc:
            log.warning("pop3 auth busy %s error=%r", self._fields(), str(exc))
            await self._login_failed(session, request, AuthFailure.TEMPORARY)
        except LoginFailedError:
            await self._login_failed(session, request, AuthFailure.CREDENTIALS)
        except AuthBackendError as exc:
            log.error("pop3 auth backend failed %s error=%r", self._fields(), str(exc))
            await self._login_failed(session, request, AuthFailure.TEMPORARY)
        else:
            self._user = user
            session.auth_succeeded(user)

    async def _login_failed(
        self, session: POP3Session, request: AuthRequest, reason: AuthFailure
    ) -> None:
        log.warning(
            "pop3 login failed %s user=%r mechanism=%s reason=%s",
            self._fields(),
            request.user,
            request.mechanism,
            reason.value,
        )
        # The same delay follows every failure, whether the user exists or not.
        await asyncio.sleep(self._server.runtime.config.failed_login_delay_s)
        session.auth_failed(reason)

    async def _open_maildrop(self, session: POP3Session, user: str) -> None:
        try:
            maildrop = await _in_thread(
                self._server.store.open, user, on_abandon=_close_maildrop
            )
        except MaildropInUseError as exc:
            self._maildrop_failed(session, user, MaildropFailure.IN_USE, exc)
        except TemporaryError as exc:
            self._maildrop_failed(session, user, MaildropFailure.TEMPORARY, exc)
        except (MboxError, OSError) as exc:
            self._maildrop_failed(session, user, MaildropFailure.PERMANENT, exc)
        else:
            self._maildrop = maildrop
            session.maildrop_opened(maildrop)
            report = maildrop.report
            log.info(
                "pop3 login %s user=%r tls=%s messages=%d refresh=%s",
                self._fields(),
                user,
                session.tls_active,
                maildrop.count(),
                "empty" if report is None else report.outcome.value,
            )

    def _maildrop_failed(
        self, session: POP3Session, user: str, reason: MaildropFailure, exc: Exception
    ) -> None:
        level = logging.WARNING if reason is MaildropFailure.IN_USE else logging.ERROR
        log.log(
            level,
            "pop3 maildrop failed %s user=%r reason=%s error=%r",
            self._fields(),
            user,
            reason.value,
            str(exc),
        )
        self._user = None
        session.maildrop_failed(reason)

    async def _send_message(self, session: POP3Session, request: SendMessage) -> None:
        maildrop = self._maildrop
        assert maildrop is not None, "SendMessage comes only in TRANSACTION"
        loaded = await self._load_message(session, maildrop, request.msgno)
        if loaded is None:
            # Replace the "+OK" the session queued for this RETR or TOP.
            self._out[-1] = b"-ERR [SYS/TEMP] message cannot be read now\r\n"
            return
        chunks, data, ended = loaded
        # The +OK, the message and the terminator go out in one write when
        # the message fits in one chunk; larger ones stream.
        encoder = MessageEncoder(request.body_lines)
        self._out.append(encoder.feed(data))
        if not ended and not encoder.done:
            await self._flush()
            await self._stream(maildrop, chunks, encoder)
        self._out.append(encoder.finish())
        if sum(map(len, self._out)) >= STREAM_CHUNK_BYTES:
            await self._flush()
        if request.body_lines is None:
            self._retrieved += 1

    async def _load_message(
        self, session: POP3Session, maildrop: MboxMaildrop, msgno: int
    ) -> tuple[Iterator[bytes], bytes, bool] | None:
        """Return a message's chunk iterator, first octets and whether they are all.

        Takes the message from the read-ahead when it is there and no DELE
        or RSET came since; else reads it in a worker thread, with the
        messages after it. Returns None, after logging, when it is unreadable.
        """
        if session.deletion_changes != self._read_ahead_changes:
            self._read_ahead.clear()
        read_ahead = self._read_ahead.pop(msgno, None)
        if read_ahead is not None:
            return iter(()), read_ahead, True
        self._read_ahead.clear()
        try:
            chunks, data, ended, following = await _in_thread(
                _open_and_read_ahead, maildrop, msgno
            )
        except (MboxError, OSError) as exc:
            log.error(
                "pop3 message unreadable %s user=%r msgno=%d error=%r",
                self._fields(),
                self._user,
                msgno,
                str(exc),
            )
            return None
        self._read_ahead = following
        self._read_ahead_changes = session.deletion_changes
        return chunks, data, ended

    async def _stream(
        self, maildrop: MboxMaildrop, chunks: Iterator[bytes], encoder: MessageEncoder
    ) -> None:
        ended = False
        while not ended and not encoder.done:
            try:
                chunk, ended = await _in_thread(
                    maildrop.read_chunk, chunks, STREAM_CHUNK_BYTES
                )
            except (MboxError, OSError) as exc:
                # The +OK is out, so only dropping the connection shows the
                # client that the message is incomplete.
                self._writer.transport.abort()
                raise _SessionEndError(f"read failed mid-message: {exc}") from exc
            data = encoder.feed(chunk)
            self._writer.write(data)
            self._octets_sent += len(data)
            await self._drain()

    async def _expunge(self, session: POP3Session, msgnos: tuple[int, ...]) -> None:
        maildrop = self._maildrop
        assert maildrop is not None, "Expunge comes only in TRANSACTION"
        self._read_ahead.clear()
        await self._flush()
        try:
            self._deleted = await _in_thread(maildrop.expunge, msgnos)
        except (MboxError, OSError) as exc:
            log.error(
                "pop3 expunge failed %s user=%r deleted=%d error=%r",
                self._fields(),
                self._user,
                len(msgnos),
                str(exc),
            )
            session.expunge_failed()
        else:
            session.expunge_done()

    def _release_maildrop(self) -> None:
        maildrop, self._maildrop = self._maildrop, None
        if maildrop is not None:
            maildrop.close()

    def _log_logout(self, reason: str) -> None:
        log.info(
            "pop3 logout %s user=%r reason=%r retrieved=%d deleted=%d "
            "octets_sent=%d seconds=%.3f",
            self._fields(),
            self._user,
            reason,
            self._retrieved,
            self._deleted,
            self._octets_sent,
            time.monotonic() - self._started,
        )

    async def _close_writer(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            self._writer.transport.abort()


async def serve(
    config_path: Path, *, on_ready: Callable[[POP3Server], None] | None = None
) -> None:
    """Run the server from ``config_path`` until SIGTERM or SIGINT.

    SIGHUP rereads the config file; a bad new config is logged and the old
    one stays. ``on_ready`` is called once the listeners are open.
    """
    config = await asyncio.to_thread(load_server_config, config_path)
    runtime = await asyncio.to_thread(build_runtime, config)
    warn_risky_settings(config)
    server = POP3Server(runtime)
    stop = asyncio.Event()
    # Signal handlers go in before the listeners open, because a supervisor
    # that waits for the "pop3 listen" lines may signal at once, and
    # SIGHUP's default action would end the process.
    _handle_signals(server, config_path, stop)
    log_filter = SessionLogFilter()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        await server.start()
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
    finally:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await server.shutdown()
        for handler in handlers:
            handler.removeFilter(log_filter)


def _handle_signals(server: POP3Server, config_path: Path, stop: asyncio.Event) -> None:
    """Make SIGTERM and SIGINT set ``stop`` and SIGHUP start a reload."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = asyncio.ensure_future(_reload(server, config_path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)


async def _reload(server: POP3Server, config_path: Path) -> None:
    log.info("pop3 reload requested config=%s", config_path)
    try:
        config = await asyncio.to_thread(load_server_config, config_path)
        runtime = await asyncio.to_thread(build_runtime, config)
    except SpoolgateError as exc:
        log.error(
            "pop3 reload failed, keeping the running config config=%s error=%r",
            config_path,
            str(exc),
        )
        return
    server.reload(runtime)
