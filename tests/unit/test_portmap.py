"""Tests for spoolgate.rpc.portmap: GETPORT, GETADDR, DUMP, indirect calls."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import XDRError
from spoolgate.rpc.message import AcceptedReply, parse_call, parse_reply
from spoolgate.rpc.portmap import (
    Mapping,
    RpcbEntry,
    encode_getport_reply,
    encode_mapping,
    encode_pmap_dump_reply,
    encode_rpcb,
    encode_uaddr_reply,
    is_indirect,
    parse_getport_reply,
    parse_mapping,
    parse_pmap_dump_reply,
    parse_rpcb,
    parse_rpcb_dump_reply,
    parse_uaddr,
    parse_uaddr_reply,
)
from spoolgate.rpc.record import RecordReader

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rpc" / "portmap.json").read_text()
)["records"]


def vector(name: str) -> tuple[bytes, dict[str, Any]]:
    (record,) = [r for r in VECTORS if r["name"] == name]
    (parsed,) = RecordReader().feed(bytes.fromhex(record["record_hex"]))
    payload = parsed.payload
    if record["kind"] == "call":
        return payload[parse_call(payload).args_offset :], record["expect"]
    reply = parse_reply(payload)
    assert isinstance(reply, AcceptedReply)
    return payload[reply.results_offset :], record["expect"]


def test_getport_call_vector() -> None:
    args, expect = vector("portmap v2 GETPORT MOUNT v3 tcp call")
    assert parse_mapping(args) == Mapping(*expect["mapping"])


def test_getport_reply_vector() -> None:
    results, expect = vector("portmap v2 GETPORT MOUNT v3 tcp reply")
    assert parse_getport_reply(results) == expect["port"]


def test_pmap_dump_reply_vector_lists_nfs_services() -> None:
    results, expect = vector("portmap v2 DUMP reply")
    mappings = parse_pmap_dump_reply(results)
    for entry in expect["contains"]:
        assert Mapping(*entry) in mappings
    assert encode_pmap_dump_reply(mappings) == results


GETADDR = ["rpcbind v4 GETADDR MOUNT v3 tcp", "rpcbind v4 GETADDR portmap v2"]


@pytest.mark.parametrize("name", GETADDR)
def test_getaddr_call_vector(name: str) -> None:
    args, expect = vector(name + " call")
    entry = parse_rpcb(args)
    assert (entry.prog, entry.vers) == (expect["rpcb_prog"], expect["rpcb_vers"])
    assert entry.netid == expect["netid"].encode()


@pytest.mark.parametrize("name", GETADDR)
def test_getaddr_reply_vector(name: str) -> None:
    results, expect = vector(name + " reply")
    uaddr = parse_uaddr_reply(results)
    assert uaddr == expect["uaddr"].encode()
    assert parse_uaddr(uaddr) == (expect["host"], expect["port"])


def test_parse_uaddr_ipv6() -> None:
    assert parse_uaddr(b"fe80::1.8.1") == ("fe80::1", 2049)


@pytest.mark.parametrize("uaddr", [b"host", b"x.1.256", b".8.1", b"\xff.1.1"])
def test_parse_uaddr_invalid_raises(uaddr: bytes) -> None:
    with pytest.raises(XDRError, match="universal address"):
        parse_uaddr(uaddr)


@pytest.mark.parametrize(
    ("vers", "proc", "indirect"),
    [
        (2, 5, True),
        (2, 3, False),
        (3, 5, True),
        (4, 5, True),
        (4, 10, True),
        (3, 10, False),
    ],
)
def test_is_indirect(vers: int, proc: int, indirect: bool) -> None:
    assert is_indirect(vers, proc) is indirect


words = st.integers(0, 2**32 - 1)
strings = st.binary(max_size=30)


@given(st.builds(Mapping, words, words, words, words))
def test_mapping_roundtrip(mapping: Mapping) -> None:
    assert parse_mapping(encode_mapping(mapping)) == mapping


@given(st.lists(st.builds(Mapping, words, words, words, words), max_size=5))
def test_pmap_dump_roundtrip(mappings: list[Mapping]) -> None:
    assert parse_pmap_dump_reply(encode_pmap_dump_reply(mappings)) == tuple(mappings)


@given(st.builds(RpcbEntry, words, words, strings, strings, strings))
def test_rpcb_roundtrip(entry: RpcbEntry) -> None:
    assert parse_rpcb(encode_rpcb(entry)) == entry


@given(words, strings)
def test_reply_roundtrips(port: int, uaddr: bytes) -> None:
    assert parse_getport_reply(encode_getport_reply(port)) == port
    assert parse_uaddr_reply(encode_uaddr_reply(uaddr)) == uaddr


@given(st.binary(max_size=100))
def test_any_bytes_parse_or_xdr_error(data: bytes) -> None:
    parsers = (
        parse_mapping,
        parse_getport_reply,
        parse_pmap_dump_reply,
        parse_rpcb,
        parse_uaddr_reply,
        parse_rpcb_dump_reply,
        parse_uaddr,
    )
    for parse in parsers:
        try:
            parse(data)
        except XDRError:
            pass
