"""Tests for spoolgate.rpc.nfs3: handles in calls and replies, error replies."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import RPCError, XDRError
from spoolgate.rpc.message import AcceptedReply, encode_call, parse_call, parse_reply
from spoolgate.rpc.nfs3 import (
    Nfs3Call,
    Nfs3Proc,
    Nfs3Stat,
    build_error_reply,
    encode_error_results,
    issued_handles,
    parse_call_args,
    reply_status,
)
from spoolgate.rpc.record import RecordReader
from spoolgate.rpc.xdr import Encoder

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rpc" / "nfs3.json").read_text()
)["records"]
NAMES = sorted({r["name"].rsplit(" ", 1)[0] for r in VECTORS})


def payload(name: str, kind: str) -> tuple[bytes, dict[str, Any]]:
    (record,) = [r for r in VECTORS if r["name"] == f"{name} {kind}"]
    (parsed,) = RecordReader().feed(bytes.fromhex(record["record_hex"]))
    return parsed.payload, record["expect"]


def call_info(name: str) -> Nfs3Call:
    data, _ = payload(name, "call")
    call = parse_call(data)
    assert (call.prog, call.vers) == (100003, 3)
    return parse_call_args(call.proc, data[call.args_offset :])


def reply_results(name: str) -> bytes:
    data, _ = payload(name, "reply")
    reply = parse_reply(data)
    assert isinstance(reply, AcceptedReply)
    return data[reply.results_offset :]


@pytest.mark.parametrize("name", NAMES)
def test_call_vectors_give_handles_and_names(name: str) -> None:
    _, expect = payload(name, "call")
    info = call_info(name)
    assert info.proc == expect["proc"]
    assert [name.decode() for name in info.names] == expect["names"]
    if isinstance(expect["handles"], list):
        assert [handle.hex() for handle in info.handles] == expect["handles"]


@pytest.mark.parametrize("name", NAMES)
def test_reply_vectors_give_status_and_issued_handles(name: str) -> None:
    _, expect = payload(name, "reply")
    proc = call_info(name).proc
    results = reply_results(name)
    assert reply_status(proc, results) == expect["status"]
    issued = [handle.hex() for handle in issued_handles(proc, results)]
    if isinstance(expect["issued"], list):
        assert issued == expect["issued"]
    else:
        assert len(issued) == 1


def test_write_and_commit_use_handle_issued_by_create() -> None:
    create = "NFSv3 CREATE new.bin in export root as 1000"
    (created,) = issued_handles(Nfs3Proc.CREATE, reply_results(create))
    assert call_info("NFSv3 WRITE 5000 bytes").handles == (created,)
    assert call_info("NFSv3 COMMIT").handles == (created,)


def fh(n: int) -> bytes:
    return bytes([n]) * 8


def encode_args(*items: bytes) -> bytes:
    enc = Encoder()
    for item in items:
        enc.opaque(item)
    return enc.getvalue()


def test_rename_carries_two_handles_and_two_names() -> None:
    info = parse_call_args(Nfs3Proc.RENAME, encode_args(fh(1), b"a", fh(2), b"b"))
    assert info == Nfs3Call(Nfs3Proc.RENAME, (fh(1), fh(2)), (b"a", b"b"))


def test_link_carries_file_and_directory_handles() -> None:
    info = parse_call_args(Nfs3Proc.LINK, encode_args(fh(1), fh(2), b"name"))
    assert info == Nfs3Call(Nfs3Proc.LINK, (fh(1), fh(2)), (b"name",))


def test_null_carries_no_handle() -> None:
    assert parse_call_args(Nfs3Proc.NULL, b"") == Nfs3Call(Nfs3Proc.NULL, ())


def test_handle_longer_than_64_bytes_raises() -> None:
    with pytest.raises(XDRError, match=r"GETATTR arguments.*limit of 64"):
        parse_call_args(Nfs3Proc.GETATTR, encode_args(b"x" * 65))


def test_unknown_procedure_raises() -> None:
    with pytest.raises(RPCError, match="unknown procedure 22"):
        parse_call_args(22, b"")


def test_mkdir_reply_without_handle_issues_none() -> None:
    # diropres3 may omit the new handle (post_op_fh3 FALSE); the client then
    # has to LOOKUP it, and the proxy reads that reply.
    results = b"\0\0\0\0" + b"\0\0\0\0" * 4
    assert issued_handles(Nfs3Proc.MKDIR, results) == ()


def test_getattr_reply_issues_no_handles() -> None:
    assert issued_handles(Nfs3Proc.GETATTR, b"\0\0\0\0" + b"\0" * 84) == ()


@pytest.mark.parametrize("proc", [p for p in Nfs3Proc if p is not Nfs3Proc.NULL])
def test_error_results_have_status_and_absent_attributes(proc: Nfs3Proc) -> None:
    results = encode_error_results(proc, Nfs3Stat.NFS3ERR_STALE)
    assert results[:4] == (70).to_bytes(4, "big")
    assert set(results[4:]) <= {0}
    assert reply_status(proc, results) is Nfs3Stat.NFS3ERR_STALE
    assert issued_handles(proc, results) == ()


@pytest.mark.parametrize(
    ("proc", "words"),
    [
        (Nfs3Proc.GETATTR, 0),
        (Nfs3Proc.LOOKUP, 1),
        (Nfs3Proc.READDIRPLUS, 1),
        (Nfs3Proc.WRITE, 2),
        (Nfs3Proc.LINK, 3),
        (Nfs3Proc.RENAME, 4),
    ],
)
def test_error_results_sizes_follow_rfc1813(proc: Nfs3Proc, words: int) -> None:
    assert len(encode_error_results(proc, Nfs3Stat.NFS3ERR_ACCES)) == 4 + 4 * words


def test_build_error_reply_for_vector_call() -> None:
    data, _ = payload("NFSv3 READ inner.txt", "call")
    call = parse_call(data)
    wire = build_error_reply(call, Nfs3Stat.NFS3ERR_ACCES)
    reply = parse_reply(wire)
    assert isinstance(reply, AcceptedReply)
    assert reply.xid == call.xid
    assert wire[reply.results_offset :] == b"\0\0\0\x0d\0\0\0\0"


def test_error_reply_for_null_raises() -> None:
    call = parse_call(encode_call(1, 100003, 3, 0))
    with pytest.raises(RPCError, match="PROC_UNAVAIL"):
        build_error_reply(call)


def test_error_reply_with_ok_raises() -> None:
    with pytest.raises(RPCError, match="not an error"):
        encode_error_results(Nfs3Proc.GETATTR, Nfs3Stat.NFS3_OK)


@given(st.binary(max_size=64), st.binary(max_size=255))
def test_lookup_args_roundtrip(handle: bytes, name: bytes) -> None:
    info = parse_call_args(Nfs3Proc.LOOKUP, encode_args(handle, name))
    assert info == Nfs3Call(Nfs3Proc.LOOKUP, (handle,), (name,))


@given(st.integers(0, 21), st.binary(max_size=200))
def test_any_bytes_parse_or_xdr_error(proc: int, data: bytes) -> None:
    for parse in (parse_call_args, issued_handles, reply_status):
        try:
            parse(proc, data)
        except (XDRError, RPCError):
            pass


def encode_readdirplus_ok(entries: list[tuple[bytes, bytes | None]]) -> bytes:
    enc = Encoder()
    enc.uint32(Nfs3Stat.NFS3_OK)
    enc.bool(True)  # dir_attributes present
    enc.fixed_opaque(b"\0" * 84)
    enc.fixed_opaque(b"verifier")
    for fileid, (name, handle) in enumerate(entries):
        enc.bool(True)
        enc.uint64(fileid)
        enc.string(name)
        enc.uint64(fileid + 1)
        enc.bool(False)  # name_attributes absent
        enc.bool(handle is not None)
        if handle is not None:
            enc.opaque(handle)
    enc.bool(False)
    enc.bool(True)  # eof
    return enc.getvalue()


@given(
    st.lists(
        st.tuples(st.binary(max_size=20), st.one_of(st.none(), st.binary(max_size=64))),
        max_size=8,
    )
)
def test_readdirplus_issued_handles_roundtrip(
    entries: list[tuple[bytes, bytes | None]],
) -> None:
    results = encode_readdirplus_ok(entries)
    expected = tuple(handle for _, handle in entries if handle is not None)
    assert issued_handles(Nfs3Proc.READDIRPLUS, results) == expected
