"""Tests for spoolgate.tunnel.packet: IP and transport header parsing."""

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import PacketError
from spoolgate.tunnel import packet

V4_SRC = ipaddress.ip_address("10.231.9.2").packed
V4_DST = ipaddress.ip_address("10.231.3.2").packed
V6_SRC = ipaddress.ip_address("fd00:231::2").packed
V6_DST = ipaddress.ip_address("fd00:231::9").packed


def tcp(src_port: int, dst_port: int, data_offset: int = 5) -> bytes:
    return struct.pack(
        ">HHIIBBHHH", src_port, dst_port, 0, 0, data_offset << 4, 2, 0, 0, 0
    )


def ipv4(
    payload: bytes, proto: int = 6, flags_offset: int = 0x4000, ihl: int = 5
) -> bytes:
    options = bytes((ihl - 5) * 4)
    total = 4 * ihl + len(payload)
    head = struct.pack(
        ">BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        total,
        1,
        flags_offset,
        64,
        proto,
        0,
        V4_SRC,
        V4_DST,
    )
    return head + options + payload


def ipv6(payload: bytes, next_header: int = 6) -> bytes:
    head = struct.pack(
        ">IHBB16s16s", 6 << 28, len(payload), next_header, 64, V6_SRC, V6_DST
    )
    return head + payload


def test_parse_ipv4_tcp_returns_ports() -> None:
    header = packet.parse(ipv4(tcp(40000, 2049)))
    assert header.version == 4
    assert header.src == V4_SRC
    assert header.dst == V4_DST
    assert header.protocol == packet.PROTO_TCP
    assert (header.src_port, header.dst_port) == (40000, 2049)
    assert header.fragment is False


def test_parse_ipv4_options_skipped() -> None:
    header = packet.parse(ipv4(tcp(1, 111), ihl=7))
    assert header.dst_port == 111
    assert header.options is True


def test_parse_ipv4_without_options_flag_clear() -> None:
    assert packet.parse(ipv4(tcp(1, 111))).options is False


def test_parse_ipv4_fragment_with_options_flagged() -> None:
    header = packet.parse(ipv4(tcp(1, 111), flags_offset=0x2000, ihl=6))
    assert header.fragment is True
    assert header.options is True


def test_parse_ipv4_udp_returns_ports() -> None:
    header = packet.parse(ipv4(struct.pack(">HHHH", 5, 53, 8, 0), proto=17))
    assert (header.src_port, header.dst_port) == (5, 53)


def test_parse_ipv4_icmp_has_no_ports() -> None:
    header = packet.parse(ipv4(b"\x08\x00\x00\x00\x00\x00\x00\x00", proto=1))
    assert header.protocol == 1
    assert header.dst_port is None


@pytest.mark.parametrize("flags_offset", [0x2000, 0x0001, 0x4000 | 0x0010])
def test_parse_ipv4_fragment_flagged(flags_offset: int) -> None:
    header = packet.parse(ipv4(tcp(1, 2049), flags_offset=flags_offset))
    assert header.fragment is True
    assert header.dst_port is None


def test_parse_ipv4_truncated_tcp_raises() -> None:
    with pytest.raises(PacketError, match="truncated TCP"):
        packet.parse(ipv4(tcp(1, 2049)[:12]))


def test_parse_ipv4_bad_data_offset_raises() -> None:
    with pytest.raises(PacketError, match="data offset"):
        packet.parse(ipv4(tcp(1, 2049, data_offset=15)))


def test_parse_ipv4_total_length_past_end_raises() -> None:
    data = bytearray(ipv4(tcp(1, 2049)))
    data[2:4] = struct.pack(">H", len(data) + 1)
    with pytest.raises(PacketError, match="total length"):
        packet.parse(bytes(data))


def test_parse_ipv4_short_header_raises() -> None:
    with pytest.raises(PacketError, match="truncated IPv4"):
        packet.parse(ipv4(tcp(1, 2))[:19])


@pytest.mark.parametrize("first", [b"", b"\x00" * 40, b"\x50" + bytes(40)])
def test_parse_not_ip_raises(first: bytes) -> None:
    with pytest.raises(PacketError):
        packet.parse(first)


def test_parse_ipv6_tcp_returns_ports() -> None:
    header = packet.parse(ipv6(tcp(40000, 2049)))
    assert header.version == 6
    assert header.src == V6_SRC
    assert header.dst == V6_DST
    assert header.dst_port == 2049


def test_parse_ipv6_extension_header_skipped() -> None:
    hop_by_hop = bytes([6, 0]) + bytes(6)
    header = packet.parse(ipv6(hop_by_hop + tcp(1, 111), next_header=0))
    assert header.protocol == packet.PROTO_TCP
    assert header.dst_port == 111


def test_parse_ipv6_hop_by_hop_not_options() -> None:
    hop_by_hop = bytes([6, 0]) + bytes(6)
    assert packet.parse(ipv6(hop_by_hop + tcp(1, 111), next_header=0)).options is False


def test_parse_ipv6_routing_header_flagged() -> None:
    # Type 2 routing header with one address: 8 + 16 bytes, length field 2.
    routing = bytes([6, 2, 2, 1]) + bytes(4) + V6_DST
    header = packet.parse(ipv6(routing + tcp(1, 2049), next_header=43))
    assert header.options is True
    assert header.dst_port == 2049


def test_parse_ipv6_routing_before_fragment_flagged() -> None:
    routing = bytes([44, 2, 2, 1]) + bytes(4) + V6_DST
    fragment = bytes([6, 0, 0, 0]) + bytes(4)
    header = packet.parse(ipv6(routing + fragment + tcp(1, 2049), next_header=43))
    assert header.fragment is True
    assert header.options is True


def test_parse_ipv6_fragment_flagged() -> None:
    fragment = bytes([6, 0, 0, 0]) + bytes(4)
    header = packet.parse(ipv6(fragment + tcp(1, 2049), next_header=44))
    assert header.fragment is True


def test_parse_ipv6_payload_length_past_end_raises() -> None:
    with pytest.raises(PacketError, match="payload length"):
        packet.parse(ipv6(tcp(1, 2))[:-1])


def test_parse_ipv6_extension_loop_raises() -> None:
    chain = (bytes([0, 0]) + bytes(6)) * 9
    with pytest.raises(PacketError, match="extension headers"):
        packet.parse(ipv6(chain, next_header=0))


def test_destination_returns_packed_address() -> None:
    assert packet.destination(ipv4(tcp(1, 2))) == V4_DST
    assert packet.destination(ipv6(tcp(1, 2))) == V6_DST


def test_destination_short_packet_raises() -> None:
    with pytest.raises(PacketError):
        packet.destination(b"\x45" + bytes(10))


@given(st.binary(max_size=120))
def test_parse_any_bytes_header_or_packet_error(data: bytes) -> None:
    try:
        header = packet.parse(data)
    except PacketError:
        return
    assert header.version in (4, 6)
    assert len(header.src) == len(header.dst)


@given(st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=64))
def test_parse_ipv4_tcp_any_ports_roundtrip(src: int, dst: int, body: bytes) -> None:
    header = packet.parse(ipv4(tcp(src, dst) + body))
    assert (header.src_port, header.dst_port) == (src, dst)
