"""The index of one mbox: per-message records, file identity, cache format.

An ``MboxIndex`` stores one record per message in columns, not in one
object per message, so that an open index of 100,000 messages costs a few
megabytes: ``array('Q')`` columns for offset, length and size, an
``array('B')`` column of flags, and the UIDL digests packed end to end in
one ``bytearray`` of ``UIDL_DIGEST_BYTES`` bytes per message. Records are
built on demand by ``index[i]``.

The same columns are the cache file: a fixed header, then each column as
one block of fixed-width values, then a CRC-32 of everything before it.
Loading a cache is a few ``frombytes`` copies, not a parse per message.

This module is pure: bytes in, bytes out. Reading and writing files, and
deciding whether a cache still fits the mbox, is ``spoolgate.mbox.cache``.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import sys
import zlib
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from spoolgate.errors import IndexFormatError

__all__ = [
    "CACHE_MAGIC",
    "CACHE_VERSION",
    "DEFAULT_DIGEST_BYTES",
    "UIDL_DIGEST_BYTES",
    "FileIdentity",
    "MboxIndex",
    "MessageFlag",
    "MessageRecord",
    "TailMark",
    "Variant",
    "split_uidl_column",
    "tail_digest",
]

# Bytes of the message digest kept per message. With 96 bits, an accidental
# clash between two different messages of one mbox is negligible. A clash
# between identical messages (a duplicate delivery) is resolved by
# ``MboxIndex``, so UIDLs stay unique within the mbox.
UIDL_DIGEST_BYTES = 12

# How many bytes from the start of the last message the cache fingerprints
# to decide whether an mbox only grew. Generated and real headers (several
# Received lines, Message-ID) fit in 4 KiB; the value is a setting.
DEFAULT_DIGEST_BYTES = 4096

CACHE_MAGIC = b"SPGIDX\r\n"
CACHE_VERSION = 1

# magic, version, variant, reserved, digest_bytes, dev, inode, size,
# mtime_ns, ctime_ns, scanned_length, tail offset, tail digest length,
# tail digest (32 bytes), message count.
_HEADER = struct.Struct("<8sIBxxxIQQQqqQQI32sQ")
_CRC = struct.Struct("<I")


class Variant(enum.Enum):
    """The quoting convention for body lines that look like From_ lines.

    ``MBOXO`` (the default, as procmail, Postfix and mutt write) stores
    ``>From`` lines as they are and serves them unchanged. ``MBOXRD``
    quotes every ``>*From `` line with one more ``>``, so reading removes
    one ``>`` from each.
    """

    MBOXO = "mboxo"
    MBOXRD = "mboxrd"


class MessageFlag(enum.IntFlag):
    """Per-message flags stored in the index."""

    NONE = 0
    # The IMAP folder-internal-data message some IMAP servers keep first.
    HIDDEN = 1
    # The message's end came from a trusted mboxcl2 Content-Length header.
    CONTENT_LENGTH = 2


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """The ``os.stat`` fields that identify one state of an mbox file."""

    dev: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True, slots=True)
class TailMark:
    """The fingerprint of the start of the last message.

    ``digest`` is the BLAKE2b-256 digest of ``length`` bytes read from
    ``offset``; ``length`` is the smaller of the configured digest size and
    the bytes the message had when it was scanned.
    """

    offset: int
    length: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message of an mbox, as the index stores it.

    ``offset`` and ``length`` are bytes in the mbox file (``length`` runs
    up to the next From_ line, so it includes the empty separator line).
    ``size`` is the octet count POP3 reports: line ends as CRLF, From_
    line and separator line excluded, ``>From`` quoting undone for mboxrd.
    """

    offset: int
    length: int
    size: int
    uidl: str
    flags: MessageFlag

    @property
    def is_hidden(self) -> bool:
        """Whether the message is kept from POP3 clients."""
        return bool(self.flags & MessageFlag.HIDDEN)


# Maps a flags byte to 1 if it has the HIDDEN bit, else to 0.
_HIDDEN_MARKS = bytes(1 if flags & MessageFlag.HIDDEN else 0 for flags in range(256))


def split_uidl_column(column: bytes) -> list[str]:
    """Return the UIDLs of a ``uidl_column``: 24 lowercase hex digits each."""
    text = column.hex()
    width = 2 * UIDL_DIGEST_BYTES
    return [text[start : start + width] for start in range(0, len(text), width)]


