"""Tests for spoolgate.rpc.nfs4: COMPOUND walks, GETFH handles, error replies."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import RPCError, XDRError
from spoolgate.rpc.message import AcceptedReply, encode_call, parse_call, parse_reply
from spoolgate.rpc.nfs4 import (
    NFS4ERR_ACCESS,
    NFS4ERR_STALE,
    Base,
    Nfs4Op,
    Position,
    build_compound_error_reply,
    encode_compound_error,
    parse_compound_call,
    parse_compound_reply,
)
from spoolgate.rpc.record import RecordReader
from spoolgate.rpc.xdr import Encoder

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rpc" / "nfs4.json").read_text()
)["records"]
NAMES = sorted({r["name"].rsplit(" ", 1)[0] for r in VECTORS})


def payload(name: str, kind: str) -> tuple[bytes, dict[str, Any]]:
    (record,) = [r for r in VECTORS if r["name"] == f"{name} {kind}"]
    (parsed,) = RecordReader().feed(bytes.fromhex(record["record_hex"]))
    return parsed.payload, record["expect"]


def position(base: str, components: list[str], handle: str = "") -> Position:
    names = tuple(name.encode() for name in components)
    return Position(Base[base], bytes.fromhex(handle), names)


@pytest.mark.parametrize("name", NAMES)
def test_call_vectors_walk(name: str) -> None:
    data, expect = payload(name, "call")
    call = parse_call(data)
    assert (call.prog, call.vers, call.proc) == (100003, 4, 1)
    compound = parse_compound_call(data[call.args_offset :])
    handle = expect.get("putfh", "")
    assert compound.complete
    assert compound.minorversion == 0
    assert [Nfs4Op(op.opcode).name for op in compound.ops] == expect["ops"]
    assert compound.reached == tuple(position(*r, handle) for r in expect["reached"])
    assert compound.getfh == tuple(
        (index, position(base, names, handle)) for index, base, names in expect["getfh"]
    )


@pytest.mark.parametrize("name", NAMES)
def test_reply_vectors_results_and_handles(name: str) -> None:
    data, expect = payload(name, "reply")
    reply = parse_reply(data)
    assert isinstance(reply, AcceptedReply)
    result = parse_compound_reply(data[reply.results_offset :])
    assert result.complete
    assert result.status == expect["status"]
    assert [(Nfs4Op(op).name, s) for op, s in result.results] == [
        tuple(r) for r in expect["results"]
    ]
    assert [(i, h.hex()) for i, h in result.handles] == [
        tuple(h) for h in expect["handles"]
    ]


def test_open_vector_getfh_pairs_with_reply_handle() -> None:
    name = "NFSv4.0 PUTFH OPEN inner.txt"
    call_data, _ = payload(name, "call")
    call = parse_call(call_data)
    compound = parse_compound_call(call_data[call.args_offset :])
    reply_data, _ = payload(name, "reply")
    reply = parse_reply(reply_data)
    assert isinstance(reply, AcceptedReply)
    result = parse_compound_reply(reply_data[reply.results_offset :])
    ((call_index, where),) = compound.getfh
    ((reply_index, handle),) = result.handles
    assert call_index == reply_index
    assert where.components == (b"inner.txt",)
    assert handle.hex() == "43000001124411e90b4c829e6f8f0191c1200048563e24"


class CompoundBuilder:
    """Build COMPOUND4args in tests."""

    def __init__(self, minorversion: int = 0) -> None:
        self.minorversion = minorversion
        self.ops: list[bytes] = []

    def op(self, opcode: int, *fields: bytes | int) -> "CompoundBuilder":
        enc = Encoder()
        enc.uint32(opcode)
        for field in fields:
            if isinstance(field, int):
                enc.uint32(field)
            else:
                enc.opaque(field)
        self.ops.append(enc.getvalue())
        return self

    def raw(self, opcode: int, data: bytes) -> "CompoundBuilder":
        self.ops.append(opcode.to_bytes(4, "big") + data)
        return self

    def encode(self, tag: bytes = b"t") -> bytes:
        enc = Encoder()
        enc.opaque(tag)
        enc.uint32(self.minorversion)
        enc.uint32(len(self.ops))
        return enc.getvalue() + b"".join(self.ops)


ROOT = Position(Base.ROOTFS)


def test_savefh_restorefh_return_to_saved_position() -> None:
    args = (
        CompoundBuilder()
        .op(Nfs4Op.PUTROOTFS)
        .op(Nfs4Op.LOOKUP, b"a")
        .op(Nfs4Op.SAVEFH)
        .op(Nfs4Op.LOOKUP, b"b")
        .op(Nfs4Op.RESTOREFH)
        .op(Nfs4Op.LOOKUP, b"c")
        .op(Nfs4Op.GETFH)
        .encode()
    )
    compound = parse_compound_call(args)
    assert compound.reached == (
        ROOT,
        ROOT.child(b"a"),
        ROOT.child(b"a").child(b"b"),
        ROOT.child(b"a").child(b"c"),
    )
    assert compound.getfh == ((6, ROOT.child(b"a").child(b"c")),)


def test_lookupp_pops_then_climbs_above_handle() -> None:
    args = (
        CompoundBuilder()
        .op(Nfs4Op.PUTFH, b"fh")
        .op(Nfs4Op.LOOKUP, b"x")
        .op(Nfs4Op.LOOKUPP)
        .op(Nfs4Op.LOOKUPP)
        .op(Nfs4Op.LOOKUPP)
        .encode()
    )
    compound = parse_compound_call(args)
    start = Position(Base.HANDLE, b"fh")
    assert compound.reached[-1] == Position(Base.HANDLE, b"fh", (b"..", b".."))
    assert start.child(b"x") in compound.reached
    assert compound.ops[0].handle == b"fh"


def test_secinfo_no_name_consumes_current_filehandle() -> None:
    args = (
        CompoundBuilder()
        .op(Nfs4Op.PUTROOTFS)
        .op(Nfs4Op.SECINFO_NO_NAME, 0)
        .op(Nfs4Op.LOOKUP, b"x")
        .op(Nfs4Op.GETFH)
        .encode()
    )
    compound = parse_compound_call(args)
    assert compound.reached == (ROOT,)
    assert compound.getfh == ()
    assert compound.ops[2].position is None


def test_secinfo_reaches_named_child() -> None:
    args = CompoundBuilder().op(Nfs4Op.PUTROOTFS).op(Nfs4Op.SECINFO, b"export").encode()
    assert parse_compound_call(args).reached == (ROOT, ROOT.child(b"export"))


def test_rename_reaches_both_names() -> None:
    args = (
        CompoundBuilder()
        .op(Nfs4Op.PUTFH, b"src")
        .op(Nfs4Op.SAVEFH)
        .op(Nfs4Op.PUTFH, b"dst")
        .op(Nfs4Op.RENAME, b"old", b"new")
        .encode()
    )
    reached = parse_compound_call(args).reached
    assert Position(Base.HANDLE, b"src", (b"old",)) in reached
    assert Position(Base.HANDLE, b"dst", (b"new",)) in reached


def test_putpubfh_starts_at_public() -> None:
    args = CompoundBuilder().op(Nfs4Op.PUTPUBFH).op(Nfs4Op.LOOKUP, b"p").encode()
    assert parse_compound_call(args).reached[-1] == Position(Base.PUBLIC, b"", (b"p",))


def test_open_claim_null_moves_to_child() -> None:
    owner = (0).to_bytes(8, "big") + b"\0\0\0\x02ow\0\0"
    open_args = b"\0" * 12 + owner + b"\0\0\0\0" + b"\0\0\0\0" + b"\0\0\0\x01f\0\0\0"
    args = CompoundBuilder().op(Nfs4Op.PUTROOTFS).raw(Nfs4Op.OPEN, open_args).encode()
    compound = parse_compound_call(args)
    assert compound.complete
    assert compound.reached == (ROOT, ROOT.child(b"f"))


def test_v41_sequence_then_putrootfs() -> None:
    sequence = b"\x01" * 16 + b"\0" * 16
    args = (
        CompoundBuilder(minorversion=1)
        .raw(Nfs4Op.SEQUENCE, sequence)
        .op(Nfs4Op.PUTROOTFS)
        .op(Nfs4Op.LOOKUP, b"export")
        .op(Nfs4Op.GETFH)
        .encode()
    )
    compound = parse_compound_call(args)
    assert compound.complete
    assert compound.minorversion == 1
    assert compound.getfh == ((3, ROOT.child(b"export")),)


def test_unknown_opcode_stops_walk_incomplete() -> None:
    args = (
        CompoundBuilder()
        .op(Nfs4Op.PUTROOTFS)
        .raw(60, b"\0" * 40)  # COPY: arguments not decoded here
        .op(Nfs4Op.LOOKUP, b"x")
        .encode()
    )
    compound = parse_compound_call(args)
    assert not compound.complete
    assert compound.op_count == 3
    assert [op.opcode for op in compound.ops] == [Nfs4Op.PUTROOTFS, 60]


def test_too_many_ops_raises() -> None:
    args = b"\0\0\0\0" + b"\0\0\0\0" + (257).to_bytes(4, "big")
    with pytest.raises(XDRError, match="COMPOUND operation count"):
        parse_compound_call(args)


def test_trailing_bytes_after_complete_compound_raise() -> None:
    args = CompoundBuilder().op(Nfs4Op.PUTROOTFS).encode() + b"\0\0\0\0"
    with pytest.raises(XDRError, match="unexpected bytes"):
        parse_compound_call(args)


def test_reply_stops_at_failed_op() -> None:
    enc = Encoder()
    enc.uint32(NFS4ERR_STALE)
    enc.opaque(b"")
    enc.uint32(3)
    for value in (Nfs4Op.PUTFH, NFS4ERR_STALE):
        enc.uint32(value)
    result = parse_compound_reply(enc.getvalue())
    assert result.complete
    assert result.results == ((Nfs4Op.PUTFH, NFS4ERR_STALE),)


def test_encode_compound_error_setattr_has_bitmap() -> None:
    results = encode_compound_error(b"t", Nfs4Op.SETATTR, NFS4ERR_ACCESS)
    assert results.endswith(b"\0\0\0\x0d\0\0\0\0")
    parsed = parse_compound_reply(results)
    assert parsed.results == ((Nfs4Op.SETATTR, NFS4ERR_ACCESS),)


def test_build_compound_error_reply_for_vector() -> None:
    data, _ = payload("NFSv4.0 PUTROOTFS LOOKUP export", "call")
    call = parse_call(data)
    compound = parse_compound_call(data[call.args_offset :])
    wire = build_compound_error_reply(call, compound, NFS4ERR_ACCESS)
    reply = parse_reply(wire)
    assert isinstance(reply, AcceptedReply)
    assert reply.xid == call.xid
    result = parse_compound_reply(wire[reply.results_offset :])
    assert result.status == NFS4ERR_ACCESS
    assert result.tag == compound.tag
    assert result.results == ((Nfs4Op.PUTROOTFS, NFS4ERR_ACCESS),)


def test_build_compound_error_reply_for_empty_compound() -> None:
    call = parse_call(encode_call(1, 100003, 4, 1))
    compound = parse_compound_call(CompoundBuilder().encode())
    wire = build_compound_error_reply(call, compound)
    reply = parse_reply(wire)
    assert isinstance(reply, AcceptedReply)
    assert parse_compound_reply(wire[reply.results_offset :]).results == ()


def test_encode_compound_error_with_ok_raises() -> None:
    with pytest.raises(RPCError, match="not an error"):
        encode_compound_error(b"", Nfs4Op.PUTFH, 0)


walk_ops = st.one_of(
    st.just((Nfs4Op.PUTROOTFS,)),
    st.just((Nfs4Op.SAVEFH,)),
    st.just((Nfs4Op.RESTOREFH,)),
    st.just((Nfs4Op.LOOKUPP,)),
    st.just((Nfs4Op.GETFH,)),
    st.binary(max_size=8).map(lambda fh: (Nfs4Op.PUTFH, fh)),
    st.binary(max_size=8).map(lambda name: (Nfs4Op.LOOKUP, name)),
    st.binary(max_size=8).map(lambda name: (Nfs4Op.SECINFO, name)),
    st.binary(max_size=8).map(lambda name: (Nfs4Op.LINK, name)),
    st.tuples(st.just(Nfs4Op.RENAME), st.binary(max_size=4), st.binary(max_size=4)),
)


@given(st.lists(walk_ops, max_size=12))
def test_any_walk_of_known_ops_is_complete(ops: list[tuple[Any, ...]]) -> None:
    builder = CompoundBuilder()
    for opcode, *fields in ops:
        builder.op(opcode, *fields)
    compound = parse_compound_call(builder.encode())
    assert compound.complete
    assert len(compound.ops) == len(ops)
    getfh_indexes = [i for i, (opcode, *_) in enumerate(ops) if opcode == Nfs4Op.GETFH]
    assert {index for index, _ in compound.getfh} <= set(getfh_indexes)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_xdr_error(data: bytes) -> None:
    for parse in (parse_compound_call, parse_compound_reply):
        try:
            parse(data)
        except XDRError:
            pass


@given(st.integers(3, 70), st.binary(max_size=120))
def test_any_op_arguments_parse_or_xdr_error(opcode: int, data: bytes) -> None:
    args = CompoundBuilder().raw(opcode, data).encode()
    try:
        parse_compound_call(args)
    except XDRError:
        pass


@given(st.integers(3, 70), st.binary(max_size=120))
def test_any_op_result_parses_or_xdr_error(opcode: int, data: bytes) -> None:
    results = b"\0\0\0\0" + b"\0\0\0\0" + b"\0\0\0\x01" + opcode.to_bytes(4, "big")
    try:
        parse_compound_reply(results + b"\0\0\0\0" + data)
    except XDRError:
        pass


def test_v41_session_results_decode_through_getfh() -> None:
    enc = Encoder()
    enc.uint32(0)
    enc.opaque(b"")
    enc.uint32(4)
    enc.uint32(Nfs4Op.EXCHANGE_ID)
    enc.uint32(0)
    enc.fixed_opaque(b"\0" * 16)  # clientid, sequenceid, flags
    enc.uint32(0)  # SP4_NONE
    enc.uint64(1)
    enc.opaque(b"major")
    enc.opaque(b"scope")
    enc.uint32(0)  # no server_impl_id
    enc.uint32(Nfs4Op.SEQUENCE)
    enc.uint32(0)
    enc.fixed_opaque(b"\0" * 36)
    enc.uint32(Nfs4Op.PUTROOTFS)
    enc.uint32(0)
    enc.uint32(Nfs4Op.GETFH)
    enc.uint32(0)
    enc.opaque(b"root-handle")
    result = parse_compound_reply(enc.getvalue())
    assert result.complete
    assert result.handles == ((3, b"root-handle"),)


def test_undecoded_result_stops_reply_incomplete() -> None:
    enc = Encoder()
    enc.uint32(0)
    enc.opaque(b"")
    enc.uint32(2)
    enc.uint32(Nfs4Op.LAYOUTGET)
    enc.uint32(0)
    enc.fixed_opaque(b"\0" * 40)
    result = parse_compound_reply(enc.getvalue())
    assert not result.complete
    assert result.results == ((Nfs4Op.LAYOUTGET, 0),)


def test_remove_reaches_named_child() -> None:
    args = CompoundBuilder().op(Nfs4Op.PUTFH, b"d").op(Nfs4Op.REMOVE, b"f").encode()
    reached = parse_compound_call(args).reached
    assert reached == (
        Position(Base.HANDLE, b"d"),
        Position(Base.HANDLE, b"d", (b"f",)),
    )


def test_lookup_dotdot_is_kept_as_component() -> None:
    args = CompoundBuilder().op(Nfs4Op.PUTROOTFS).op(Nfs4Op.LOOKUP, b"..").encode()
    assert parse_compound_call(args).reached[-1] == Position(Base.ROOTFS, b"", (b"..",))
