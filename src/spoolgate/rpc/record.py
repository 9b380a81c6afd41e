"""ONC RPC record marking over TCP (RFC 5531, "Record Marking Standard").

A record is a sequence of fragments. Each fragment starts with a 4-byte
big-endian header: the top bit marks the last fragment of the record and the
low 31 bits give the fragment length. :class:`RecordReader` reassembles
records from a byte stream fed in arbitrary pieces and rejects a record as
soon as its declared size would pass the configured maximum, before the data
arrives, so a peer cannot make it buffer more than that.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from spoolgate.errors import RPCError

__all__ = ["MAX_FRAGMENT_SIZE", "Record", "RecordReader", "encode_record"]

_HEADER = struct.Struct(">I")
LAST_FRAGMENT = 0x80000000
MAX_FRAGMENT_SIZE = 0x7FFFFFFF

# 1 MiB of READ or WRITE data plus room for the RPC header and NFS arguments.
# 1 MiB is Linux nfsd's default transfer size (NFSSVC_DEFBLKSIZE). A server
# that offers larger rsize or wsize needs a larger limit here.
DEFAULT_MAX_RECORD_SIZE = 1024 * 1024 + 64 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    """One reassembled record: the RPC message and how many fragments carried it.

    ``encode_record(payload)`` gives the bytes to forward; they equal the
    received bytes whenever the record came in one fragment, as almost every
    client sends it. RFC 5531 lets a sender choose fragment boundaries, so
    re-framing does not change the message.
    """

    payload: bytes
    fragments: int


def encode_record(payload: bytes, max_fragment: int = MAX_FRAGMENT_SIZE) -> bytes:
    """Frame ``payload`` as one record, split into fragments of ``max_fragment``."""
    if not 1 <= max_fragment <= MAX_FRAGMENT_SIZE:
        raise RPCError(
            f"encode record: fragment size {max_fragment} not in 1..{MAX_FRAGMENT_SIZE}"
        )
    parts: list[bytes] = []
    offset = 0
    while True:
        chunk = payload[offset : offset + max_fragment]
        offset += len(chunk)
        last = offset >= len(payload)
        parts.append(_HEADER.pack(len(chunk) | (LAST_FRAGMENT if last else 0)))
        parts.append(chunk)
        if last:
            return b"".join(parts)


class RecordReader:
    """Turn a TCP byte stream into complete :class:`Record` objects.

    After an :class:`RPCError` the stream position is lost, so the caller
    must close the connection; further ``feed`` calls raise again.
    """

    __slots__ = ("_broken", "_buffer", "_fragments", "_max_record_size", "_payload")

    def __init__(self, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> None:
        if max_record_size < 1:
            raise RPCError(f"record reader: max record size {max_record_size} < 1")
        self._max_record_size = max_record_size
        self._buffer = bytearray()
        self._payload = bytearray()
        self._fragments = 0
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a returned record."""
        return len(self._buffer) + len(self._payload) + 4 * self._fragments

    def feed(self, data: bytes) -> list[Record]:
        """Add ``data`` from the stream; return the records it completes."""
        if self._broken:
            raise RPCError("record stream: unusable after an earlier error")
        self._buffer += data
        records: list[Record] = []
        while len(self._buffer) >= 4:
            (header,) = _HEADER.unpack_from(self._buffer)
            size = header & MAX_FRAGMENT_SIZE
            self._check_size(size)
            if len(self._buffer) < 4 + size:
                break
            if header & LAST_FRAGMENT and not self._fragments:
                records.append(self._take_single(size))
                continue
            self._payload += self._buffer[4 : 4 + size]
            del self._buffer[: 4 + size]
            self._fragments += 1
            if header & LAST_FRAGMENT:
                records.append(self._finish_record())
        return records

    def _check_size(self, fragment_size: int) -> None:
        total = len(self._payload) + fragment_size
        if total > self._max_record_size:
            self._broken = True
            raise RPCError(
                f"record stream: record of at least {total} bytes exceeds the "
                f"limit of {self._max_record_size}; closing the connection"
            )

    def _take_single(self, size: int) -> Record:
        # A record in one fragment, as clients send almost every record:
        # copy it out once, without the intermediate payload buffer.
        with memoryview(self._buffer) as view:
            payload = bytes(view[4 : 4 + size])
        del self._buffer[: 4 + size]
        return Record(payload=payload, fragments=1)

    def _finish_record(self) -> Record:
        record = Record(payload=bytes(self._payload), fragments=self._fragments)
        self._payload = bytearray()
        self._fragments = 0
        return record
