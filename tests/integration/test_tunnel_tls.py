"""Tunnel client and bastion over real TLS on 127.0.0.1, with fake tun devices.

The tun devices are SOCK_SEQPACKET socket pairs, so no root is needed: the
test writes IP packets on one end and reads what the relay wrote.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import random
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from spoolgate.errors import TunnelUnreachableError
from spoolgate.tunnel import getport, keys, status, tls
from spoolgate.tunnel.bastion import Bastion
from spoolgate.tunnel.client import TunnelClient
from spoolgate.tunnel.config import load_bastion_config, load_tunnel_config
from spoolgate.tunnel.frames import KEEPALIVE_FRAME, encode_data
from spoolgate.tunnel.policy import CloseReason, DropReason, abbreviate_fingerprint
from spoolgate.tunnel.tun import fake_device_pair

SERVER = ipaddress.ip_address("10.231.3.2")
ALICE = ipaddress.ip_address("10.231.9.2")
BOB = ipaddress.ip_address("10.231.9.3")
NOW = datetime.datetime.now(datetime.UTC)
TIMEOUT = 10.0


def ip_tcp(src: object, dst: object, dst_port: int, payload: bytes = b"") -> bytes:
    """Return an IPv4 TCP packet (checksums zero: nothing here verifies them)."""
    src_ip = ipaddress.ip_address(str(src))
    dst_ip = ipaddress.ip_address(str(dst))
    tcp = struct.pack(">HHIIBBHHH", 40000, dst_port, 1, 0, 0x50, 0x18, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    head = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0,
        src_ip.packed, dst_ip.packed,
    )  # fmt: skip
    return head + tcp + payload


class Lab:
    """Key files and config files for one bastion and its clients in tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bastion_keys = keys.write_key_pair(root, "bastion", now=NOW)
        self.clients: dict[str, keys.KeyPair] = {}
        self.addresses: dict[str, str] = {}

    def add_client(
        self,
        name: str,
        address: object,
        now: datetime.datetime = NOW,
        days: int = keys.DEFAULT_DAYS,
    ) -> keys.KeyPair:
        pair = keys.write_key_pair(self.root, name, now=now, days=days)
        self.clients[name] = pair
        self.addresses[name] = str(address)
        return pair

    def bastion_config(
        self, port: int = 0, listed: tuple[str, ...] | None = None
    ) -> Path:
        lines = [
            "[bastion]",
            f'listen = "127.0.0.1:{port}"',
            'key = "bastion.key"',
            'cert = "bastion.crt"',
            'status_socket = "status.sock"',
            "keepalive_s = 0.2",
            "dead_peer_s = 1.0",
            "[tun]",
            'address = "10.231.9.1/24"',
            "[nfs]",
            f'server = "{SERVER}"',
            "mount_port = 20048",
        ]
        for name in listed if listed is not None else tuple(self.clients):
            pair = self.clients[name]
            lines += [
                "[[client]]",
                f'name = "{name}"',
                f'cert = "{pair.cert_path.name}"',
                f'fingerprint = "{pair.fingerprint}"',
                f'address = "{self.addresses[name]}"',
            ]
        path = self.root / "bastion.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def client_config(self, name: str, port: int, pin: str | None = None) -> Path:
        path = self.root / f"{name}.toml"
        path.write_text(
            "[tunnel]\n"
            f'bastion = "127.0.0.1:{port}"\n'
            f'bastion_fingerprint = "{pin or self.bastion_keys.fingerprint}"\n'
            f'key = "{name}.key"\n'
            f'cert = "{name}.crt"\n'
            "backoff_initial_s = 0.05\n"
            "backoff_max_s = 0.2\n"
            "keepalive_s = 0.2\n"
            "dead_peer_s = 1.0\n"
            "[tun]\n"
            f'address = "{self.addresses.get(name, ALICE)}"\n'
            f'routes = ["{SERVER}/32"]\n'
        )
        return path


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it holds; fail the test after TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def send(sock: socket.socket, packet: bytes) -> None:
    """Write one packet to the test's end of a fake device."""
    await asyncio.get_running_loop().sock_sendall(sock, packet)


