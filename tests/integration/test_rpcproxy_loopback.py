"""The RPC proxy on loopback, in front of a small fake MOUNT/NFS server.

No root needed: the proxy listens on 127.0.0.1 with a configured upstream,
and the fake server answers MNT, LOOKUP and GETATTR from fixed handles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from spoolgate.rpc import message, mount, nfs3
from spoolgate.rpc.message import AcceptedReply, AuthSys, MsgType
from spoolgate.rpc.record import RecordReader, encode_record
from spoolgate.rpc.xdr import Decoder, Encoder
from spoolgate.tunnel.rpcpolicy import (
    ClientRule,
    PolicySettings,
    RPCPolicy,
    UserIdentity,
    split_path,
)
from spoolgate.tunnel.rpcproxy import Listener, ProxySettings, RPCProxy, start_rpc_proxy

ROOT = b"R" * 24
FILE = b"F" * 24
ANN = UserIdentity("ann", 1000, frozenset({1000}))
TIMEOUT_S = 10


@dataclass
class FakeServer:
    """Answers MNT, LOOKUP and GETATTR; ``hold`` stops it from replying."""

    calls: list[int] = field(default_factory=list)
    hold: bool = False
    reverse_pairs: bool = False
    extra_reply_xid: int | None = None
    callback: bytes | None = None
    callback_replies: list[bytes] = field(default_factory=list)

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        records = RecordReader()
        waiting: list[bytes] = []
        while data := await reader.read(65536):
            for record in records.feed(data):
                if message.peek_header(record.payload)[1] is MsgType.REPLY:
                    self.callback_replies.append(record.payload)
                    continue
                call = message.parse_call(record.payload)
                self.calls.append(call.proc)
                if self.hold:
                    continue
                waiting.append(self.reply(call))
                if self.reverse_pairs and len(waiting) < 2:
                    continue
                if self.callback is not None:
                    writer.write(encode_record(self.callback))
                if self.extra_reply_xid is not None:
                    extra = message.build_accepted_reply(
                        self.extra_reply_xid, message.AcceptStat.SUCCESS
                    )
                    writer.write(encode_record(extra))
                for reply in reversed(waiting):
                    writer.write(encode_record(reply))
                waiting.clear()
            await writer.drain()
        writer.close()

    def reply(self, call: message.Call) -> bytes:
        enc = Encoder()
        if call.prog == mount.MOUNT_PROGRAM:
            result = mount.MntResult(mount.MountStat.MNT3_OK, ROOT, (1,))
            return message.build_success(call, mount.encode_mnt_reply(result))
        enc.uint32(0)
        if call.proc == nfs3.Nfs3Proc.LOOKUP:
            enc.opaque(FILE, 64)
            enc.bool(False)
            enc.bool(False)
        else:
            enc.raw(b"\0" * 84)
        return message.build_success(call, enc.getvalue())


def make_policy() -> RPCPolicy:
    rule = ClientRule("alice", (split_path(b"/export"),))
    policy = RPCPolicy(PolicySettings((rule,)))
    policy.bind("alice", ANN, 0.0, 1e9)
    return policy


def run(
    body: Callable[[RPCProxy, FakeServer, int], Awaitable[None]],
    fake: FakeServer | None = None,
    addresses: dict[str, str] | None = None,
    settings: ProxySettings | None = None,
) -> None:
    fake = fake or FakeServer()

    async def main() -> None:
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        upstream = server.sockets[0].getsockname()[:2]
        proxy = await start_rpc_proxy(
            make_policy(),
            {"127.0.0.1": "alice"} if addresses is None else addresses,
            (Listener("127.0.0.1", 0, upstream),),
            settings or ProxySettings(reserved_source_port=False),
        )
        try:
            port = proxy.sockets[0][1]
            await asyncio.wait_for(body(proxy, fake, port), TIMEOUT_S)
        finally:
            await proxy.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


class Client:
    """A raw RPC connection to the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.records = RecordReader()
        self.pending: list[bytes] = []

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, payload: bytes, piece: int | None = None) -> None:
        data = encode_record(payload)
        size = piece or len(data)
        for start in range(0, len(data), size):
            self.writer.write(data[start : start + size])
            await self.writer.drain()

    async def receive(self) -> bytes:
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise EOFError("proxy closed the connection")
            self.pending.extend(r.payload for r in self.records.feed(data))
        return self.pending.pop(0)

    async def is_closed(self) -> bool:
        return await self.reader.read(65536) == b""

    def close(self) -> None:
        self.writer.close()


