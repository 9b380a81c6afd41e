"""Portmapper version 2 and rpcbind versions 3 and 4 (RFC 1833), program 100000.

Enough to read which program a client looks up (GETPORT, GETADDR,
GETVERSADDR), the port or address in the reply, and the DUMP lists.
CALLIT (v2, v3), BCAST and INDIRECT (v4) make the portmapper call another
program on the client's behalf, which would carry a call past a proxy's
policy unseen. :func:`is_indirect` identifies them so a policy can reject
them.
Malformed arguments or results raise XDRError.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from spoolgate.errors import XDRError
from spoolgate.rpc.xdr import Decoder, Encoder, decode_all

__all__ = [
    "PMAP_PROGRAM",
    "Mapping",
    "PmapProc",
    "RpcbEntry",
    "RpcbProc",
    "encode_getport_reply",
    "encode_mapping",
    "encode_pmap_dump_reply",
    "encode_rpcb",
    "encode_uaddr_reply",
    "is_indirect",
    "parse_getport_reply",
    "parse_mapping",
    "parse_pmap_dump_reply",
    "parse_rpcb",
    "parse_rpcb_dump_reply",
    "parse_uaddr",
    "parse_uaddr_reply",
]

PMAP_PROGRAM = 100000
IPPROTO_TCP = 6
IPPROTO_UDP = 17
# RFC 1833 leaves the strings unbounded; netids and universal addresses are
# short ("tcp6", "fe80::1.8.1"), owners are user names.
MAX_RPCB_STRING = 1024


class PmapProc(enum.IntEnum):
    """Portmapper version 2 procedures."""

    NULL = 0
    SET = 1
    UNSET = 2
    GETPORT = 3
    DUMP = 4
    CALLIT = 5


class RpcbProc(enum.IntEnum):
    """rpcbind version 3 and 4 procedures (9 and up exist only in version 4)."""

    NULL = 0
    SET = 1
    UNSET = 2
    GETADDR = 3
    DUMP = 4
    CALLIT = 5  # BCAST in version 4, same arguments
    GETTIME = 6
    UADDR2TADDR = 7
    TADDR2UADDR = 8
    GETVERSADDR = 9
    INDIRECT = 10
    GETADDRLIST = 11
    GETSTAT = 12


@dataclass(frozen=True, slots=True)
class Mapping:
    """struct mapping of portmapper version 2."""

    prog: int
    vers: int
    prot: int
    port: int


@dataclass(frozen=True, slots=True)
class RpcbEntry:
    """struct rpcb of rpcbind versions 3 and 4; addr is a universal address."""

    prog: int
    vers: int
    netid: bytes
    addr: bytes
    owner: bytes


def is_indirect(vers: int, proc: int) -> bool:
    """Tell whether a portmapper call forwards a call to another program."""
    if vers == 2:
        return proc == PmapProc.CALLIT
    return proc == RpcbProc.CALLIT or (vers == 4 and proc == RpcbProc.INDIRECT)


def _read_mapping(dec: Decoder) -> Mapping:
    return Mapping(dec.uint32(), dec.uint32(), dec.uint32(), dec.uint32())


def _write_mapping(enc: Encoder, mapping: Mapping) -> None:
    for value in (mapping.prog, mapping.vers, mapping.prot, mapping.port):
        enc.uint32(value)


def parse_mapping(args: bytes) -> Mapping:
    """Decode the arguments of SET, UNSET or GETPORT (version 2)."""
    return decode_all(args, _read_mapping, "portmap mapping argument")


def encode_mapping(mapping: Mapping) -> bytes:
    enc = Encoder()
    _write_mapping(enc, mapping)
    return enc.getvalue()


def parse_getport_reply(results: bytes) -> int:
    """Return the port of a GETPORT reply; 0 means the program is not registered."""
    return decode_all(results, lambda dec: dec.uint32(), "portmap GETPORT reply")


def encode_getport_reply(port: int) -> bytes:
    enc = Encoder()
    enc.uint32(port)
    return enc.getvalue()


def _read_pmap_list(dec: Decoder) -> tuple[Mapping, ...]:
    mappings: list[Mapping] = []
    while dec.bool():
        mappings.append(_read_mapping(dec))
    return tuple(mappings)


def parse_pmap_dump_reply(results: bytes) -> tuple[Mapping, ...]:
    return decode_all(results, _read_pmap_list, "portmap DUMP reply")


def encode_pmap_dump_reply(mappings: tuple[Mapping, ...] | list[Mapping]) -> bytes:
    enc = Encoder()
    for mapping in mappings:
        enc.bool(True)
        _write_mapping(enc, mapping)
    enc.bool(False)
    return enc.getvalue()


def _read_rpcb(dec: Decoder) -> RpcbEntry:
    prog, vers = dec.uint32(), dec.uint32()
    netid = dec.string(MAX_RPCB_STRING)
    addr = dec.string(MAX_RPCB_STRING)
    return RpcbEntry(prog, vers, netid, addr, dec.string(MAX_RPCB_STRING))


def _write_rpcb(enc: Encoder, entry: RpcbEntry) -> None:
    enc.uint32(entry.prog)
    enc.uint32(entry.vers)
    for text in (entry.netid, entry.addr, entry.owner):
        enc.string(text, MAX_RPCB_STRING)


def parse_rpcb(args: bytes) -> RpcbEntry:
    """Decode the arguments of SET, UNSET, GETADDR or GETVERSADDR (v3, v4)."""
    return decode_all(args, _read_rpcb, "rpcbind rpcb argument")


def encode_rpcb(entry: RpcbEntry) -> bytes:
    enc = Encoder()
    _write_rpcb(enc, entry)
    return enc.getvalue()


def parse_uaddr_reply(results: bytes) -> bytes:
    """Return the universal address of a GETADDR reply; empty if unregistered."""
    return decode_all(
        results, lambda dec: dec.string(MAX_RPCB_STRING), "rpcbind GETADDR reply"
    )


def encode_uaddr_reply(uaddr: bytes) -> bytes:
    enc = Encoder()
    enc.string(uaddr, MAX_RPCB_STRING)
    return enc.getvalue()


def _read_rpcb_list(dec: Decoder) -> tuple[RpcbEntry, ...]:
    entries: list[RpcbEntry] = []
    while dec.bool():
        entries.append(_read_rpcb(dec))
    return tuple(entries)


def parse_rpcb_dump_reply(results: bytes) -> tuple[RpcbEntry, ...]:
    return decode_all(results, _read_rpcb_list, "rpcbind DUMP reply")


def parse_uaddr(uaddr: bytes) -> tuple[str, int]:
    """Split an IPv4 or IPv6 universal address into host and port.

    The last two dot-separated fields are the port's high and low octets,
    as in "10.0.0.1.8.1" for port 2049 (RFC 5665 universal addresses).
    """
    try:
        text = uaddr.decode("ascii")
        host, high, low = text.rsplit(".", 2)
        port_high, port_low = int(high), int(low)
    except (UnicodeDecodeError, ValueError):
        raise XDRError(f"universal address {uaddr!r}: not host.p1.p2") from None
    if not (0 <= port_high <= 255 and 0 <= port_low <= 255) or not host:
        raise XDRError(f"universal address {uaddr!r}: port octets out of range")
    return host, port_high * 256 + port_low
