"""Tests for spoolgate.rpc.record: fragments, reassembly and size limits."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import RPCError
from spoolgate.rpc.record import Record, RecordReader, encode_record


def test_encode_single_fragment_sets_last_bit() -> None:
    assert encode_record(b"abcd") == b"\x80\0\0\x04abcd"


def test_encode_splits_into_fragments() -> None:
    wire = encode_record(b"abcde", max_fragment=2)
    assert wire == b"\0\0\0\x02ab\0\0\0\x02cd\x80\0\0\x01e"


def test_encode_empty_record_is_one_empty_last_fragment() -> None:
    assert encode_record(b"") == b"\x80\0\0\0"


def test_reader_joins_fragments() -> None:
    reader = RecordReader()
    records = reader.feed(encode_record(b"hello world", max_fragment=3))
    assert records == [Record(b"hello world", 4)]
    assert reader.buffered == 0


def test_reader_returns_nothing_until_complete() -> None:
    wire = encode_record(b"abcdefgh", max_fragment=4)
    reader = RecordReader()
    assert reader.feed(wire[:-1]) == []
    assert reader.buffered == len(wire) - 1
    assert reader.feed(wire[-1:]) == [Record(b"abcdefgh", 2)]


def test_reader_returns_several_records_from_one_read() -> None:
    reader = RecordReader()
    records = reader.feed(encode_record(b"one") + encode_record(b"two"))
    assert [record.payload for record in records] == [b"one", b"two"]


def test_reader_rejects_oversized_fragment_header_alone() -> None:
    reader = RecordReader(max_record_size=100)
    with pytest.raises(RPCError, match="exceeds the limit of 100"):
        reader.feed(struct.pack(">I", 0x80000000 | 101))


def test_reader_rejects_oversized_record_across_fragments() -> None:
    reader = RecordReader(max_record_size=10)
    reader.feed(b"\0\0\0\x06abcdef")
    with pytest.raises(RPCError, match="at least 12 bytes"):
        reader.feed(b"\x80\0\0\x06")


def test_reader_unusable_after_error() -> None:
    reader = RecordReader(max_record_size=4)
    with pytest.raises(RPCError):
        reader.feed(b"\x80\0\0\x05")
    with pytest.raises(RPCError, match="unusable"):
        reader.feed(encode_record(b"ok"))


@given(
    st.lists(st.binary(max_size=40), max_size=5),
    st.integers(1, 17),
    st.lists(st.integers(1, 30), min_size=1, max_size=20),
)
def test_reader_roundtrip_any_split(
    payloads: list[bytes], fragment: int, cuts: list[int]
) -> None:
    wire = b"".join(encode_record(payload, fragment) for payload in payloads)
    reader = RecordReader(max_record_size=64)
    received: list[bytes] = []
    offset, index = 0, 0
    while offset < len(wire):
        size = cuts[index % len(cuts)]
        received += [
            record.payload for record in reader.feed(wire[offset : offset + size])
        ]
        offset += size
        index += 1
    assert received == payloads
    assert reader.buffered == 0


@given(st.binary(max_size=200))
def test_reader_any_bytes_records_or_rpc_error(data: bytes) -> None:
    reader = RecordReader(max_record_size=64)
    try:
        records = reader.feed(data)
    except RPCError:
        return
    assert all(len(record.payload) <= 64 for record in records)
    assert reader.buffered <= len(data)
