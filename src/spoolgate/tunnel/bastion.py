"""``spoolgate bastion``: accept tunnel clients, filter their packets, relay.

Each accepted TCP connection gets its TLS handshake with the server context
current at that moment, so a SIGHUP reload applies to new connections
without reopening the listening socket. After the handshake the client's
certificate must match a configured pin; the pin binds the session to one
tunnel address. A second session for the same certificate replaces the
first. Packets from a client pass ``PortFilter`` or are dropped and counted;
packets read from the tun device go to the session owning their
destination address, and nowhere else.

With RPC policy on (``config.rpc``), the RPC proxy and the login service
listen on the tun address, in a child process or in this one
(``rpc_proxy.process``, see :mod:`spoolgate.tunnel.rpcservices`). The
kernel redirects the clients' RPC connections to the proxy, after the
packets passed the checks above; the filter also lets TCP to the login
service through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import logging
import random
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

from spoolgate.errors import ConfigError, PacketError, PinError, TunnelError
from spoolgate.tunnel import getport, nft, status, tls, tun
from spoolgate.tunnel import packet as packet_mod
from spoolgate.tunnel.client import utc_now
from spoolgate.tunnel.config import (
    BastionConfig,
    ClientEntry,
    load_bastion_config,
)
from spoolgate.tunnel.link import Link
from spoolgate.tunnel.policy import (
    CloseReason,
    Counters,
    DropReason,
    PortFilter,
    abbreviate_fingerprint,
    drop_delta,
)
from spoolgate.tunnel.rpcservices import PolicyServices, start_services
from spoolgate.tunnel.tun import PacketDevice

log = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]

# Unsent bytes a session may queue before packets for it are dropped. One
# slow client must not stall the shared tun reader, so it loses packets
# instead and its TCP connections slow down.
SESSION_QUEUE_LIMIT = 8 * 1024 * 1024


@dataclasses.dataclass(slots=True)
class Session:
    """One authenticated client connection."""

    id: int
    entry: ClientEntry
    link: Link
    peer: str
    since: datetime.datetime
    source: bytes

    @property
    def label(self) -> str:
        """The log prefix naming this session and its client."""
        return (
            f"session={self.id} client={self.entry.name} "
            f"fp={abbreviate_fingerprint(self.entry.fingerprint)}"
        )

    def status(self) -> dict[str, object]:
        """Return the session's line in the status JSON."""
        return {
            "client": self.entry.name,
            "fingerprint": abbreviate_fingerprint(self.entry.fingerprint),
            "address": str(self.entry.address),
            "peer": self.peer,
            "since": self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "bytes_in": self.link.bytes_in,
            "bytes_out": self.link.bytes_out,
            "packets_in": self.link.packets_in,
            "packets_out": self.link.packets_out,
        }


def revoked_clients(
    old: tuple[ClientEntry, ...], new: tuple[ClientEntry, ...]
) -> frozenset[str]:
    """Return the names of clients whose entry a reload removed or changed."""
    current = {entry.name: entry for entry in new}
    return frozenset(e.name for e in old if current.get(e.name) != e)


