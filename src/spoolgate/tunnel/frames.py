"""Frames that carry IP packets over the tunnel's TLS stream (sans-IO).

Each frame is one type byte, a 2-byte big-endian payload length and the
payload. A data frame holds exactly one IP packet; a keepalive frame is
empty. The decoder keeps partial frames across ``feed`` calls and raises
``FrameError`` on anything it cannot trust, after which the stream is
unusable and the caller closes the session.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable

from spoolgate.errors import FrameError

HEADER = struct.Struct(">BH")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 0xFFFF

ALPN_PROTOCOL = "spoolgate-tunnel/1"


class FrameType(enum.IntEnum):
    """The first byte of a frame."""

    DATA = 1
    KEEPALIVE = 2


KEEPALIVE_FRAME = HEADER.pack(FrameType.KEEPALIVE, 0)
_DATA = int(FrameType.DATA)
_KEEPALIVE = int(FrameType.KEEPALIVE)


def encode_data(packet: bytes) -> bytes:
    """Return one data frame holding ``packet``."""
    if not packet or len(packet) > MAX_PAYLOAD:
        raise FrameError(
            f"cannot frame a packet of {len(packet)} bytes: "
            f"must be 1..{MAX_PAYLOAD} bytes"
        )
    return HEADER.pack(_DATA, len(packet)) + packet


def encode_batch(packets: Iterable[bytes]) -> bytes:
    """Return the data frames of ``packets`` joined for a single write."""
    parts: list[bytes] = []
    pack = HEADER.pack
    for packet in packets:
        size = len(packet)
        if not 0 < size <= MAX_PAYLOAD:
            raise FrameError(
                f"cannot frame a packet of {size} bytes: must be 1..{MAX_PAYLOAD} bytes"
            )
        parts.append(pack(_DATA, size))
        parts.append(packet)
    return b"".join(parts)


class FrameDecoder:
    """Split a byte stream into packets, checking every frame header.

    ``max_payload`` is the largest data frame accepted (the tunnel MTU).
    ``keepalives`` counts keepalive frames seen, which carry no packet.
    """

    __slots__ = ("_buffer", "keepalives", "max_payload")

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 1..{MAX_PAYLOAD}: {max_payload}")
        self.max_payload = max_payload
        self.keepalives = 0
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Number of bytes held from an incomplete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return the packets of every complete data frame."""
        buffer = self._buffer
        buffer += data
        packets: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER_SIZE:
            kind = buffer[offset]
            size = (buffer[offset + 1] << 8) | buffer[offset + 2]
            self._check_header(kind, size)
            start = offset + HEADER_SIZE
            if end - start < size:
                break
            if kind == _DATA:
                packets.append(bytes(buffer[start : start + size]))
            else:
                self.keepalives += 1
            offset = start + size
        if offset:
            del buffer[:offset]
        return packets

    def _check_header(self, kind: int, size: int) -> None:
        if kind == _DATA:
            if size == 0:
                raise FrameError("invalid data frame: empty payload")
            if size > self.max_payload:
                raise FrameError(
                    f"invalid data frame: payload of {size} bytes exceeds "
                    f"the tunnel MTU of {self.max_payload} bytes"
                )
        elif kind == _KEEPALIVE:
            if size != 0:
                raise FrameError(f"invalid keepalive frame: payload of {size} bytes")
        else:
            raise FrameError(f"invalid frame: unknown type {kind:#04x}")
