"""The bastion's RPC proxy: whole RPC records in, policy applied, records out.

Each TCP connection from a tunnel client (redirected to the proxy by an
nftables REDIRECT rule, or sent to a listener with a configured upstream)
gets its own connection to the NFS server. Calls go through
:class:`~spoolgate.tunnel.rpcpolicy.RPCPolicy`: allowed ones are forwarded,
the others are answered here with the reply the policy built. Replies are
matched to their calls by xid, teach the policy the handles they issue,
and go back to the client unchanged (an EXPORT list is the one exception:
it is cut down to the allowed exports).

A record that is not RPC, or a record stream that breaks (a fragment over
the size limit), closes that connection only; it is logged and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import ipaddress
import logging
import random
import signal
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from spoolgate.config import ConfigReader, build, load_toml
from spoolgate.errors import ConfigError, RPCError, TunnelError
from spoolgate.rpc.message import MsgType, peek_header
from spoolgate.rpc.record import (
    DEFAULT_MAX_RECORD_SIZE,
    MAX_FRAGMENT_SIZE,
    Record,
    RecordReader,
    encode_record,
)
from spoolgate.tunnel.repeats import RepeatCounter
from spoolgate.tunnel.rpcpolicy import (
    DEFAULT_HANDLE_TABLE_SIZE,
    Answer,
    ClientRule,
    Components,
    NFS4Mode,
    Pending,
    PolicySettings,
    RPCPolicy,
    address_key,
    split_path,
)

__all__ = [
    "PROCESS_MODES",
    "Listener",
    "ProxyConfig",
    "ProxyCounters",
    "ProxySettings",
    "RPCProxy",
    "read_proxy_config",
    "start_rpc_proxy",
]

# Named in full because the standalone runner is started with ``python -m``,
# where ``__name__`` is ``__main__``.
log = logging.getLogger("spoolgate.tunnel.rpcproxy")

# Bytes received and not yet relayed, per socket, above which the proxy
# stops reading that socket until its buffer drains.
STREAM_LIMIT = 2 * 1024 * 1024
# The last-fragment bit of a record marking header (RFC 5531, section 11).
LAST_FRAGMENT = 0x80000000
# Linux's SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv4.h,
# linux/netfilter_ipv6/ip6_tables.h); Python's socket module lacks them.
SO_ORIGINAL_DST = 80
# Ports below 1024 a root process may bind; Linux knfsd's default "secure"
# export option accepts only these as client ports.
RESERVED_PORTS = range(600, 1024)
RESERVED_PORT_TRIES = 64

FLAVOR_NAMES = {"none": 0, "sys": 1, "gss": 6}

# Values of ``rpc_proxy.process``: the proxy and the login service of
# ``spoolgate bastion`` run in a child process beside the packet relay, or
# on the relay's own event loop.
PROCESS_MODES = ("separate", "inline")

# The proxy's port on the bastion's tun address, where the nftables
# REDIRECT rule sends the clients' RPC connections.
DEFAULT_BASTION_PORT = 7450

Endpoint = tuple[str, int]


class _Stream(asyncio.Protocol):
    """One socket of a proxied connection, read as the chunks that arrive.

    Unlike ``asyncio.StreamReader``, which copies every chunk into a buffer
    and copies it out again, ``read`` hands over the received ``bytes``
    objects themselves. Reading pauses while more than ``STREAM_LIMIT``
    bytes wait, and ``drain`` waits while the transport's write buffer is
    above its high-water mark.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.connected: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > STREAM_LIMIT and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._writable.set()
        self._wake()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _wake(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    async def read(self) -> bytes:
        """Return the bytes received so far, waiting for some; b"" at EOF."""
        while not self._chunks and not self._eof:
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        chunks, self._chunks = self._chunks, []
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending; dropped if the connection is gone."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the write buffer is below its high-water mark."""
        await self._writable.wait()

    def get_extra_info(self, name: str) -> Any:
        """Return the transport's extra info ``name``."""
        assert self.transport is not None
        return self.transport.get_extra_info(name)

    def close(self) -> None:
        """Close the socket after sending what is queued."""
        if self.transport is not None:
            self.transport.close()


@dataclasses.dataclass(frozen=True, slots=True)
class Listener:
    """An address the proxy accepts on; ``upstream`` None means SO_ORIGINAL_DST."""

    host: str
    port: int
    upstream: Endpoint | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProxySettings:
    """Connection limits and timeouts of the proxy."""

    connect_timeout_s: float = 10.0
    idle_timeout_s: float = 900.0
    max_pending_calls: int = 4096
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE
    reserved_source_port: bool = True
    # Seconds between the per-client summary lines of connections and of
    # refused calls not logged one by one. Not a config key.
    log_interval_s: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything ``read_proxy_config`` finds in a config file.

    ``enabled``, ``port`` and ``process`` matter only inside
    ``spoolgate bastion``: whether the proxy runs, its port on the bastion's
    tun address, and whether it runs in a child process (one of
    ``PROCESS_MODES``).
    """

    policy: PolicySettings
    proxy: ProxySettings
    listeners: tuple[Listener, ...]
    addresses: Mapping[str, str]
    enabled: bool = True
    port: int = DEFAULT_BASTION_PORT
    process: str = "separate"


@dataclasses.dataclass(slots=True)
class ProxyCounters:
    """Counts of the proxy's connections, calls and replies, for status output."""

    connections: int = 0
    unknown_peers: int = 0
    upstream_failures: int = 0
    malformed_records: int = 0
    too_many_pending: int = 0
    calls_forwarded: int = 0
    calls_answered: int = 0
    replies: int = 0
    unmatched_replies: int = 0

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return dataclasses.asdict(self)


class RPCProxy:
    """Accepts client connections and relays them through the policy.

    ``addresses`` maps a peer IP address (as text) to a client name, the
    name of its policy entry. Connections from other addresses are closed.
    """

    def __init__(
        self,
        policy: RPCPolicy,
        addresses: Mapping[str, str],
        settings: ProxySettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.counters = ProxyCounters()
        self._addresses = {address_key(a): name for a, name in addresses.items()}
        self._settings = settings
        self._clock = clock
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_clients: dict[asyncio.Task[None], str] = {}
        self._refusals = RepeatCounter(settings.log_interval_s)
        self._connection_counts: dict[str, Counter[str]] = {}
        self._summary_task: asyncio.Task[None] | None = None

    @property
    def sockets(self) -> list[Endpoint]:
        """The addresses the proxy listens on, with the ports the kernel chose."""
        found: list[Endpoint] = []
        for server in self._servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                found.append((host, port))
        return found

    def set_addresses(self, addresses: Mapping[str, str]) -> None:
        """Replace the peer-address-to-client map (on a config reload)."""
        self._addresses = {address_key(a): name for a, name in addresses.items()}

    def close_clients(self, names: Collection[str]) -> int:
        """Close every connection of the named clients; return how many.

        A reload that revokes a client calls this, so its open connections
        cannot go on using handles the policy has dropped.
        """
        closing = [task for task, name in self._task_clients.items() if name in names]
        for task in closing:
            task.cancel()
        return len(closing)

    async def listen(self, listener: Listener) -> None:
        """Start accepting on ``listener``; raise TunnelError if it cannot bind."""

        def accept() -> _Stream:
            stream = _Stream()
            task = asyncio.create_task(self._serve(stream, listener))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return stream

        try:
            server = await asyncio.get_running_loop().create_server(
                accept, listener.host, listener.port
            )
        except OSError as exc:
            raise TunnelError(
                f"rpc proxy: cannot listen on {listener.host}:{listener.port}: "
                f"{exc.strerror}"
            ) from exc
        self._servers.append(server)
        for host, port in self.sockets[-len(server.sockets) :]:
            log.info("rpc proxy listening address=%s:%d", host, port)
        if self._summary_task is None:
            self._summary_task = asyncio.create_task(self._log_summaries())

    async def close(self) -> None:
        """Stop listening and close every connection."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._summary_task is not None:
            self._summary_task.cancel()
            self._summary_task = None
        self._flush_summaries(final=True)

    def count_connection(self, client: str, event: str) -> None:
        """Count a connection event (opened, idle_closed) for the next summary."""
        self._connection_counts.setdefault(client, Counter())[event] += 1

    def log_refusal(self, client: str, peer: str, answer: Answer) -> None:
        """Log a refused call, at WARNING only if it is the first one.

        The first refusal of a client and reason per interval is a WARNING;
        the rest are DEBUG lines, and the next summary line counts them.
        """
        assert answer.refusal is not None
        reason = answer.refusal.value
        first = self._refusals.note(f"client={client} reason={reason}", self._clock())
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "rpc proxy refused call client=%s peer=%s xid=%#010x reason=%s: %s",
            client,
            peer,
            answer.xid,
            reason,
            answer.detail,
        )

    async def _log_summaries(self) -> None:
        while True:
            await asyncio.sleep(self._settings.log_interval_s)
            self._flush_summaries(final=False)

    def _flush_summaries(self, *, final: bool) -> None:
        now = self._clock()
        due = self._refusals.take_all(now) if final else self._refusals.take_due(now)
        for summary in due:
            log.warning(
                "rpc proxy refused more calls %s: %d in %.0f s after the one logged",
                summary.key,
                summary.count,
                summary.seconds,
            )
        for client, counts in sorted(self._connection_counts.items()):
            fields = " ".join(f"{k}={n}" for k, n in sorted(counts.items()))
            log.info("rpc proxy connections client=%s: %s", client, fields)
        self._connection_counts.clear()

    def snapshot(self) -> dict[str, object]:
        """Return the proxy counters and the policy state for status output."""
        return {
            "proxy": self.counters.snapshot(),
            "policy": self.policy.snapshot(self._clock()),
        }

    async def _serve(self, stream: _Stream, listener: Listener) -> None:
        await stream.connected
        writer = stream
        self.counters.connections += 1
        peer = writer.get_extra_info("peername")
        assert isinstance(peer, tuple)
        peer_text = f"{peer[0]}:{peer[1]}"
        client = self._addresses.get(address_key(str(peer[0])))
        task = asyncio.current_task()
        try:
            if client is None:
                self.counters.unknown_peers += 1
                log.warning("rpc proxy refused connection peer=%s: unknown", peer_text)
                return
            if task is not None:
                self._task_clients[task] = client
            try:
                upstream = listener.upstream or original_destination(
                    writer.get_extra_info("socket")
                )
            except TunnelError as exc:
                self.counters.upstream_failures += 1
                log.error("rpc proxy closing connection peer=%s: %s", peer_text, exc)
                return
            server = await self._connect(upstream, client, peer_text)
            if server is None:
                return
            self.count_connection(client, "opened")
            log.debug(
                "rpc proxy connection open client=%s peer=%s server=%s:%d",
                client,
                peer_text,
                upstream[0],
                upstream[1],
            )
            connection = _Connection(self, client, peer_text, stream, server)
            await connection.run()
        finally:
            if task is not None:
                self._task_clients.pop(task, None)
            writer.close()

    async def _connect(
        self, upstream: Endpoint, client: str, peer: str
    ) -> _Stream | None:
        try:
            return await asyncio.wait_for(
                connect_upstream(upstream, self._settings.reserved_source_port),
                self._settings.connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            self.counters.upstream_failures += 1
            log.error(
                "rpc proxy cannot reach server client=%s peer=%s server=%s:%d: %s",
                client,
                peer,
                upstream[0],
                upstream[1],
                exc,
            )
            return None


@dataclasses.dataclass(frozen=True, slots=True)
class _Raw:
    """Bytes of a passed-through record, to be sent on as they are."""

    data: bytes


class _RecordSplitter:
    """Split a record stream into whole records and passed-through bytes.

    At the start of each record, ``passes`` sees the first 8 bytes of its
    payload (xid and message type). If it returns True, the record's bytes
    come out as :class:`_Raw` pieces as soon as they arrive, fragment headers
    included, so a large READ reply is not held back until its last byte
    came in. Otherwise the record comes out whole as a :class:`Record`.
    The size limit applies to both kinds.
    """

    def __init__(self, max_record_size: int, passes: Callable[[bytes], bool]) -> None:
        self._max_record_size = max_record_size
        self._passes = passes
        self._buffer = bytearray()
        self._payload = bytearray()
        self._fragments = 0
        self._total = 0
        self._passing = False
        self._left = 0
        self._whole = False

    def feed(self, data: bytes) -> list[_Raw | Record]:
        """Add ``data``; return what can go out now, in stream order."""
        out: list[_Raw | Record] = []
        if self._left and not self._buffer:
            taken = min(self._left, len(data))
            out.append(_Raw(data if taken == len(data) else data[:taken]))
            self._left -= taken
            data = data[taken:]
        self._buffer += data
        while self._step(out):
            pass
        return out

    def _step(self, out: list[_Raw | Record]) -> bool:
        buffer = self._buffer
        if self._left:
            taken = min(self._left, len(buffer))
            if not taken:
                return False
            out.append(_Raw(bytes(buffer[:taken])))
            del buffer[:taken]
            self._left -= taken
            return True
        if len(buffer) < 4:
            return False
        (header,) = struct.unpack_from(">I", buffer)
        size = header & MAX_FRAGMENT_SIZE
        last = bool(header & LAST_FRAGMENT)
        if not self._passing and not self._whole:
            # First fragment of a record: pass it through or read it whole.
            if len(buffer) < 4 + min(size, 8):
                return False
            self._total = 0
            self._passing = size >= 8 and self._passes(bytes(buffer[4:12]))
            self._whole = not self._passing
        if self._passing:
            self._total += size
            self._check_size(self._total)
            out.append(_Raw(bytes(buffer[:4])))
            del buffer[:4]
            self._left = size
            self._passing = not last
            return True
        return self._take_fragment(out, size, last)

    def _take_fragment(self, out: list[_Raw | Record], size: int, last: bool) -> bool:
        self._check_size(len(self._payload) + size)
        if len(self._buffer) < 4 + size:
            return False
        self._payload += self._buffer[4 : 4 + size]
        del self._buffer[: 4 + size]
        self._fragments += 1
        if last:
            out.append(Record(bytes(self._payload), self._fragments))
            self._payload = bytearray()
            self._fragments = 0
            self._whole = False
        return True

    def _check_size(self, total: int) -> None:
        if total > self._max_record_size:
            raise RPCError(
                f"record stream: record of at least {total} bytes exceeds "
                f"the limit of {self._max_record_size}; closing the connection"
            )


class _TooManyPendingError(RPCError):
    """A client sent more calls than ``max_pending_calls`` before replies came."""


class _Connection:
    """One client connection and its server connection."""

    def __init__(
        self,
        proxy: RPCProxy,
        client: str,
        peer: str,
        client_stream: _Stream,
        server_stream: _Stream,
    ) -> None:
        self._proxy = proxy
        self._policy = proxy.policy
        self._counters = proxy.counters
        self._settings = proxy._settings
        self._client = client
        self._peer = peer
        self._client_reader = self._client_writer = client_stream
        self._server_reader = self._server_writer = server_stream
        self._pending: dict[int, Pending] = {}
        self._refusals = 0

    async def run(self) -> None:
        to_server = asyncio.create_task(self._pump_calls())
        to_client = asyncio.create_task(self._pump_replies())
        try:
            await asyncio.wait({to_server, to_client}, return_when="FIRST_COMPLETED")
        finally:
            for task in (to_server, to_client):
                task.cancel()
            await asyncio.gather(to_server, to_client, return_exceptions=True)
            self._server_writer.close()
            log.debug(
                "rpc proxy connection closed client=%s peer=%s refused=%d",
                self._client,
                self._peer,
                self._refusals,
            )

    async def _read(self, reader: _Stream) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(), self._settings.idle_timeout_s)
        except TimeoutError:
            self._proxy.count_connection(self._client, "idle_closed")
            log.debug(
                "rpc proxy idle timeout client=%s peer=%s", self._client, self._peer
            )
            return b""
        except ConnectionError:
            return b""

    async def _pump_calls(self) -> None:
        records = RecordReader(self._settings.max_record_size)
        while data := await self._read(self._client_reader):
            try:
                for record in records.feed(data):
                    self._on_call_record(record.payload)
            except RPCError as exc:
                self._malformed("client", exc)
                return
            await self._drain_both()

    async def _pump_replies(self) -> None:
        splitter = _RecordSplitter(self._settings.max_record_size, self._passes)
        while data := await self._read(self._server_reader):
            try:
                self._send_replies(splitter.feed(data))
            except RPCError as exc:
                self._malformed("server", exc)
                return
            await self._drain_both()

    def _send_replies(self, items: list[_Raw | Record]) -> None:
        raw: list[bytes] = []
        for item in items:
            if isinstance(item, _Raw):
                raw.append(item.data)
                continue
            if raw:
                self._client_writer.write(b"".join(raw))
                raw.clear()
            self._on_reply_record(item.payload)
        if raw:
            self._client_writer.write(b"".join(raw))

    def _passes(self, head: bytes) -> bool:
        """Tell whether a reply starting with ``head`` can pass unread.

        Such a reply is matched and counted here, because the record
        never comes out whole. A reply that is malformed past its header
        reaches the client as the server sent it.
        """
        xid, kind = peek_header(head)
        pending = self._pending.get(xid)
        if kind is not MsgType.REPLY or pending is None or pending.reads_reply:
            return False
        del self._pending[xid]
        self._counters.replies += 1
        return True

    async def _drain_both(self) -> None:
        try:
            await self._server_writer.drain()
            await self._client_writer.drain()
        except ConnectionError:
            pass

    def _malformed(self, side: str, exc: RPCError) -> None:
        if not isinstance(exc, _TooManyPendingError):
            self._counters.malformed_records += 1
        log.warning(
            "rpc proxy closing connection client=%s peer=%s: bad record stream "
            "from %s: %s",
            self._client,
            self._peer,
            side,
            exc,
        )

    def _on_call_record(self, payload: bytes) -> None:
        xid, kind = peek_header(payload)
        if kind is MsgType.REPLY:
            # A reply to an NFSv4.1 callback the server sent on this
            # connection; it carries no file access of the client's own.
            self._server_writer.write(encode_record(payload))
            return
        decision = self._policy.check_call(self._client, payload, self._proxy._clock())
        if isinstance(decision, Answer):
            self._counters.calls_answered += 1
            self._log_answer(decision)
            self._client_writer.write(encode_record(decision.reply))
            return
        if len(self._pending) >= self._settings.max_pending_calls:
            self._counters.too_many_pending += 1
            raise _TooManyPendingError(
                f"more than {self._settings.max_pending_calls} calls awaiting replies"
            )
        self._pending[xid] = decision.pending
        self._counters.calls_forwarded += 1
        self._server_writer.write(encode_record(payload))

    def _on_reply_record(self, payload: bytes) -> None:
        xid, kind = peek_header(payload)
        if kind is MsgType.CALL:
            # An NFSv4.1 callback from the server to the client.
            self._client_writer.write(encode_record(payload))
            return
        pending = self._pending.pop(xid, None)
        if pending is None:
            self._counters.unmatched_replies += 1
            log.warning(
                "rpc proxy dropped reply client=%s peer=%s xid=%#010x: no call",
                self._client,
                self._peer,
                xid,
            )
            return
        self._counters.replies += 1
        self._client_writer.write(
            encode_record(self._policy.check_reply(self._client, pending, payload))
        )

    def _log_answer(self, answer: Answer) -> None:
        if answer.refusal is None:
            log.debug(
                "rpc proxy replied client=%s xid=%#010x", self._client, answer.xid
            )
            return
        self._refusals += 1
        self._proxy.log_refusal(self._client, self._peer, answer)


def original_destination(sock: socket.socket) -> Endpoint:
    """Return the address a REDIRECTed connection was sent to (SO_ORIGINAL_DST).

    Raises TunnelError when the socket was not redirected by netfilter.
    """
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
            port = struct.unpack_from("!H", raw, 2)[0]
            return str(ipaddress.IPv6Address(raw[8:24])), port
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError as exc:
        raise TunnelError(
            f"rpc proxy: no original destination on a connection to "
            f"{sock.getsockname()}: {exc.strerror}; is the nftables REDIRECT "
            "rule in place, or does the listener need an upstream?"
        ) from exc
    port, packed = struct.unpack_from("!2xH4s", raw)
    return str(ipaddress.IPv4Address(packed)), port


async def connect_upstream(upstream: Endpoint, reserved_source_port: bool) -> _Stream:
    """Open a connection to the server, from a port below 1024 if asked."""
    loop = asyncio.get_running_loop()
    if not reserved_source_port:
        _, stream = await loop.create_connection(_Stream, upstream[0], upstream[1])
        return stream
    family = socket.AF_INET6 if ":" in upstream[0] else socket.AF_INET
    last: OSError | None = None
    for port in random.sample(RESERVED_PORTS, RESERVED_PORT_TRIES):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # The proxy closes first, so its old connections sit in
            # TIME_WAIT on these ports; SO_REUSEADDR lets a new connection
            # to another (address, port) use them, and connect() fails with
            # EADDRNOTAVAIL only if the whole 4-tuple is still taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", port))
            sock.setblocking(False)
            await loop.sock_connect(sock, upstream)
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        _, stream = await loop.create_connection(_Stream, sock=sock)
        return stream
    raise OSError(
        f"no free source port below 1024 after {RESERVED_PORT_TRIES} tries "
        f"({last}); set rpc_proxy.reserved_source_port = false if the server "
        "does not demand one"
    )


async def start_rpc_proxy(
    policy: RPCPolicy,
    addresses: Mapping[str, str],
    listeners: tuple[Listener, ...],
    settings: ProxySettings,
) -> RPCProxy:
    """Create a proxy for ``policy`` and start every listener."""
    proxy = RPCProxy(policy, addresses, settings)
    try:
        for listener in listeners:
            await proxy.listen(listener)
    except BaseException:
        await proxy.close()
        raise
    return proxy


# -- configuration ------------------------------------------------------------


def read_proxy_config(root: ConfigReader, *, bastion: bool = False) -> ProxyConfig:
    """Read ``[rpc_proxy]``, ``[[rpc_proxy.listener]]`` and ``[[policy.*]]``.

    With ``bastion`` set, the file is a ``spoolgate bastion`` config: it
    may set ``rpc_proxy.enabled``, ``rpc_proxy.port`` and
    ``rpc_proxy.process``, and must not name
    listeners or client addresses, which the bastion derives itself.
    Errors are collected in ``root``; the caller runs ``root.finish()``.
    """
    table = root.table("rpc_proxy")
    port = DEFAULT_BASTION_PORT
    process = PROCESS_MODES[0]
    if bastion:
        port = table.get_int("port", DEFAULT_BASTION_PORT, min=1, max=65535)
        process = table.get_choice("process", PROCESS_MODES[0], PROCESS_MODES)
    nfs4 = table.get_choice("nfs4", "refuse", [mode.value for mode in NFS4Mode])
    size = table.get_int(
        "handle_table_size", DEFAULT_HANDLE_TABLE_SIZE, min=64, max=10_000_000
    )
    proxy = ProxySettings(
        connect_timeout_s=table.get_float("connect_timeout_s", 10.0, min=0.1, max=600),
        idle_timeout_s=table.get_float("idle_timeout_s", 900.0, min=1, max=86400),
        max_pending_calls=table.get_int("max_pending_calls", 4096, min=1, max=65536),
        max_record_size=table.get_int(
            "max_record_size", DEFAULT_MAX_RECORD_SIZE, min=4096, max=64 << 20
        ),
        reserved_source_port=table.get_bool("reserved_source_port", True),
    )
    listeners = tuple(_read_listener(item) for item in table.tables("listener"))
    policy = root.table("policy")
    clients, addresses = _read_clients(policy, bastion=bastion)
    users = {name: exports for name, exports in _read_users(policy)}
    settings = PolicySettings(clients, users, NFS4Mode(nfs4), size)
    if bastion and listeners:
        table.error(
            "listener",
            [f"{item.host}:{item.port}" for item in listeners],
            "is for the standalone runner only; the bastion listens on its tun "
            "address at rpc_proxy.port",
        )
    enabled = bool(clients)
    if bastion and table.has("enabled"):
        enabled = table.get_bool("enabled", False) or enabled
        if clients and not table.get_bool("enabled", False):
            table.error(
                "enabled",
                False,
                "contradicts the [[policy.client]] entries; remove one of the two",
            )
    return ProxyConfig(settings, proxy, listeners, addresses, enabled, port, process)


def _read_endpoint(reader: ConfigReader, key: str) -> Endpoint | None:
    value = reader.get_str(key, "")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        reader.error(key, value, "must be host:port")
        return None
    return host.strip("[]"), int(port)


def _read_listener(reader: ConfigReader) -> Listener:
    reader.require("listen")
    listen = _read_endpoint(reader, "listen") or ("", 0)
    upstream = _read_endpoint(reader, "upstream") if reader.has("upstream") else None
    return Listener(listen[0], listen[1], upstream)


def _read_exports(reader: ConfigReader) -> tuple[Components, ...]:
    reader.require("exports")
    exports: list[Components] = []
    for text in reader.get_str_list("exports", ()):
        try:
            path = split_path(text.encode())
        except ValueError:
            reader.error("exports", text, "must be an absolute path without . or ..")
            continue
        if not text.startswith("/"):
            reader.error("exports", text, "must be an absolute path")
            continue
        exports.append(path)
    return tuple(exports)


def _read_clients(
    policy: ConfigReader, *, bastion: bool
) -> tuple[tuple[ClientRule, ...], dict[str, str]]:
    rules: list[ClientRule] = []
    addresses: dict[str, str] = {}
    for reader in policy.tables("client"):
        reader.require("name")
        name = reader.get_str("name", "")
        if any(rule.name == name for rule in rules):
            reader.error("name", name, "is used by another [[policy.client]]")
        exports = _read_exports(reader)
        users = reader.get_str_list("users", ("*",))
        flavors = _read_flavors(reader)
        rule = ClientRule(
            name,
            exports,
            None if "*" in users else frozenset(users),
            reader.get_bool("allow_root", False),
            flavors,
        )
        rules.append(rule)
        if bastion and reader.has("address"):
            reader.error(
                "address",
                reader.get_str("address", ""),
                "is for the standalone runner only; the bastion takes each "
                "client's address from its [[client]] entry",
            )
        elif reader.has("address"):
            address = reader.get_str("address", "")
            try:
                addresses[str(ipaddress.ip_address(address))] = name
            except ValueError:
                reader.error("address", address, "must be an IP address")
    return tuple(rules), addresses


def _read_flavors(reader: ConfigReader) -> frozenset[int]:
    names = reader.get_str_list("flavors", ("sys",))
    flavors: set[int] = set()
    for name in names:
        if name not in FLAVOR_NAMES:
            reader.error("flavors", name, f"must be one of {', '.join(FLAVOR_NAMES)}")
            continue
        flavors.add(FLAVOR_NAMES[name])
    return frozenset(flavors)


def _read_users(policy: ConfigReader) -> list[tuple[str, tuple[Components, ...]]]:
    users: list[tuple[str, tuple[Components, ...]]] = []
    for reader in policy.tables("user"):
        reader.require("name")
        users.append((reader.get_str("name", ""), _read_exports(reader)))
    return users


# -- standalone runner --------------------------------------------------------


async def _run_standalone(path: Path, ready_file: Path | None) -> None:
    from spoolgate.tunnel import login

    root = ConfigReader(load_toml(path), str(path))
    config, login_config = build(
        root, lambda r: (read_proxy_config(r), login.read_login_config(r))
    )
    if not config.listeners:
        raise ConfigError(f"{path}: rpc_proxy.listener: give at least one listener")
    policy = RPCPolicy(config.policy)
    proxy = await start_rpc_proxy(
        policy, config.addresses, config.listeners, config.proxy
    )
    service = await login.start_login_service(policy, config.addresses, login_config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("rpc proxy and login service running config=%s", path)
    if ready_file is not None:
        ready_file.write_text("ready\n")
    try:
        await stop.wait()
    finally:
        await service.close()
        await proxy.close()


def main(argv: list[str] | None = None) -> int:
    """Run the proxy and login service from a config file, without the tunnel.

    For labs and tests: ``python -m spoolgate.tunnel.rpcproxy --config F``.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", type=Path, required=True, help="TOML file")
    parser.add_argument(
        "--ready-file", type=Path, help="write this file once listening (default: none)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log DEBUG (default: INFO)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_standalone(args.config, args.ready_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
