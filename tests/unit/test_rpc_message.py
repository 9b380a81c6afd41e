"""Tests for spoolgate.rpc.message: call and reply headers, AUTH_SYS, builders."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import RPCError
from spoolgate.rpc.message import (
    AcceptedReply,
    AcceptStat,
    AuthFlavor,
    AuthStat,
    AuthSys,
    DeniedReply,
    MsgType,
    OpaqueAuth,
    RejectStat,
    build_accepted_reply,
    build_auth_error,
    build_garbage_args,
    build_proc_unavail,
    build_prog_unavail,
    build_rpc_mismatch,
    decode_auth_sys,
    encode_auth_sys,
    encode_call,
    parse_call,
    parse_reply,
    peek_header,
)
from spoolgate.rpc.record import RecordReader

VECTORS = Path(__file__).parent.parent / "vectors" / "rpc"


def load_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(VECTORS.glob("*.json")):
        records += json.loads(path.read_text())["records"]
    return records


def payload_of(record: dict[str, Any]) -> bytes:
    (parsed,) = RecordReader().feed(bytes.fromhex(record["record_hex"]))
    return parsed.payload


CALLS = [r for r in load_records() if r["kind"] == "call"]
REPLIES = [r for r in load_records() if r["kind"] == "reply"]


@pytest.mark.parametrize("vector", CALLS, ids=[r["name"] for r in CALLS])
def test_call_vectors_parse(vector: dict[str, Any]) -> None:
    payload = payload_of(vector)
    call = parse_call(payload)
    expect = vector["expect"]
    assert call.xid == vector["xid"]
    assert call.rpcvers == 2
    assert call.prog == expect.get("prog", 100003)
    assert call.proc == expect.get("proc", 1)
    assert 0 < call.args_offset <= len(payload)
    if "flavor" in expect:
        assert call.cred.flavor == expect["flavor"]
        return
    cred = call.auth_sys()
    assert cred is not None
    assert cred.uid == expect.get("uid", cred.uid)
    assert cred.gid == expect.get("gid", cred.gid)
    assert list(cred.gids) == expect.get("gids", list(cred.gids))
    assert cred.machine_name.decode() == expect.get(
        "machine", cred.machine_name.decode()
    )


@pytest.mark.parametrize("vector", REPLIES, ids=[r["name"] for r in REPLIES])
def test_reply_vectors_parse_as_success(vector: dict[str, Any]) -> None:
    payload = payload_of(vector)
    reply = parse_reply(payload)
    assert isinstance(reply, AcceptedReply)
    assert reply.xid == vector["xid"]
    assert reply.accept_stat is AcceptStat.SUCCESS
    assert reply.verf.flavor == AuthFlavor.AUTH_NONE
    assert peek_header(payload) == (vector["xid"], MsgType.REPLY)


def test_mnt_vector_auth_sys_fields() -> None:
    (vector,) = [
        r for r in CALLS if r["name"] == "MOUNT v3 MNT /export as 1000:1000 call"
    ]
    cred = parse_call(payload_of(vector)).auth_sys()
    assert cred is not None
    assert (cred.uid, cred.gid, cred.gids) == (1000, 1000, (10, 20))
    assert cred.machine_name == b"vm"


auth_sys_values = st.builds(
    AuthSys,
    stamp=st.integers(0, 2**32 - 1),
    machine_name=st.binary(max_size=255),
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    gids=st.lists(st.integers(0, 2**32 - 1), max_size=16).map(tuple),
)


@given(auth_sys_values)
def test_auth_sys_roundtrip(cred: AuthSys) -> None:
    opaque = encode_auth_sys(cred)
    assert opaque.flavor == AuthFlavor.AUTH_SYS
    assert decode_auth_sys(opaque.body) == cred


def test_auth_sys_with_17_gids_raises() -> None:
    body = encode_auth_sys(AuthSys(0, b"h", 1, 1, tuple(range(16)))).body
    too_many = body[:-68] + (17).to_bytes(4, "big") + body[-64:] + b"\0\0\0\0"
    with pytest.raises(RPCError, match="exceeds the limit of 16"):
        decode_auth_sys(too_many)


def test_auth_sys_with_trailing_bytes_raises() -> None:
    body = encode_auth_sys(AuthSys(0, b"h", 1, 1)).body + b"\0\0\0\0"
    with pytest.raises(RPCError, match="unexpected bytes"):
        decode_auth_sys(body)


def test_auth_sys_of_other_flavour_is_none() -> None:
    call = parse_call(encode_call(1, 100003, 3, 0))
    assert call.auth_sys() is None


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    auth_sys_values,
    st.binary(max_size=400),
    st.binary(max_size=64),
)
def test_call_roundtrip(
    xid: int, prog: int, vers: int, proc: int, cred: AuthSys, verf: bytes, args: bytes
) -> None:
    payload = encode_call(
        xid, prog, vers, proc, args, encode_auth_sys(cred), OpaqueAuth(6, verf)
    )
    call = parse_call(payload)
    assert (call.xid, call.prog, call.vers, call.proc) == (xid, prog, vers, proc)
    assert call.auth_sys() == cred
    assert call.verf == OpaqueAuth(6, verf)
    assert payload[call.args_offset :] == args


def test_call_with_oversized_credential_raises() -> None:
    payload = encode_call(1, 2, 3, 4)[:24] + b"\0\0\0\x01\0\0\x01\x94" + b"\0" * 404
    with pytest.raises(RPCError, match="exceeds the limit of 400"):
        parse_call(payload)


def test_parse_call_of_reply_raises() -> None:
    with pytest.raises(RPCError, match="is not CALL"):
        parse_call(build_accepted_reply(5, AcceptStat.SUCCESS))


def test_parse_reply_of_call_raises() -> None:
    with pytest.raises(RPCError, match="is not REPLY"):
        parse_reply(encode_call(5, 1, 1, 1))


def test_build_auth_error_tooweak() -> None:
    call = parse_call(encode_call(0xABCD, 100003, 3, 1))
    reply = parse_reply(build_auth_error(call, AuthStat.AUTH_TOOWEAK))
    assert reply == DeniedReply(0xABCD, RejectStat.AUTH_ERROR, AuthStat.AUTH_TOOWEAK)


def test_build_auth_error_badcred_wire_bytes() -> None:
    call = parse_call(encode_call(7, 100003, 3, 1))
    wire = build_auth_error(call, AuthStat.AUTH_BADCRED)
    assert wire.hex() == "0000000700000001000000010000000100000001"


def test_build_auth_error_with_auth_ok_raises() -> None:
    call = parse_call(encode_call(7, 100003, 3, 1))
    with pytest.raises(RPCError, match="AUTH_OK"):
        build_auth_error(call, AuthStat.AUTH_OK)


@pytest.mark.parametrize(
    ("build", "stat"),
    [
        (build_prog_unavail, AcceptStat.PROG_UNAVAIL),
        (build_proc_unavail, AcceptStat.PROC_UNAVAIL),
        (build_garbage_args, AcceptStat.GARBAGE_ARGS),
    ],
)
def test_accepted_error_builders(build: Any, stat: AcceptStat) -> None:
    call = parse_call(encode_call(99, 100005, 3, 1))
    wire = build(call)
    reply = parse_reply(wire)
    assert isinstance(reply, AcceptedReply)
    assert (reply.xid, reply.accept_stat) == (99, stat)
    assert reply.results_offset == len(wire)


def test_prog_mismatch_reply_carries_range() -> None:
    wire = build_accepted_reply(3, AcceptStat.PROG_MISMATCH, mismatch=(2, 4))
    reply = parse_reply(wire)
    assert isinstance(reply, AcceptedReply)
    assert reply.mismatch == (2, 4)


def test_rpc_mismatch_reply() -> None:
    call = parse_call(encode_call(3, 1, 1, 1))
    reply = parse_reply(build_rpc_mismatch(call))
    assert reply == DeniedReply(3, RejectStat.RPC_MISMATCH, mismatch=(2, 2))


def test_unknown_accept_stat_raises() -> None:
    wire = build_accepted_reply(3, AcceptStat.SUCCESS)[:-4] + b"\0\0\0\x09"
    with pytest.raises(RPCError, match="unknown accept_stat 9"):
        parse_reply(wire)


@given(st.binary(max_size=120))
def test_any_bytes_parse_or_rpc_error(data: bytes) -> None:
    for parse in (parse_call, parse_reply, peek_header):
        try:
            parse(data)
        except RPCError:
            pass


@given(st.binary(max_size=120))
def test_any_auth_sys_body_parses_or_raises(data: bytes) -> None:
    try:
        decode_auth_sys(data)
    except RPCError:
        pass