def tail_digest(data: bytes) -> bytes:
    """Return the digest ``TailMark`` uses for the start of a message."""
    return hashlib.blake2b(data, digest_size=32).digest()


def _derive_uidl_digest(digest: bytes) -> bytes:
    """Return the next candidate digest for a message whose digest is taken."""
    return hashlib.blake2b(
        digest, digest_size=UIDL_DIGEST_BYTES, person=b"spoolgate-dup"
    ).digest()


class MboxIndex:
    """The records of one mbox, in file order, with the file state they fit.

    Message numbers here are 0-based Python indices; POP3's msgno is the
    index plus one. Not safe for concurrent use: callers that share an
    index between tasks take the mailbox lock around changes.
    """

    __slots__ = (
        "_flags",
        "_lengths",
        "_offsets",
        "_sizes",
        "_uidls",
        "digest_bytes",
        "identity",
        "scanned_length",
        "tail",
        "variant",
    )

    def __init__(
        self,
        variant: Variant = Variant.MBOXO,
        digest_bytes: int = DEFAULT_DIGEST_BYTES,
    ) -> None:
        self.variant = variant
        self.digest_bytes = digest_bytes
        # The file state the records describe; None until a scan or load.
        self.identity: FileIdentity | None = None
        # Bytes of the file the records cover (the file size at scan time).
        self.scanned_length = 0
        # None when there is no message, or after ``remove`` until the
        # caller fingerprints the new last message.
        self.tail: TailMark | None = None
        self._offsets = array("Q")
        self._lengths = array("Q")
        self._sizes = array("Q")
        self._flags = array("B")
        self._uidls = bytearray()

    def __len__(self) -> int:
        return len(self._offsets)

    def __getitem__(self, number: int) -> MessageRecord:
        """Return the record of message ``number`` (0-based, negative ok)."""
        if number < 0:
            number += len(self._offsets)
        if not 0 <= number < len(self._offsets):
            raise IndexError(f"message {number} out of range 0..{len(self) - 1}")
        return MessageRecord(
            offset=self._offsets[number],
            length=self._lengths[number],
            size=self._sizes[number],
            uidl=self.uidl(number),
            flags=MessageFlag(self._flags[number]),
        )

    def __iter__(self) -> Iterator[MessageRecord]:
        for number in range(len(self._offsets)):
            yield self[number]

    def uidl(self, number: int) -> str:
        """Return the UIDL of message ``number``: 24 lowercase hex digits."""
        start = number * UIDL_DIGEST_BYTES
        return self._uidls[start : start + UIDL_DIGEST_BYTES].hex()

    def offset(self, number: int) -> int:
        """Return the file offset of message ``number``."""
        return self._offsets[number]

    def length(self, number: int) -> int:
        """Return the bytes message ``number`` takes in the file."""
        return self._lengths[number]

    def size(self, number: int) -> int:
        """Return the POP3 size in octets of message ``number``."""
        return self._sizes[number]

    def is_hidden(self, number: int) -> bool:
        """Return whether message ``number`` is kept from POP3 clients."""
        return bool(self._flags[number] & MessageFlag.HIDDEN)

    def visible_numbers(self) -> range | list[int]:
        """Return the numbers of the messages POP3 clients see, in order.

        Returns a ``range`` when no message is hidden, the usual case, so a
        large index costs no list.
        """
        marks = self._flags.tobytes().translate(_HIDDEN_MARKS)
        if b"\x01" not in marks:
            return range(len(self._flags))
        return [number for number, mark in enumerate(marks) if not mark]

    def size_column(self) -> array[int]:
        """Return a copy of every message's POP3 size, in file order."""
        return array("Q", self._sizes)

    def uidl_column(self) -> bytes:
        """Return a copy of every message's UIDL digest, packed end to end."""
        return bytes(self._uidls)

    def same_records(self, other: MboxIndex) -> bool:
        """Return whether both indexes hold identical records."""
        return (
            self._offsets == other._offsets
            and self._lengths == other._lengths
            and self._sizes == other._sizes
            and self._flags == other._flags
            and self._uidls == other._uidls
        )

    def append(
        self,
        offset: int,
        length: int,
        size: int,
        flags: MessageFlag,
        digest: bytes,
    ) -> None:
        """Append one message; ``digest`` is its raw UIDL digest.

        For many messages use ``extend``, which checks UIDL clashes with
        one set instead of a search per message.
        """
        self.extend([offset], [length], [size], [int(flags)], digest)

    def extend(
        self,
        offsets: Collection[int],
        lengths: Collection[int],
        sizes: Collection[int],
        flags: Collection[int],
        digests: bytes | bytearray,
    ) -> None:
        """Append messages given as columns, making their UIDLs unique.

        ``digests`` packs ``UIDL_DIGEST_BYTES`` bytes per message. A digest
        already used in this index (the same message delivered twice) is
        replaced by a derived one, so the first copy keeps the plain digest
        and later copies get the same derived UIDLs on every rebuild.
        Raises ``ValueError`` if the columns differ in length.
        """
        count = len(offsets)
        if not (
            len(lengths) == len(sizes) == len(flags) == count
            and len(digests) == count * UIDL_DIGEST_BYTES
        ):
            raise ValueError("columns of the appended messages differ in length")
        unique = self._unique_digests(digests, count)
        self._offsets.extend(offsets)
        self._lengths.extend(lengths)
        self._sizes.extend(sizes)
        self._flags.extend(flags)
        self._uidls += unique

    def _unique_digests(self, digests: bytes | bytearray, count: int) -> bytes:
        width = UIDL_DIGEST_BYTES
        # A search of the packed column costs about 0.4 ms at 100,000
        # messages, a set of every digest's first four bytes about 8 ms
        # (timeit on the bench VM), so the set pays off from about 20 new
        # messages on.
        prefixes = self._digest_prefixes() if count > 16 else None
        added: set[bytes] = set()
        out = bytearray()
        for start in range(0, count * width, width):
            digest = bytes(digests[start : start + width])
            while digest in added or self._is_taken(digest, prefixes):
                digest = _derive_uidl_digest(digest)
            added.add(digest)
            out += digest
        return bytes(out)

    def _digest_prefixes(self) -> set[int]:
        """Return the first four bytes of every stored digest, as integers."""
        with memoryview(self._uidls) as view:
            words = view.cast("I")
            firsts = words[0 :: UIDL_DIGEST_BYTES // 4]
            prefixes = set(firsts)
            firsts.release()
            words.release()
        return prefixes

    def _is_taken(self, digest: bytes, prefixes: set[int] | None) -> bool:
        if prefixes is not None:
            if int.from_bytes(digest[:4], sys.byteorder) not in prefixes:
                return False
        return self._has_digest(digest)

    def _has_digest(self, digest: bytes) -> bool:
        column = self._uidls
        found = column.find(digest)
        while found >= 0:
            if found % UIDL_DIGEST_BYTES == 0:
                return True
            found = column.find(digest, found + 1)
        return False

    def truncate(self, count: int) -> None:
        """Drop every record from message ``count`` on."""
        del self._offsets[count:]
        del self._lengths[count:]
        del self._sizes[count:]
        del self._flags[count:]
        del self._uidls[count * UIDL_DIGEST_BYTES :]

    def remove(self, numbers: Collection[int]) -> None:
        """Remove messages and shift later offsets down over the gaps.

        This mirrors an expunge that moves later messages down in the file:
        each kept message's offset drops by the lengths of the removed
        messages before it, and ``scanned_length`` drops by all of them.
        ``identity`` and ``tail`` no longer fit the file afterwards: the
        caller sets them (``spoolgate.mbox.cache.save_index`` does).
        Raises ``IndexError`` for a number out of range.
        """
        gone = set(numbers)
        for number in gone:
            if not 0 <= number < len(self):
                raise IndexError(f"message {number} out of range 0..{len(self) - 1}")
        if not gone:
            return
        offsets, lengths, sizes = array("Q"), array("Q"), array("Q")
        flags, uidls = array("B"), bytearray()
        shift = 0
        width = UIDL_DIGEST_BYTES
        for number in range(len(self)):
            if number in gone:
                shift += self._lengths[number]
                continue
            offsets.append(self._offsets[number] - shift)
            lengths.append(self._lengths[number])
            sizes.append(self._sizes[number])
            flags.append(self._flags[number])
            uidls += self._uidls[number * width : (number + 1) * width]
        self._offsets, self._lengths, self._sizes = offsets, lengths, sizes
        self._flags, self._uidls = flags, uidls
        self.scanned_length -= shift
        self.identity = None
        self.tail = None

    def resident_bytes(self) -> int:
        """Return the bytes the record columns take (without object headers)."""
        return sum(
            column.itemsize * len(column)
            for column in (self._offsets, self._lengths, self._sizes, self._flags)
        ) + len(self._uidls)

    def to_bytes(self) -> bytes:
        """Serialize the index as a cache file.

        Raises ``ValueError`` if the index has no identity yet.
        """
        if self.identity is None:
            raise ValueError("index has no file identity; scan or stat the mbox first")
        tail = self.tail or TailMark(0, 0, bytes(32))
        ident = self.identity
        header = _HEADER.pack(
            CACHE_MAGIC,
            CACHE_VERSION,
            _VARIANT_CODES[self.variant],
            self.digest_bytes,
            ident.dev,
            ident.inode,
            ident.size,
            ident.mtime_ns,
            ident.ctime_ns,
            self.scanned_length,
            tail.offset,
            tail.length,
            tail.digest,
            len(self),
        )
        parts = [header]
        for column in (self._offsets, self._lengths, self._sizes):
            parts.append(_little_endian(column))
        parts.append(self._flags.tobytes())
        parts.append(bytes(self._uidls))
        body = b"".join(parts)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "cache") -> MboxIndex:
        """Load an index from cache file bytes.

        ``source`` names the file in error messages. Raises
        ``IndexFormatError`` when the data is truncated, has a bad
        checksum, or is of another format or version.
        """
        count = _check_frame(data, source)
        fields = _HEADER.unpack_from(data)
        (_, _, variant_code, digest_bytes, dev, inode, size, mtime_ns, ctime_ns) = (
            fields[:9]
        )
        scanned_length, tail_offset, tail_length, tail_hash = fields[9:13]
        variant = _VARIANTS_BY_CODE.get(variant_code)
        if variant is None:
            raise IndexFormatError(
                f"cannot load index cache {source}: unknown mbox variant code "
                f"{variant_code}"
            )
        index = cls(variant=variant, digest_bytes=digest_bytes)
        index.identity = FileIdentity(dev, inode, size, mtime_ns, ctime_ns)
        index.scanned_length = scanned_length
        if count:
            index.tail = TailMark(tail_offset, tail_length, tail_hash)
        index._load_columns(memoryview(data)[_HEADER.size : -_CRC.size], count)
        return index

    def _load_columns(self, view: memoryview, count: int) -> None:
        pos = 0
        for column in (self._offsets, self._lengths, self._sizes):
            column.frombytes(view[pos : pos + 8 * count])
            if sys.byteorder != "little":
                column.byteswap()
            pos += 8 * count
        self._flags.frombytes(view[pos : pos + count])
        pos += count
        self._uidls = bytearray(view[pos : pos + count * UIDL_DIGEST_BYTES])


