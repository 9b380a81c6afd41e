"""Tests for spoolgate.rpc.xdr: round trips, limits and hostile input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import XDRError
from spoolgate.rpc.xdr import Decoder, Encoder, decode_all, padding


def test_padding_rounds_up_to_four() -> None:
    assert [padding(n) for n in range(6)] == [0, 3, 2, 1, 0, 3]


def test_opaque_encoding_matches_rfc4506() -> None:
    enc = Encoder()
    enc.opaque(b"abcde")
    assert enc.getvalue() == b"\0\0\0\x05abcde\0\0\0"


def test_integers_are_big_endian() -> None:
    enc = Encoder()
    enc.uint32(1)
    enc.int32(-2)
    enc.uint64(3)
    enc.int64(-4)
    data = enc.getvalue()
    assert data[:4] == b"\0\0\0\x01"
    assert data[4:8] == b"\xff\xff\xff\xfe"
    dec = Decoder(data)
    assert (dec.uint32(), dec.int32(), dec.uint64(), dec.int64()) == (1, -2, 3, -4)
    dec.done("test")


@given(
    st.integers(0, 2**32 - 1),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.binary(max_size=64),
    st.lists(st.integers(0, 2**32 - 1), max_size=8),
)
def test_roundtrip_all_types(
    u32: int, i32: int, u64: int, i64: int, flag: bool, data: bytes, array: list[int]
) -> None:
    enc = Encoder()
    enc.uint32(u32)
    enc.int32(i32)
    enc.uint64(u64)
    enc.int64(i64)
    enc.bool(flag)
    enc.opaque(data)
    enc.fixed_opaque(data)
    enc.uint32_array(array)
    encoded = enc.getvalue()
    assert len(encoded) % 4 == 0
    dec = Decoder(encoded)
    assert dec.uint32() == u32
    assert dec.int32() == i32
    assert dec.uint64() == u64
    assert dec.int64() == i64
    assert dec.bool() is flag
    assert dec.opaque(64) == data
    assert dec.fixed_opaque(len(data)) == data
    assert dec.uint32_array(8) == tuple(array)
    dec.done("roundtrip")


def test_opaque_over_limit_raises_before_reading() -> None:
    dec = Decoder(b"\0\0\x10\0")
    with pytest.raises(XDRError, match="exceeds the limit of 100"):
        dec.opaque(100)


def test_truncated_opaque_raises() -> None:
    with pytest.raises(XDRError, match="only 2 left"):
        Decoder(b"\0\0\0\x08ab").opaque(100)


def test_bool_other_than_zero_or_one_raises() -> None:
    with pytest.raises(XDRError, match="decode bool: value 2"):
        Decoder(b"\0\0\0\x02").bool()


def test_done_reports_trailing_bytes() -> None:
    dec = Decoder(b"\0\0\0\x01\0")
    dec.uint32()
    with pytest.raises(XDRError, match="1 unexpected bytes"):
        dec.done("thing")


def test_decode_all_names_the_item() -> None:
    with pytest.raises(XDRError, match=r"^widget: "):
        decode_all(b"\0\0", lambda dec: dec.uint32(), "widget")


def test_offset_start_is_kept() -> None:
    dec = Decoder(b"xxxx\0\0\0\x07", offset=4)
    assert dec.uint32() == 7
    assert dec.offset == 8
    assert dec.remaining == 0


@pytest.mark.parametrize(
    ("method", "value"),
    [("uint32", -1), ("uint32", 2**32), ("int32", 2**31), ("uint64", -1)],
)
def test_encoder_out_of_range_raises(method: str, value: int) -> None:
    with pytest.raises(XDRError, match="out of range"):
        getattr(Encoder(), method)(value)


def test_encoder_opaque_over_limit_raises() -> None:
    with pytest.raises(XDRError, match="exceed the limit of 3"):
        Encoder().opaque(b"abcd", 3)


@given(st.binary(max_size=64), st.lists(st.integers(0, 5), max_size=12))
def test_any_bytes_decode_or_raise_xdr_error(data: bytes, steps: list[int]) -> None:
    dec = Decoder(data)
    readers = [
        dec.uint32,
        dec.uint64,
        dec.bool,
        lambda: dec.opaque(16),
        lambda: dec.uint32_array(4),
        lambda: dec.fixed_opaque(3),
    ]
    try:
        for step in steps:
            readers[step]()
    except XDRError:
        pass
    assert 0 <= dec.offset <= len(data)