def cred() -> message.OpaqueAuth:
    return message.encode_auth_sys(AuthSys(0, b"test", 1000, 1000))


def mnt(xid: int = 1) -> bytes:
    args = mount.encode_dirpath(b"/export")
    return message.encode_call(xid, 100005, 3, mount.MountProc.MNT, args, cred())


def nfs(proc: int, handle: bytes, xid: int, name: bytes | None = None) -> bytes:
    enc = Encoder()
    enc.opaque(handle, 64)
    if name is not None:
        enc.string(name, 255)
    return message.encode_call(xid, 100003, 3, proc, enc.getvalue(), cred())


def nfs_status(reply: bytes, proc: int) -> nfs3.Nfs3Stat:
    parsed = message.parse_reply(reply)
    assert isinstance(parsed, AcceptedReply)
    return nfs3.reply_status(proc, reply[parsed.results_offset :])


def xid_of(reply: bytes) -> int:
    return Decoder(reply).uint32()


def test_proxy_forwards_mnt_and_learns_handle() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        await client.send(mnt())
        reply = await client.receive()
        assert reply == message.build_success(
            message.parse_call(mnt()),
            mount.encode_mnt_reply(
                mount.MntResult(mount.MountStat.MNT3_OK, ROOT, (1,))
            ),
        )
        await client.send(nfs(nfs3.Nfs3Proc.GETATTR, ROOT, 2))
        assert nfs_status(await client.receive(), 1) is nfs3.Nfs3Stat.NFS3_OK
        client.close()
        assert fake.calls == [mount.MountProc.MNT, nfs3.Nfs3Proc.GETATTR]
        assert proxy.counters.calls_forwarded == 2
        assert proxy.counters.replies == 2

    run(body)


def test_proxy_unknown_handle_answered_without_server() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        await client.send(nfs(nfs3.Nfs3Proc.GETATTR, FILE, 7))
        reply = await client.receive()
        assert xid_of(reply) == 7
        assert nfs_status(reply, 1) is nfs3.Nfs3Stat.NFS3ERR_STALE
        client.close()
        assert fake.calls == []
        assert proxy.counters.calls_answered == 1
        refused = proxy.snapshot()["policy"]["refused"]  # type: ignore[index]
        assert refused["handle"] == 1

    run(body)


def test_proxy_record_sent_in_one_byte_pieces() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        await client.send(mnt(), piece=1)
        assert xid_of(await client.receive()) == 1
        client.close()

    run(body)


def test_proxy_malformed_record_closes_only_that_connection() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        good = await Client.connect(port)
        bad = await Client.connect(port)
        bad.writer.write(encode_record(b"\xff" * 12))
        await bad.writer.drain()
        assert await bad.is_closed()
        await good.send(mnt(5))
        assert xid_of(await good.receive()) == 5
        good.close()
        assert proxy.counters.malformed_records == 1

    run(body)


def test_proxy_oversized_record_closes_connection() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        client.writer.write((0x80000000 | 5000).to_bytes(4, "big"))
        await client.writer.drain()
        assert await client.is_closed()
        assert proxy.counters.malformed_records == 1
        assert fake.calls == []

    run(body, settings=ProxySettings(max_record_size=4096, reserved_source_port=False))


def test_proxy_unknown_peer_closed() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        assert await client.is_closed()
        assert proxy.counters.unknown_peers == 1

    run(body, addresses={"192.0.2.1": "alice"})


def test_proxy_too_many_pending_calls_closes_connection() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        for xid in range(1, 4):
            await client.send(mnt(xid))
        assert await client.is_closed()
        assert proxy.counters.too_many_pending == 1
        assert proxy.counters.malformed_records == 0

    settings = ProxySettings(max_pending_calls=2, reserved_source_port=False)
    run(body, FakeServer(hold=True), settings=settings)


