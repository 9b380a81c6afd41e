"""Tests for spoolgate.tunnel.policy: what the bastion passes and counts."""

import ipaddress
import struct

import pytest

from spoolgate.tunnel.policy import (
    Counters,
    DropReason,
    PortFilter,
    abbreviate_fingerprint,
    drop_delta,
)

CLIENT = ipaddress.ip_address("10.231.9.2")
SERVER = ipaddress.ip_address("10.231.3.2")
OTHER = ipaddress.ip_address("10.231.3.3")
FILTER = PortFilter.create(SERVER, [111, 2049, 20048])


def make_packet(
    src: ipaddress.IPv4Address | ipaddress.IPv6Address = CLIENT,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address = SERVER,
    proto: int = 6,
    port: int = 2049,
    flags_offset: int = 0x4000,
    options: bytes = b"",
) -> bytes:
    assert len(options) % 4 == 0
    body = struct.pack(">HHIIBBHHH", 40000, port, 0, 0, 0x50, 2, 0, 0, 0)
    ihl = 5 + len(options) // 4
    head = struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(body), 1, flags_offset, 64,
        proto, 0, src.packed, dst.packed,
    )  # fmt: skip
    return head + options + body


def route_option(kind: int, hop: ipaddress.IPv4Address) -> bytes:
    """Return a source or record route option through ``hop``, padded with EOL."""
    return bytes([kind, 7, 4]) + hop.packed + b"\0"


@pytest.mark.parametrize("port", [111, 2049, 20048])
def test_filter_nfs_port_from_bound_source_passes(port: int) -> None:
    assert FILTER.check(make_packet(port=port), CLIENT.packed) is None


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (
            make_packet(src=ipaddress.ip_address("10.231.9.3")),
            DropReason.SPOOFED_SOURCE,
        ),
        (make_packet(dst=OTHER), DropReason.WRONG_DESTINATION),
        (make_packet(proto=17), DropReason.NOT_TCP),
        (make_packet(proto=1), DropReason.NOT_TCP),
        (make_packet(port=22), DropReason.PORT_NOT_ALLOWED),
        (make_packet(flags_offset=0x2000), DropReason.FRAGMENT),
        (b"\x60" + bytes(10), DropReason.MALFORMED),
        (make_packet()[:30], DropReason.MALFORMED),
    ],
)
def test_filter_bad_packet_returns_reason(packet: bytes, reason: DropReason) -> None:
    assert FILTER.check(packet, CLIENT.packed) is reason


@pytest.mark.parametrize(
    "options",
    [
        route_option(0x83, OTHER),  # loose source and record route
        route_option(0x89, OTHER),  # strict source and record route
        route_option(0x07, OTHER),  # record route
        b"\x01\x01\x01\x00",  # NOP padding only: still IHL 6
    ],
    ids=["lsrr", "ssrr", "record_route", "nop"],
)
def test_filter_ipv4_options_dropped(options: bytes) -> None:
    packet = make_packet(options=options)
    assert FILTER.check(packet, CLIENT.packed) is DropReason.IP_OPTIONS


def test_filter_ipv4_options_fragment_counts_as_fragment() -> None:
    packet = make_packet(options=route_option(0x83, OTHER), flags_offset=0x2000)
    assert FILTER.check(packet, CLIENT.packed) is DropReason.FRAGMENT


def test_filter_other_client_address_is_spoofed() -> None:
    other_client = ipaddress.ip_address("10.231.9.7").packed
    assert FILTER.check(make_packet(), other_client) is DropReason.SPOOFED_SOURCE


def test_counters_snapshot_uses_reason_names() -> None:
    counters = Counters()
    counters.drop(DropReason.SPOOFED_SOURCE, 3)
    snapshot = counters.snapshot()
    assert snapshot["drops"]["spoofed_source"] == 3
    assert snapshot["drops"]["malformed"] == 0
    assert snapshot["sessions_closed"]["bad_frame"] == 0


def test_drop_delta_lists_only_grown_counters() -> None:
    counters = Counters()
    before = dict(counters.drops)
    counters.drop(DropReason.NOT_TCP, 2)
    assert drop_delta(before, counters.drops) == {"not_tcp": 2}


def test_abbreviate_fingerprint_keeps_first_and_last_four() -> None:
    assert abbreviate_fingerprint("sha256:" + "9f3a" + "0" * 56 + "c41e") == "9f3a…c41e"
