"""Read the IPv4/IPv6 and TCP/UDP headers of a tunnel packet (sans-IO).

Only the fields the bastion's policy needs are parsed: addresses (as
packed bytes, so comparing them allocates nothing), the transport
protocol, ports, whether the packet is a fragment and whether it carries
IP options. Anything that is not a complete header raises ``PacketError``.
"""

from __future__ import annotations

import dataclasses

from spoolgate.errors import PacketError

PROTO_TCP = 6
PROTO_UDP = 17

IPV4_MIN_HEADER = 20
IPV6_HEADER = 40
TCP_MIN_HEADER = 20
UDP_HEADER = 8

# IPv6 extension headers that may stand before the transport header
# (RFC 8200 section 4): hop-by-hop, routing, destination options.
_IPV6_SKIPPABLE = frozenset({0, 43, 60})
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_MAX_EXTENSIONS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class PacketHeader:
    """The parsed headers of one IP packet.

    ``src_port`` and ``dst_port`` are None unless the packet is TCP or UDP
    with a complete transport header. ``fragment`` is True for any piece of
    a fragmented datagram, the first one included. ``options`` is True for
    an IPv4 header longer than 20 bytes (IHL > 5: options such as LSRR,
    SSRR or record route) and for an IPv6 packet with a routing header.
    """

    version: int
    src: bytes
    dst: bytes
    protocol: int
    fragment: bool
    src_port: int | None = None
    dst_port: int | None = None
    options: bool = False


def destination(packet: bytes) -> bytes:
    """Return the packed destination address of an IPv4 or IPv6 packet."""
    if packet:
        version = packet[0] >> 4
        if version == 4 and len(packet) >= IPV4_MIN_HEADER:
            return packet[16:20]
        if version == 6 and len(packet) >= IPV6_HEADER:
            return packet[24:40]
    raise PacketError(f"not an IPv4 or IPv6 packet ({len(packet)} bytes)")


def parse(packet: bytes) -> PacketHeader:
    """Parse the IP and transport headers of ``packet``."""
    if not packet:
        raise PacketError("empty packet")
    version = packet[0] >> 4
    if version == 4:
        return _parse_ipv4(packet)
    if version == 6:
        return _parse_ipv6(packet)
    raise PacketError(f"not an IPv4 or IPv6 packet: version {version}")


def _parse_ipv4(packet: bytes) -> PacketHeader:
    size = len(packet)
    if size < IPV4_MIN_HEADER:
        raise PacketError(f"truncated IPv4 header: {size} bytes")
    header_len = (packet[0] & 0x0F) * 4
    total_len = (packet[2] << 8) | packet[3]
    if header_len < IPV4_MIN_HEADER or header_len > size:
        raise PacketError(f"invalid IPv4 header length {header_len} ({size} bytes)")
    if total_len < header_len or total_len > size:
        raise PacketError(f"invalid IPv4 total length {total_len} ({size} bytes)")
    flags_offset = (packet[6] << 8) | packet[7]
    more_fragments = bool(flags_offset & 0x2000)
    fragment = more_fragments or (flags_offset & 0x1FFF) != 0
    protocol = packet[9]
    src = packet[12:16]
    dst = packet[16:20]
    options = header_len > IPV4_MIN_HEADER
    if fragment:
        return PacketHeader(4, src, dst, protocol, True, options=options)
    ports = _transport_ports(packet, header_len, total_len, protocol)
    return PacketHeader(4, src, dst, protocol, False, *ports, options=options)


def _parse_ipv6(packet: bytes) -> PacketHeader:
    size = len(packet)
    if size < IPV6_HEADER:
        raise PacketError(f"truncated IPv6 header: {size} bytes")
    end = IPV6_HEADER + ((packet[4] << 8) | packet[5])
    if end > size:
        raise PacketError(f"invalid IPv6 payload length: {end} > {size} bytes")
    src = packet[8:24]
    dst = packet[24:40]
    next_header = packet[6]
    offset = IPV6_HEADER
    routing = False
    for _ in range(_IPV6_MAX_EXTENSIONS):
        if next_header in _IPV6_SKIPPABLE:
            if offset + 8 > end:
                raise PacketError("truncated IPv6 extension header")
            routing = routing or next_header == _IPV6_ROUTING
            next_header, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        elif next_header == _IPV6_FRAGMENT:
            if offset + 8 > end:
                raise PacketError("truncated IPv6 fragment header")
            return PacketHeader(6, src, dst, packet[offset], True, options=routing)
        else:
            ports = _transport_ports(packet, offset, end, next_header)
            return PacketHeader(
                6, src, dst, next_header, False, *ports, options=routing
            )
    raise PacketError(f"more than {_IPV6_MAX_EXTENSIONS} IPv6 extension headers")


def _transport_ports(
    packet: bytes, offset: int, end: int, protocol: int
) -> tuple[int | None, int | None]:
    if offset > end:
        raise PacketError("IPv6 extension headers run past the payload")
    if protocol == PROTO_TCP:
        if end - offset < TCP_MIN_HEADER:
            raise PacketError(f"truncated TCP header: {end - offset} bytes")
        data_offset = (packet[offset + 12] >> 4) * 4
        if data_offset < TCP_MIN_HEADER or data_offset > end - offset:
            raise PacketError(f"invalid TCP data offset {data_offset}")
    elif protocol == PROTO_UDP:
        if end - offset < UDP_HEADER:
            raise PacketError(f"truncated UDP header: {end - offset} bytes")
    else:
        return None, None
    src_port = (packet[offset] << 8) | packet[offset + 1]
    dst_port = (packet[offset + 2] << 8) | packet[offset + 3]
    return src_port, dst_port