def test_proxy_replies_matched_by_xid_out_of_order() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        await client.send(mnt(1))
        await client.send(nfs(nfs3.Nfs3Proc.NULL, b"", 2))
        first, second = await client.receive(), await client.receive()
        assert [xid_of(first), xid_of(second)] == [2, 1]
        await client.send(nfs(nfs3.Nfs3Proc.GETATTR, ROOT, 3))
        await client.send(nfs(nfs3.Nfs3Proc.GETATTR, ROOT, 4))
        assert {xid_of(await client.receive()), xid_of(await client.receive())} == {
            3,
            4,
        }
        client.close()

    run(body, FakeServer(reverse_pairs=True))


def test_proxy_drops_reply_without_call() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        await client.send(mnt(1))
        assert xid_of(await client.receive()) == 1
        await client.send(nfs(nfs3.Nfs3Proc.GETATTR, ROOT, 2))
        assert xid_of(await client.receive()) == 2
        client.close()
        assert proxy.counters.unmatched_replies == 2

    run(body, FakeServer(extra_reply_xid=0xDEAD))


def test_proxy_relays_server_callback_and_client_reply() -> None:
    callback = message.encode_call(77, 0x40000000, 1, 0)

    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        await client.send(nfs(nfs3.Nfs3Proc.NULL, b"", 1))
        assert await client.receive() == callback
        assert xid_of(await client.receive()) == 1
        answer = message.build_accepted_reply(77, message.AcceptStat.SUCCESS)
        await client.send(answer)
        await client.send(nfs(nfs3.Nfs3Proc.NULL, b"", 2))
        assert await client.receive() == callback
        assert xid_of(await client.receive()) == 2
        client.close()
        assert fake.callback_replies == [answer]
        assert proxy.counters.calls_forwarded == 2

    run(body, FakeServer(callback=callback))


def test_proxy_listener_without_upstream_needs_redirect() -> None:
    async def main() -> None:
        proxy = await start_rpc_proxy(
            make_policy(),
            {"127.0.0.1": "alice"},
            (Listener("127.0.0.1", 0),),
            ProxySettings(reserved_source_port=False),
        )
        try:
            client = await Client.connect(proxy.sockets[0][1])
            assert await asyncio.wait_for(client.is_closed(), TIMEOUT_S)
            assert proxy.counters.upstream_failures == 1
        finally:
            await proxy.close()

    asyncio.run(main())


def test_proxy_idle_connection_closed() -> None:
    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        client = await Client.connect(port)
        await client.send(mnt(1))
        assert xid_of(await client.receive()) == 1
        assert await client.is_closed()

    settings = ProxySettings(idle_timeout_s=1.0, reserved_source_port=False)
    run(body, settings=settings)


def test_proxy_refusals_summarized_across_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="spoolgate.tunnel.rpcproxy")

    def lines(text: str, level: int) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if text in r.getMessage() and r.levelno == level
        ]

    async def body(proxy: RPCProxy, fake: FakeServer, port: int) -> None:
        for xid in range(5):
            client = await Client.connect(port)
            await client.send(nfs(nfs3.Nfs3Proc.GETATTR, FILE, xid))
            await client.receive()
            client.close()
        deadline = asyncio.get_running_loop().time() + TIMEOUT_S / 2
        while not lines("refused more calls", logging.WARNING):
            assert asyncio.get_running_loop().time() < deadline, "no summary line"
            await asyncio.sleep(0.05)

    settings = ProxySettings(reserved_source_port=False, log_interval_s=1.0)
    run(body, settings=settings)
    assert len(lines("refused call client=alice", logging.WARNING)) == 1
    assert len(lines("refused call client=alice", logging.DEBUG)) == 4
    [summary] = lines("refused more calls", logging.WARNING)
    assert "client=alice reason=handle: 4 in" in summary
    assert lines("connection open", logging.INFO) == []
    assert lines("connection open", logging.DEBUG) != []
    opened = lines("rpc proxy connections client=alice", logging.INFO)
    assert sum(int(line.split("opened=")[1].split()[0]) for line in opened) == 5