async def receive(sock: socket.socket) -> bytes:
    """Read one packet from the test's end of a fake device."""
    return await asyncio.wait_for(
        asyncio.get_running_loop().sock_recv(sock, 70000), TIMEOUT
    )


class Running:
    """A started bastion plus started clients, stopped by ``stop``."""

    def __init__(self, lab: Lab, bastion_config: Path) -> None:
        self.lab = lab
        self.config = load_bastion_config(bastion_config)
        device, self.bastion_tun = fake_device_pair("sgbast0", self.config.mtu)
        self.bastion = Bastion(
            self.config, device, frozenset({111, 2049, 20048}), clock=lambda: NOW
        )
        self.port = 0
        self.clients: dict[str, tuple[TunnelClient, socket.socket]] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        _, self.port = await self.bastion.start()

    def start_client(self, name: str, pin: str | None = None) -> TunnelClient:
        config = load_tunnel_config(self.lab.client_config(name, self.port, pin))
        device, end = fake_device_pair("sgtun0", config.mtu)
        context = tls.client_context(config.cert, config.key)
        client = TunnelClient(config, device, context, rng=random.Random(1))
        self.clients[name] = (client, end)
        self._tasks.append(asyncio.create_task(client.run(self._stop)))
        return client

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), TIMEOUT)
        await self.bastion.close()
        for client, end in self.clients.values():
            client.device.close()
            end.close()
        self.bastion.device.close()
        self.bastion_tun.close()


def run_lab(tmp_path: Path, body: Callable[[Lab], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(Lab(tmp_path)), 60))


