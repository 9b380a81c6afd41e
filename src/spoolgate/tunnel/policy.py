"""Decide which client packets the bastion passes on, and count the rest.

Pure: the bastion calls ``PortFilter.check`` for every packet a client
sends, with the tunnel address bound to that client's certificate, and
counts what comes back. Nothing here logs; the bastion logs the counters
as one summary line per interval.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Iterable, Mapping

from spoolgate.errors import PacketError
from spoolgate.tunnel import packet as packet_mod

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DropReason(enum.Enum):
    """Why a packet was not passed on; the value is the status/counter key."""

    MALFORMED = "malformed"
    FRAGMENT = "fragment"
    IP_OPTIONS = "ip_options"
    SPOOFED_SOURCE = "spoofed_source"
    WRONG_DESTINATION = "wrong_destination"
    NOT_TCP = "not_tcp"
    PORT_NOT_ALLOWED = "port_not_allowed"
    NO_SESSION = "no_session"
    TUN_BUSY = "tun_busy"
    SESSION_BUSY = "session_busy"
    DISCONNECTED = "disconnected"


class CloseReason(enum.Enum):
    """Why the bastion closed a client's session."""

    BAD_FRAME = "bad_frame"
    PIN_MISMATCH = "pin_mismatch"
    HANDSHAKE_FAILED = "handshake_failed"
    DEAD_PEER = "dead_peer"
    REPLACED = "replaced"
    REVOKED = "revoked"
    PEER_CLOSED = "peer_closed"
    SHUTDOWN = "shutdown"


@dataclasses.dataclass(slots=True)
class Counters:
    """Drop and close counts by reason, kept for the status socket and logs."""

    drops: dict[DropReason, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(DropReason, 0)
    )
    closes: dict[CloseReason, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(CloseReason, 0)
    )

    def drop(self, reason: DropReason, count: int = 1) -> None:
        """Count ``count`` packets dropped for ``reason``."""
        self.drops[reason] += count

    def close(self, reason: CloseReason) -> None:
        """Count one session closed for ``reason``."""
        self.closes[reason] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Return the counters as plain dicts keyed by reason value."""
        return {
            "drops": {reason.value: n for reason, n in self.drops.items()},
            "sessions_closed": {reason.value: n for reason, n in self.closes.items()},
        }


def drop_delta(
    before: Mapping[DropReason, int], after: Mapping[DropReason, int]
) -> dict[str, int]:
    """Return the drop counts that grew between two snapshots, by reason value."""
    return {
        reason.value: after[reason] - before.get(reason, 0)
        for reason in after
        if after[reason] != before.get(reason, 0)
    }


@dataclasses.dataclass(frozen=True, slots=True)
class PortFilter:
    """The bastion's rule: TCP from the bound address to the NFS server's ports."""

    server: bytes
    ports: frozenset[int]

    @classmethod
    def create(cls, server: IPAddress, ports: Iterable[int]) -> PortFilter:
        """Build a filter for ``server`` (an address) and the allowed TCP ports."""
        return cls(server.packed, frozenset(ports))

    def check(self, packet: bytes, bound_source: bytes) -> DropReason | None:
        """Return why ``packet`` must be dropped, or None if it may pass.

        ``bound_source`` is the packed tunnel address bound to the sending
        client's certificate.
        """
        try:
            header = packet_mod.parse(packet)
        except PacketError:
            return DropReason.MALFORMED
        if header.fragment:
            return DropReason.FRAGMENT
        # Source routing (LSRR, SSRR) could steer a packet past the server
        # to another host; Linux NFS clients and libnfs send no IP options.
        if header.options:
            return DropReason.IP_OPTIONS
        if header.src != bound_source:
            return DropReason.SPOOFED_SOURCE
        if header.dst != self.server:
            return DropReason.WRONG_DESTINATION
        if header.protocol != packet_mod.PROTO_TCP:
            return DropReason.NOT_TCP
        if header.dst_port not in self.ports:
            return DropReason.PORT_NOT_ALLOWED
        return None


def abbreviate_fingerprint(fingerprint: str) -> str:
    """Return ``first4…last4`` of a ``sha256:<hex>`` fingerprint, for logs."""
    digest = fingerprint.removeprefix("sha256:")
    return f"{digest[:4]}…{digest[-4:]}"
