"""Tests for spoolgate.rpc.mount: MNT, EXPORT, DUMP and refusal replies."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import RPCError, XDRError
from spoolgate.rpc.message import AcceptedReply, encode_call, parse_call, parse_reply
from spoolgate.rpc.mount import (
    ExportEntry,
    MntResult,
    MountStat,
    build_mnt_error_reply,
    encode_dirpath,
    encode_export_reply,
    encode_mnt_reply,
    filter_export_reply,
    parse_dirpath,
    parse_dump_reply,
    parse_export_reply,
    parse_mnt_reply,
)
from spoolgate.rpc.record import RecordReader, encode_record

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rpc" / "mount.json").read_text()
)["records"]


def vector(name: str) -> tuple[bytes, dict[str, Any]]:
    (record,) = [r for r in VECTORS if r["name"] == name]
    (parsed,) = RecordReader().feed(bytes.fromhex(record["record_hex"]))
    return parsed.payload, record["expect"]


def call_args(name: str) -> bytes:
    payload, _ = vector(name)
    return payload[parse_call(payload).args_offset :]


def reply_results(name: str) -> bytes:
    payload, _ = vector(name)
    reply = parse_reply(payload)
    assert isinstance(reply, AcceptedReply)
    return payload[reply.results_offset :]


@pytest.mark.parametrize(
    "name",
    [
        "MOUNT v3 MNT /export as 1000:1000",
        "MOUNT v3 MNT /nosuch",
        "MOUNT v3 UMNT /export",
        "libnfs MNT /export/sub",
    ],
)
def test_dirpath_vectors(name: str) -> None:
    _, expect = vector(name + " call")
    assert parse_dirpath(call_args(name + " call")) == expect["dirpath"].encode()


@pytest.mark.parametrize(
    "name", ["MOUNT v3 MNT /export as 1000:1000", "libnfs MNT /export/sub"]
)
def test_mnt_reply_vectors_give_handle(name: str) -> None:
    _, expect = vector(name + " reply")
    result = parse_mnt_reply(reply_results(name + " reply"))
    assert result.status is MountStat.MNT3_OK
    assert result.fhandle.hex() == expect["fhandle"]
    assert list(result.auth_flavors) == expect["auth_flavors"]


def test_mnt_reply_vector_access_denied() -> None:
    result = parse_mnt_reply(reply_results("MOUNT v3 MNT /nosuch reply"))
    assert result == MntResult(MountStat.MNT3ERR_ACCES)


def test_export_reply_vector() -> None:
    entries = parse_export_reply(reply_results("MOUNT v3 EXPORT reply"))
    assert entries == (ExportEntry(b"/export", (b"10.220.0.0/16",)),)


def test_dump_reply_vector_is_empty() -> None:
    assert parse_dump_reply(reply_results("MOUNT v3 DUMP reply")) == ()


def test_export_vector_reencodes_byte_identical() -> None:
    results = reply_results("MOUNT v3 EXPORT reply")
    assert encode_export_reply(parse_export_reply(results)) == results


def test_filter_export_reply_keeps_allowed_only() -> None:
    entries = [
        ExportEntry(b"/export", (b"10.0.0.0/8",)),
        ExportEntry(b"/secret", ()),
        ExportEntry(b"/home", (b"a", b"b")),
    ]
    filtered = filter_export_reply(
        encode_export_reply(entries), lambda path: path != b"/secret"
    )
    assert parse_export_reply(filtered) == (entries[0], entries[2])


def test_filter_export_reply_of_vector_to_nothing() -> None:
    filtered = filter_export_reply(
        reply_results("MOUNT v3 EXPORT reply"), lambda p: False
    )
    assert filtered == b"\0\0\0\0"


def test_build_mnt_error_reply_for_vector_call() -> None:
    payload, _ = vector("MOUNT v3 MNT /export as 1000:1000 call")
    call = parse_call(payload)
    wire = build_mnt_error_reply(call)
    reply = parse_reply(wire)
    assert isinstance(reply, AcceptedReply)
    assert reply.xid == call.xid
    assert parse_mnt_reply(wire[reply.results_offset :]) == MntResult(
        MountStat.MNT3ERR_ACCES
    )


def test_build_mnt_error_reply_matches_ganesha_bytes() -> None:
    payload, _ = vector("MOUNT v3 MNT /nosuch call")
    reply_payload, _ = vector("MOUNT v3 MNT /nosuch reply")
    assert build_mnt_error_reply(parse_call(payload)) == reply_payload


def test_build_mnt_error_reply_with_ok_raises() -> None:
    call = parse_call(encode_call(1, 100005, 3, 1, encode_dirpath(b"/x")))
    with pytest.raises(RPCError, match="MNT3_OK is not a refusal"):
        build_mnt_error_reply(call, MountStat.MNT3_OK)


def test_dirpath_over_1024_bytes_raises() -> None:
    args = (1025).to_bytes(4, "big") + b"a" * 1028
    with pytest.raises(XDRError, match="exceeds the limit of 1024"):
        parse_dirpath(args)


def test_unknown_mountstat_raises() -> None:
    with pytest.raises(XDRError, match="unknown mountstat3 99"):
        parse_mnt_reply(b"\0\0\0\x63")


names = st.binary(max_size=40)


@given(st.lists(st.builds(ExportEntry, names, st.lists(names, max_size=3).map(tuple))))
def test_export_roundtrip(entries: list[ExportEntry]) -> None:
    assert parse_export_reply(encode_export_reply(entries)) == tuple(entries)


@given(st.binary(max_size=64), st.lists(st.integers(0, 2**32 - 1), max_size=4))
def test_mnt_reply_roundtrip(handle: bytes, flavors: list[int]) -> None:
    result = MntResult(MountStat.MNT3_OK, handle, tuple(flavors))
    assert parse_mnt_reply(encode_mnt_reply(result)) == result


@given(st.binary(max_size=1024))
def test_dirpath_roundtrip(path: bytes) -> None:
    assert parse_dirpath(encode_dirpath(path)) == path


@given(st.binary(max_size=100))
def test_any_bytes_parse_or_xdr_error(data: bytes) -> None:
    for parse in (parse_dirpath, parse_mnt_reply, parse_export_reply, parse_dump_reply):
        try:
            parse(data)
        except XDRError:
            pass


def test_rejected_mnt_flows_from_stream_to_reply_record() -> None:
    (record,) = [r for r in VECTORS if r["name"] == "libnfs MNT /export/sub call"]
    wire = bytes.fromhex(record["record_hex"])
    proxy_reader = RecordReader()
    records = [r for byte in wire for r in proxy_reader.feed(bytes([byte]))]
    assert len(records) == 1
    call = parse_call(records[0].payload)
    assert parse_dirpath(records[0].payload[call.args_offset :]) == b"/export/sub"
    reply_wire = encode_record(build_mnt_error_reply(call))
    (reply_record,) = RecordReader().feed(reply_wire)
    reply = parse_reply(reply_record.payload)
    assert isinstance(reply, AcceptedReply)
    assert reply.xid == call.xid
    results = reply_record.payload[reply.results_offset :]
    assert parse_mnt_reply(results).status is MountStat.MNT3ERR_ACCES
