"""Tests for spoolgate.tunnel.frames: the packet framing over TLS."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import FrameError
from spoolgate.tunnel.frames import (
    KEEPALIVE_FRAME,
    MAX_PAYLOAD,
    FrameDecoder,
    encode_batch,
    encode_data,
)

packets = st.lists(st.binary(min_size=1, max_size=300), max_size=20)


def test_encode_data_prefixes_type_and_length() -> None:
    assert encode_data(b"abc") == b"\x01\x00\x03abc"


def test_encode_data_empty_packet_raises() -> None:
    with pytest.raises(FrameError, match="0 bytes"):
        encode_data(b"")


def test_encode_data_oversized_packet_raises() -> None:
    with pytest.raises(FrameError, match="65536 bytes"):
        encode_data(bytes(MAX_PAYLOAD + 1))


def test_decoder_split_frame_waits_for_rest() -> None:
    decoder = FrameDecoder()
    frame = encode_data(b"hello")
    assert decoder.feed(frame[:4]) == []
    assert decoder.buffered == 4
    assert decoder.feed(frame[4:]) == [b"hello"]
    assert decoder.buffered == 0


def test_decoder_keepalive_counted_not_returned() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(KEEPALIVE_FRAME + encode_data(b"x")) == [b"x"]
    assert decoder.keepalives == 1


def test_decoder_frame_over_mtu_raises() -> None:
    decoder = FrameDecoder(max_payload=1500)
    with pytest.raises(FrameError, match="exceeds the tunnel MTU of 1500"):
        decoder.feed(b"\x01\x05\xdd")


def test_decoder_unknown_type_raises() -> None:
    with pytest.raises(FrameError, match="unknown type 0x07"):
        FrameDecoder().feed(b"\x07\x00\x01x")


def test_decoder_keepalive_with_payload_raises() -> None:
    with pytest.raises(FrameError, match="keepalive"):
        FrameDecoder().feed(b"\x02\x00\x01x")


def test_decoder_empty_data_frame_raises() -> None:
    with pytest.raises(FrameError, match="empty"):
        FrameDecoder().feed(b"\x01\x00\x00")


def test_decoder_invalid_max_payload_raises() -> None:
    with pytest.raises(ValueError, match="max_payload"):
        FrameDecoder(max_payload=0)


@given(packets)
def test_batch_roundtrip_returns_same_packets(items: list[bytes]) -> None:
    assert FrameDecoder().feed(encode_batch(items)) == items


@given(packets, st.lists(st.integers(min_value=1, max_value=50), max_size=30))
def test_decoder_any_chunking_returns_same_packets(
    items: list[bytes], cuts: list[int]
) -> None:
    stream = encode_batch(items)
    decoder = FrameDecoder()
    found: list[bytes] = []
    position = 0
    for cut in cuts:
        found += decoder.feed(stream[position : position + cut])
        position += cut
    found += decoder.feed(stream[position:])
    assert found == items


@given(st.binary(max_size=400), st.integers(min_value=1, max_value=MAX_PAYLOAD))
def test_decoder_any_bytes_packets_or_frame_error(data: bytes, mtu: int) -> None:
    decoder = FrameDecoder(max_payload=mtu)
    try:
        found = decoder.feed(data)
    except FrameError:
        return
    assert all(0 < len(p) <= mtu for p in found)
    assert decoder.buffered <= mtu + 3
