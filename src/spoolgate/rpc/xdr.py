"""XDR (RFC 4506) encoding and decoding with explicit limits.

Every variable-length read takes a maximum, so a length field from the wire
can never make the decoder allocate or loop past what the caller allows.
Reads past the end of the buffer raise :class:`XDRError`, never
``IndexError`` or ``struct.error``.

RFC 4506 requires senders to pad opaque data with zero bytes. This decoder
skips the padding without checking it, so it accepts what a lenient server
accepts and a proxy that forwards the original bytes stays transparent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from spoolgate.errors import XDRError

__all__ = ["Decoder", "Encoder", "decode_all", "padding"]

T = TypeVar("T")

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")

UINT32_MAX = 0xFFFFFFFF


def padding(length: int) -> int:
    """Return how many zero bytes follow ``length`` bytes of opaque data."""
    return -length % 4


class Decoder:
    """Read XDR items from ``data`` starting at ``offset``.

    The decoder keeps a position; each read advances it. ``offset`` is the
    position in the original buffer, so callers can hand it to the proxy as
    the start of the procedure arguments.
    """

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, offset: int = 0) -> None:
        if not 0 <= offset <= len(data):
            raise XDRError(f"decode: start offset {offset} outside {len(data)} bytes")
        self._data = data
        self._pos = offset

    @property
    def offset(self) -> int:
        """Position of the next unread byte."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Number of bytes not read yet."""
        return len(self._data) - self._pos

    def _take(self, size: int, what: str) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise XDRError(
                f"decode {what}: needs {size} bytes at offset {self._pos}, "
                f"only {len(self._data) - self._pos} left"
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def uint32(self) -> int:
        value: int = _U32.unpack(self._take(4, "uint32"))[0]
        return value

    def int32(self) -> int:
        value: int = _I32.unpack(self._take(4, "int32"))[0]
        return value

    def uint64(self) -> int:
        value: int = _U64.unpack(self._take(8, "uint64"))[0]
        return value

    def int64(self) -> int:
        value: int = _I64.unpack(self._take(8, "int64"))[0]
        return value

    def bool(self) -> bool:
        value = self.uint32()
        if value > 1:
            raise XDRError(f"decode bool: value {value} at offset {self._pos - 4}")
        return value == 1

    def fixed_opaque(self, size: int) -> bytes:
        data = self._take(size, f"opaque[{size}]")
        self._take(padding(size), "padding")
        return data

    def opaque(self, max_size: int) -> bytes:
        """Read variable-length opaque data of at most ``max_size`` bytes."""
        size = self.length(max_size, "opaque")
        return self.fixed_opaque(size)

    def string(self, max_size: int) -> bytes:
        """Read an XDR string; kept as bytes, as the wire does not fix a charset."""
        return self.opaque(max_size)

    def length(self, max_value: int, what: str) -> int:
        """Read a length or count prefix and check it against ``max_value``."""
        start = self._pos
        value = self.uint32()
        if value > max_value:
            raise XDRError(
                f"decode {what}: length {value} at offset {start} "
                f"exceeds the limit of {max_value}"
            )
        return value

    def uint32_array(self, max_count: int) -> tuple[int, ...]:
        count = self.length(max_count, "uint32 array")
        data = self._take(4 * count, f"uint32[{count}]")
        return struct.unpack(f">{count}I", data)

    def skip(self, size: int) -> None:
        self._take(size, f"{size} skipped bytes")

    def rest(self) -> bytes:
        """Return all unread bytes and move to the end."""
        return self._take(self.remaining, "rest")

    def done(self, what: str) -> None:
        """Raise if unread bytes are left after ``what``."""
        if self._pos != len(self._data):
            raise XDRError(
                f"decode {what}: {len(self._data) - self._pos} unexpected "
                f"bytes after offset {self._pos}"
            )


def decode_all(data: bytes, parse: Callable[[Decoder], T], what: str) -> T:
    """Decode all of ``data`` with ``parse``; raise XDRError naming ``what``."""
    try:
        dec = Decoder(data)
        value = parse(dec)
        dec.done(what)
    except XDRError as exc:
        raise XDRError(f"{what}: {exc}") from exc
    return value


class Encoder:
    """Collect XDR items and return them as one bytes object."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def uint32(self, value: int) -> None:
        if not 0 <= value <= UINT32_MAX:
            raise XDRError(f"encode uint32: {value} out of range")
        self._parts.append(_U32.pack(value))

    def int32(self, value: int) -> None:
        if not -(2**31) <= value < 2**31:
            raise XDRError(f"encode int32: {value} out of range")
        self._parts.append(_I32.pack(value))

    def uint64(self, value: int) -> None:
        if not 0 <= value < 2**64:
            raise XDRError(f"encode uint64: {value} out of range")
        self._parts.append(_U64.pack(value))

    def int64(self, value: int) -> None:
        if not -(2**63) <= value < 2**63:
            raise XDRError(f"encode int64: {value} out of range")
        self._parts.append(_I64.pack(value))

    def bool(self, value: bool) -> None:
        self._parts.append(_U32.pack(1 if value else 0))

    def fixed_opaque(self, data: bytes, size: int | None = None) -> None:
        if size is not None and len(data) != size:
            raise XDRError(f"encode opaque[{size}]: got {len(data)} bytes")
        self._parts.append(bytes(data))
        self._parts.append(b"\0" * padding(len(data)))

    def opaque(self, data: bytes, max_size: int = UINT32_MAX) -> None:
        if len(data) > max_size:
            raise XDRError(
                f"encode opaque: {len(data)} bytes exceed the limit of {max_size}"
            )
        self.uint32(len(data))
        self.fixed_opaque(data)

    def string(self, data: bytes, max_size: int = UINT32_MAX) -> None:
        self.opaque(data, max_size)

    def uint32_array(self, values: tuple[int, ...] | list[int]) -> None:
        self.uint32(len(values))
        for value in values:
            self.uint32(value)

    def raw(self, data: bytes) -> None:
        """Append already encoded XDR bytes."""
        self._parts.append(bytes(data))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