class Bastion:
    """The relay: TLS sessions on one side, a packet device on the other."""

    def __init__(
        self,
        config: BastionConfig,
        device: PacketDevice,
        ports: frozenset[int],
        *,
        clock: Clock,
        services: PolicyServices | None = None,
    ) -> None:
        self.config = config
        self.device = device
        self.ports = ports
        self.services = services
        self.counters = Counters()
        self.sessions: dict[bytes, Session] = {}
        self._filter = PortFilter.create(config.server, ports)
        # Clients reach the login service on the bastion's own tun address.
        self._login_filter = (
            None
            if services is None
            else PortFilter.create(config.tun_interface.ip, {services.login_port})
        )
        self._clock = clock
        self._ids = itertools.count(1)
        self._pins = {entry.fingerprint: entry for entry in config.clients}
        self._context = self._make_context(config)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _make_context(config: BastionConfig) -> ssl.SSLContext:
        client_certs = "".join(entry.cert_pem for entry in config.clients)
        return tls.server_context(config.cert, config.key, client_certs)

    async def start(self) -> tuple[str, int]:
        """Listen for clients and read the device; return the bound address."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Accept(self._accepted),
            self.config.listen_host,
            self.config.listen_port,
        )
        loop.add_reader(self.device.fileno(), self._on_device_readable)
        self._tasks.add(asyncio.create_task(self._report_drops()))
        host, port = self._server.sockets[0].getsockname()[:2]
        log.info("listening address=%s:%d ports=%s", host, port, sorted(self.ports))
        return host, port

    async def close(self) -> None:
        """Stop listening, close every session and stop reading the device."""
        if self._server is not None:
            self._server.close()
        asyncio.get_running_loop().remove_reader(self.device.fileno())
        for task in list(self._tasks):
            task.cancel()
        sessions = list(self.sessions.values())
        for session in sessions:
            self._end(session, CloseReason.SHUTDOWN)
        if sessions:
            await asyncio.wait([s.link.closed for s in sessions], timeout=5)

    def reload(self, config: BastionConfig) -> None:
        """Apply new clients and policy rules; close sessions of changed entries."""
        if config.settings_needing_restart() != self.config.settings_needing_restart():
            log.warning(
                "config reload: only [[client]], [[policy.*]] and rpc_proxy.nfs4 "
                "changes apply; restart for the others"
            )
        self._context = self._make_context(config)
        self._pins = {entry.fingerprint: entry for entry in config.clients}
        revoked = revoked_clients(self.config.clients, config.clients)
        self.config = dataclasses.replace(self.config, clients=config.clients)
        for session in list(self.sessions.values()):
            if self._pins.get(session.entry.fingerprint) != session.entry:
                log.warning("%s revoked by config reload, closing", session.label)
                self._end(session, CloseReason.REVOKED)
        if self.services is not None:
            self.services.reload(config, revoked)
        log.info("config reloaded clients=%d", len(self._pins))

    async def status(self) -> dict[str, object]:
        """Return the status JSON object: sessions, counters, allowed ports."""
        result: dict[str, object] = {
            "sessions": [s.status() for s in self.sessions.values()],
            "allowed_ports": sorted(self.ports),
        }
        result.update(self.counters.snapshot())
        services = self.services
        try:
            result["rpc_policy"] = (
                None if services is None else await services.report(self._clock())
            )
        except TunnelError as exc:
            log.error("status: %s", exc)
            result["rpc_policy"] = {"error": str(exc)}
        return result

    # Connection set-up

    def _accepted(self, transport: asyncio.Transport) -> None:
        task = asyncio.create_task(self._handshake(transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        peer = _peer_name(transport)
        label = f"peer={peer}"
        link = Link(self.config.mtu, self.config.timers, label)
        try:
            tls_transport = await asyncio.get_running_loop().start_tls(
                transport,
                link,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self.config.handshake_timeout_s,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.warning("%s TLS handshake failed: %s", label, exc or type(exc).__name__)
            self.counters.close(CloseReason.HANDSHAKE_FAILED)
            transport.abort()
            return
        if tls_transport is None:
            transport.abort()
            return
        assert isinstance(tls_transport, asyncio.Transport)
        link.attach(tls_transport)
        try:
            der = tls.peer_certificate(tls_transport.get_extra_info("ssl_object"))
            entry = tls.match_pin(der, self._pins, self._clock())
        except PinError as exc:
            log.warning("%s rejected: %s", label, exc)
            self.counters.close(CloseReason.PIN_MISMATCH)
            tls_transport.abort()
            return
        self._open_session(entry, link, peer)

    def _open_session(self, entry: ClientEntry, link: Link, peer: str) -> None:
        source = entry.address.packed
        session = Session(next(self._ids), entry, link, peer, self._clock(), source)
        link.label = session.label
        old = self.sessions.get(source)
        if old is not None:
            log.info("%s replaced by session=%d", old.label, session.id)
            self._end(old, CloseReason.REPLACED)
        self.sessions[source] = session
        link.start(lambda packets: self._from_client(session, packets))
        # The client waits for this first frame as proof that its certificate
        # was accepted.
        link.send_keepalive()
        log.info("%s session up peer=%s address=%s", session.label, peer, entry.address)
        task = asyncio.create_task(self._await_close(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_close(self, session: Session) -> None:
        reason = await session.link.closed
        if self.sessions.get(session.source) is session:
            del self.sessions[session.source]
        self.counters.close(reason)
        log.info(
            "%s session down reason=%s bytes_in=%d bytes_out=%d",
            session.label,
            reason.value,
            session.link.bytes_in,
            session.link.bytes_out,
        )

    def _end(self, session: Session, reason: CloseReason) -> None:
        if self.sessions.get(session.source) is session:
            del self.sessions[session.source]
        session.link.close(reason)

    # Packet relay

    def _from_client(self, session: Session, packets: list[bytes]) -> None:
        if self.sessions.get(session.source) is not session:
            # Closed or replaced; its remaining bytes must not reach the device.
            return
        check = self._filter.check
        source = session.source
        write = self.device.write
        counters = self.counters
        login = self._login_filter
        for packet in packets:
            reason = check(packet, source)
            if reason is DropReason.WRONG_DESTINATION and login is not None:
                reason = login.check(packet, source)
            if reason is not None:
                counters.drop(reason)
            elif not write(packet):
                counters.drop(DropReason.TUN_BUSY)

    def _on_device_readable(self) -> None:
        batches: dict[bytes, list[bytes]] = {}
        for packet in self.device.read_batch():
            try:
                destination = packet_mod.destination(packet)
            except PacketError:
                self.counters.drop(DropReason.MALFORMED)
                continue
            batches.setdefault(destination, []).append(packet)
        for destination, packets in batches.items():
            session = self.sessions.get(destination)
            if session is None:
                self.counters.drop(DropReason.NO_SESSION, len(packets))
            elif session.link.buffered() > SESSION_QUEUE_LIMIT:
                self.counters.drop(DropReason.SESSION_BUSY, len(packets))
            else:
                session.link.send(packets)

    async def _report_drops(self) -> None:
        interval = self.config.timers.drop_log_interval_s
        before = dict(self.counters.drops)
        while True:
            await asyncio.sleep(interval)
            grown = drop_delta(before, self.counters.drops)
            if grown:
                fields = " ".join(f"{k}={v}" for k, v in sorted(grown.items()))
                log.warning("packets dropped in %.0f s: %s", interval, fields)
            before = dict(self.counters.drops)


class _Accept(asyncio.Protocol):
    """Hands each new TCP connection to the bastion for its TLS handshake."""

    def __init__(self, accepted: Callable[[asyncio.Transport], None]) -> None:
        self._accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # The ClientHello must wait in the socket until start_tls reads it.
        transport.pause_reading()
        self._accepted(transport)


def _peer_name(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


def resolve_ports(config: BastionConfig) -> frozenset[int]:
    """Return the allowed TCP ports, asking the portmapper for MOUNT if needed."""
    mount = config.mount_port
    if mount == 0:
        mount = getport.query_mount_port(
            str(config.server),
            config.portmap_port,
            timeout=config.handshake_timeout_s,
            xid=random.getrandbits(32),
        )
        log.info(
            "mount port learned from portmapper server=%s port=%d", config.server, mount
        )
    return frozenset({config.portmap_port, config.nfs_port, mount})


def run_bastion(config_path: Path) -> int:
    """Run ``spoolgate bastion --config``: set up, serve until SIGTERM, clean up."""
    config = load_bastion_config(config_path)
    # Until the event loop takes these signals over, SIGTERM must still run
    # the clean-up below and SIGHUP must not kill the bastion half set up.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ports = resolve_ports(config)
    if config.rpc is None:
        log.warning(
            "rpc policy off: no [[policy.client]] entries and rpc_proxy.enabled "
            "is not set, so export allow-lists, file handle checks and uid "
            "binding by login are off; clients reach every export with any uid"
        )
    device = tun.open_tun(config.tun_name, config.mtu)
    rules: nft.NatRules | None = None
    try:
        tun.configure(config.tun_name, config.mtu, config.tun_interface)
        rules = kernel_rules(config, ports)
        if rules is not None:
            rules.install()
        asyncio.run(_serve(config_path, config, device, ports))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if rules is not None:
            rules.remove()
        device.close()
        log.info("bastion stopped dev=%s", config.tun_name)
    return 0


def kernel_rules(config: BastionConfig, ports: frozenset[int]) -> nft.NatRules | None:
    """Return the nftables table the bastion needs, or None for none.

    With RPC policy on, the table redirects to the proxy even when ``nat``
    is false, because without the redirect the calls would bypass the policy.
    """
    table = nft.table_name(config.tun_name)
    if config.rpc is not None:
        script = nft.proxy_ruleset(
            table,
            config.tun_name,
            config.tun_interface.ip,
            config.server,
            ports,
            (config.rpc.port, config.rpc.login.port),
        )
        return nft.NatRules(table, script, config.server.version, forwarding=False)
    if not config.nat:
        return None
    script = nft.ruleset(
        table, config.tun_name, config.tun_interface.network, config.server, ports
    )
    return nft.NatRules(table, script, config.server.version)


async def _serve(
    config_path: Path,
    config: BastionConfig,
    device: PacketDevice,
    ports: frozenset[int],
) -> None:
    services = None
    stop = asyncio.Event()
    if config.rpc is not None:
        services = await start_services(config, config.rpc, stop.set)
    bastion = Bastion(config, device, ports, clock=utc_now, services=services)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, bastion, config_path)
    try:
        await bastion.start()
        status_server = await status.serve_status(config.status_socket, bastion.status)
    except BaseException:
        if services is not None:
            await services.close()
        raise
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        status_server.close()
        status.remove_status_socket(config.status_socket)
        # Closed before run_bastion deletes the nftables table, so no
        # redirected connection outlives the proxy.
        if services is not None:
            await services.close()
        await bastion.close()


def _reload(bastion: Bastion, config_path: Path) -> None:
    try:
        config = load_bastion_config(config_path)
    except ConfigError as exc:
        log.error("config reload failed, keeping the old config: %s", exc)
        return
    bastion.reload(config)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