def test_tunnel_allowed_packet_reaches_bastion_and_back(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice")
        await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        _, alice_tun = run.clients["alice"]
        outbound = ip_tcp(ALICE, SERVER, 2049, b"nfs call")
        await send(alice_tun, outbound)
        assert await receive(run.bastion_tun) == outbound
        reply = ip_tcp(SERVER, ALICE, 40000, b"nfs reply")
        await send(run.bastion_tun, reply)
        assert await receive(alice_tun) == reply
        await run.stop()

    run_lab(tmp_path, body)


def test_tunnel_batch_of_packets_arrives_in_order(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice")
        await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        _, alice_tun = run.clients["alice"]
        sent = [ip_tcp(ALICE, SERVER, 2049, bytes([i]) * 1000) for i in range(200)]
        for packet in sent:
            await send(alice_tun, packet)
        received = [await receive(run.bastion_tun) for _ in sent]
        assert received == sent
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_spoofed_and_filtered_packets_counted(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice")
        await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        _, alice_tun = run.clients["alice"]
        await send(alice_tun, ip_tcp(BOB, SERVER, 2049))
        await send(alice_tun, ip_tcp(ALICE, SERVER, 22))
        await send(alice_tun, b"\x45\x00")
        marker = ip_tcp(ALICE, SERVER, 111)
        await send(alice_tun, marker)
        assert await receive(run.bastion_tun) == marker
        drops = run.bastion.counters.drops
        assert drops[DropReason.SPOOFED_SOURCE] == 1
        assert drops[DropReason.PORT_NOT_ALLOWED] == 1
        assert drops[DropReason.MALFORMED] == 1
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_return_packet_goes_only_to_owner(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        lab.add_client("bob", BOB)
        run = Running(lab, lab.bastion_config())
        await run.start()
        for name in ("alice", "bob"):
            client = run.start_client(name)
            await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        _, alice_tun = run.clients["alice"]
        _, bob_tun = run.clients["bob"]
        await wait_until(lambda: len(run.bastion.sessions) == 2, "two sessions")
        for_bob = ip_tcp(SERVER, BOB, 40000, b"bob's data")
        await send(run.bastion_tun, for_bob)
        assert await receive(bob_tun) == for_bob
        stray = ip_tcp(SERVER, "10.231.9.77", 40000)
        await send(run.bastion_tun, stray)
        await wait_until(
            lambda: run.bastion.counters.drops[DropReason.NO_SESSION] == 1, "no_session"
        )
        alice_tun.setblocking(False)
        with pytest.raises(BlockingIOError):
            alice_tun.recv(70000)
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_unknown_client_key_rejected(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        lab.add_client("mallory", BOB)
        run = Running(lab, lab.bastion_config(listed=("alice",)))
        await run.start()
        client = run.start_client("mallory")
        closes = run.bastion.counters.closes
        await wait_until(
            lambda: closes[CloseReason.HANDSHAKE_FAILED] >= 2, "rejections"
        )
        assert not client.connected.is_set()
        assert run.bastion.sessions == {}
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_expired_client_cert_rejected(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        past = NOW - datetime.timedelta(days=10)
        lab.add_client("alice", ALICE, now=past, days=1)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice")
        closes = run.bastion.counters.closes
        await wait_until(lambda: closes[CloseReason.HANDSHAKE_FAILED] >= 1, "rejection")
        assert not client.connected.is_set()
        await run.stop()

    run_lab(tmp_path, body)


def test_client_wrong_bastion_pin_never_connects(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice", pin="sha256:" + "0" * 64)
        _, alice_tun = run.clients["alice"]
        await send(alice_tun, ip_tcp(ALICE, SERVER, 2049))
        await wait_until(
            lambda: client.counters.drops[DropReason.DISCONNECTED] == 1, "drop"
        )
        await asyncio.sleep(0)
        assert not client.connected.is_set()
        assert client.connections == 0
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_reload_without_client_closes_session(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        lab.add_client("bob", BOB)
        run = Running(lab, lab.bastion_config())
        await run.start()
        for name in ("alice", "bob"):
            client = run.start_client(name)
            await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        await wait_until(lambda: len(run.bastion.sessions) == 2, "two sessions")
        new_config = load_bastion_config(
            lab.bastion_config(port=run.port, listed=("bob",))
        )
        run.bastion.reload(new_config)
        assert ALICE.packed not in run.bastion.sessions
        assert BOB.packed in run.bastion.sessions
        closes = run.bastion.counters.closes
        await wait_until(lambda: closes[CloseReason.REVOKED] == 1, "revoked count")
        await wait_until(
            lambda: closes[CloseReason.HANDSHAKE_FAILED] >= 1, "retry fails"
        )
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_same_cert_new_session_replaces_old(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        first = run.start_client("alice")
        await asyncio.wait_for(first.connected.wait(), TIMEOUT)
        await wait_until(lambda: len(run.bastion.sessions) == 1, "first session")
        first_id = run.bastion.sessions[ALICE.packed].id
        link = await raw_client(lab, "alice", run.port)
        closes = run.bastion.counters.closes
        await wait_until(lambda: closes[CloseReason.REPLACED] >= 1, "replaced")
        assert run.bastion.sessions[ALICE.packed].id != first_id
        link[1].close()
        await run.stop()

    run_lab(tmp_path, body)


async def raw_client(
    lab: Lab, name: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TLS connection as client ``name`` without the relay, for bad input."""
    pair = lab.clients[name]
    context = tls.client_context(pair.cert_path, pair.key_path)
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=""
    )


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Return what the bastion sent until it closed the connection."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), TIMEOUT):
            data += chunk
    except ConnectionError:
        pass
    return data


def test_bastion_bad_frame_closes_only_that_session(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        lab.add_client("bob", BOB)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice")
        await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        reader, writer = await raw_client(lab, "bob", run.port)
        await wait_until(lambda: BOB.packed in run.bastion.sessions, "bob's session")
        writer.write(encode_data(ip_tcp(BOB, SERVER, 2049)) + b"\x09\x00\x00")
        assert await read_until_closed(reader) == KEEPALIVE_FRAME
        closes = run.bastion.counters.closes
        await wait_until(lambda: closes[CloseReason.BAD_FRAME] == 1, "bad_frame")
        _, alice_tun = run.clients["alice"]
        packet = ip_tcp(ALICE, SERVER, 2049)
        await send(alice_tun, packet)
        received = await receive(run.bastion_tun)
        if received != packet:
            received = await receive(run.bastion_tun)
        assert received == packet
        writer.close()
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_oversized_frame_closes_session(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("bob", BOB)
        run = Running(lab, lab.bastion_config())
        await run.start()
        reader, writer = await raw_client(lab, "bob", run.port)
        await wait_until(lambda: BOB.packed in run.bastion.sessions, "session")
        writer.write(b"\x01\xff\xff" + bytes(100))
        assert await read_until_closed(reader) == KEEPALIVE_FRAME
        assert run.bastion.sessions == {}
        writer.close()
        await run.stop()

    run_lab(tmp_path, body)


def test_bastion_silent_client_closed_as_dead(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("bob", BOB)
        run = Running(lab, lab.bastion_config())
        await run.start()
        _reader, writer = await raw_client(lab, "bob", run.port)
        await wait_until(lambda: BOB.packed in run.bastion.sessions, "session")
        closes = run.bastion.counters.closes
        await wait_until(lambda: closes[CloseReason.DEAD_PEER] == 1, "dead peer")
        writer.close()
        await run.stop()

    run_lab(tmp_path, body)


def test_tunnel_idle_link_kept_alive(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice")
        await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        await asyncio.sleep(1.6)  # longer than dead_peer_s: keepalives must flow
        assert client.connections == 1
        assert len(run.bastion.sessions) == 1
        await run.stop()

    run_lab(tmp_path, body)


def test_client_reconnects_after_bastion_restart(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        client = run.start_client("alice")
        await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        await run.bastion.close()
        await wait_until(lambda: not client.connected.is_set(), "disconnect")
        config = load_bastion_config(lab.bastion_config(port=run.port))
        device, bastion_tun = fake_device_pair("sgbast0", config.mtu)
        second = Bastion(config, device, run.bastion.ports, clock=lambda: NOW)
        await second.start()
        await wait_until(lambda: client.connections == 2, "reconnect")
        await wait_until(client.connected.is_set, "second link up")
        _, alice_tun = run.clients["alice"]
        packet = ip_tcp(ALICE, SERVER, 2049)
        await send(alice_tun, packet)
        assert await receive(bastion_tun) == packet
        await second.close()
        device.close()
        bastion_tun.close()
        await run.stop()

    run_lab(tmp_path, body)


def test_status_socket_lists_session_and_drops(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        server = await status.serve_status(run.config.status_socket, run.bastion.status)
        client = run.start_client("alice")
        await asyncio.wait_for(client.connected.wait(), TIMEOUT)
        await wait_until(lambda: len(run.bastion.sessions) == 1, "session")
        run.bastion.counters.drop(DropReason.NOT_TCP, 2)
        assert run.config.status_socket.stat().st_mode & 0o777 == 0o600
        result = await asyncio.to_thread(status.query_status, run.config.status_socket)
        sessions = result["sessions"]
        assert isinstance(sessions, list)
        assert sessions[0]["client"] == "alice"
        assert sessions[0]["address"] == str(ALICE)
        pin = lab.clients["alice"].fingerprint
        assert sessions[0]["fingerprint"] == abbreviate_fingerprint(pin)
        assert result["drops"]["not_tcp"] == 2  # type: ignore[index]
        assert result["allowed_ports"] == [111, 2049, 20048]
        json.dumps(result)
        server.close()
        await run.stop()

    run_lab(tmp_path, body)


def test_tls_version_below_13_rejected(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        pair = lab.add_client("alice", ALICE)
        run = Running(lab, lab.bastion_config())
        await run.start()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(pair.cert_path, pair.key_path)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", run.port, ssl=context)
        assert run.bastion.sessions == {}
        await run.stop()

    run_lab(tmp_path, body)


def test_getport_query_reads_fake_portmapper() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    calls: list[bytes] = []

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            call = connection.recv(4096)
            calls.append(call)
            (xid,) = struct.unpack_from(">I", call, 4)
            body = struct.pack(">IIIIIII", xid, 1, 0, 0, 0, 0, 20048)
            connection.sendall(struct.pack(">I", 0x80000000 | len(body)) + body)

    thread = threading.Thread(target=answer)
    thread.start()
    port = listener.getsockname()[1]
    found = getport.query_mount_port("127.0.0.1", port, timeout=TIMEOUT, xid=99)
    thread.join(TIMEOUT)
    listener.close()
    assert found == 20048
    assert calls[0] == getport.encode_getport_call(99, getport.MOUNT_PROGRAM, 3)


def test_getport_query_closed_port_is_temporary_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(TunnelUnreachableError, match=r"nfs\.mount_port"):
        getport.query_mount_port("127.0.0.1", port, timeout=TIMEOUT, xid=1)