_VARIANT_CODES = {Variant.MBOXO: 0, Variant.MBOXRD: 1}
_VARIANTS_BY_CODE = {code: variant for variant, code in _VARIANT_CODES.items()}
_RECORD_BYTES = 8 * 3 + 1 + UIDL_DIGEST_BYTES


def _little_endian(column: array[int]) -> bytes:
    if sys.byteorder == "little":
        return column.tobytes()
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped.tobytes()


def _check_frame(data: bytes, source: str) -> int:
    """Check magic, version, length and checksum; return the message count."""
    prefix = f"cannot load index cache {source}"
    if len(data) < _HEADER.size + _CRC.size:
        raise IndexFormatError(
            f"{prefix}: truncated ({len(data)} bytes, header needs "
            f"{_HEADER.size + _CRC.size})"
        )
    magic, version = struct.unpack_from("<8sI", data)
    if magic != CACHE_MAGIC:
        raise IndexFormatError(f"{prefix}: not a spoolgate index file")
    if version != CACHE_VERSION:
        raise IndexFormatError(
            f"{prefix}: format version {version}, this program reads {CACHE_VERSION}"
        )
    (stored,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    actual = zlib.crc32(memoryview(data)[: -_CRC.size])
    if stored != actual:
        raise IndexFormatError(
            f"{prefix}: checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        )
    count = _HEADER.unpack_from(data)[-1]
    expected = _HEADER.size + count * _RECORD_BYTES + _CRC.size
    if len(data) != expected:
        raise IndexFormatError(
            f"{prefix}: {len(data)} bytes, expected {expected} for {count} messages"
        )
    return int(count)
