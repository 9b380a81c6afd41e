"""The expunge journal: the plan of an in-place expunge and its progress.

An expunge moves the kept bytes after the first deleted message down over
the gaps, then truncates the mbox. The journal makes that resumable after
a crash at any instant. It lives beside the index cache, never in the
spool directory, and has two parts:

* the **plan**, written once before the mbox is touched. It holds the
  identity of the mbox before the expunge, the deleted message numbers,
  the moves and the final size. A move is a source offset, a destination
  offset and a length, and destinations are contiguous and below their
  sources.
* two **state slots**, written alternately, each holding a sequence
  number, the phase (copy, truncate, done), how many bytes of the moves
  are copied, the length of data appended to the mbox after a crash (the
  tail move, see ``ExpungeState.tail_length``) and, for a chunk that
  overlaps its own source, a copy of that chunk's source bytes.

Every part carries a CRC-32. A slot torn by a crash fails its check and the
other slot, one step older, is used. The file stays the size of the plan
plus two chunks however much data the expunge moves.

This module encodes and decodes those bytes and reads and writes the file;
``spoolgate.mbox.store`` runs the expunge.
"""

from __future__ import annotations

import enum
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spoolgate.errors import MboxError
from spoolgate.mbox.index import FileIdentity

__all__ = [
    "ExpungeJournal",
    "ExpungePlan",
    "ExpungeState",
    "Move",
    "Phase",
]

_MAGIC = b"SPGJRNL\n"
_VERSION = 1
# magic, version, chunk capacity, plan length.
_HEADER = struct.Struct("<8sIII")
_CRC = struct.Struct("<I")
# dev, inode, size, mtime_ns, ctime_ns, final size, chunk size,
# count of numbers, count of moves.
_PLAN_HEAD = struct.Struct("<QQQqqQQQQ")
_MOVE = struct.Struct("<QQQ")
# sequence, phase, padding, bytes copied, tail length, backup length.
_SLOT_HEAD = struct.Struct("<QB7xQQI")


class Phase(enum.IntEnum):
    """How far an expunge got."""

    COPY = 1
    TRUNCATE = 2
    DONE = 3


@dataclass(frozen=True, slots=True)
class Move:
    """One run of kept bytes moved down: ``length`` bytes from ``source``."""

    source: int
    destination: int
    length: int

    @property
    def gap(self) -> int:
        """The distance the bytes move down."""
        return self.source - self.destination


@dataclass(frozen=True, slots=True)
class ExpungePlan:
    """What an expunge does, fixed before the mbox is touched.

    ``identity`` is the mbox before the expunge. ``numbers`` are the
    0-based index numbers of the deleted messages. ``moves`` run in file
    order, and ``final_size`` is the mbox size after them.
    """

    identity: FileIdentity
    numbers: tuple[int, ...]
    moves: tuple[Move, ...]
    final_size: int
    chunk_size: int

    @property
    def total(self) -> int:
        """Bytes the moves copy, the range of ``ExpungeState.copied``."""
        return sum(move.length for move in self.moves)

    def to_bytes(self) -> bytes:
        """Encode the plan (without its checksum)."""
        ident = self.identity
        parts = [
            _PLAN_HEAD.pack(
                ident.dev,
                ident.inode,
                ident.size,
                ident.mtime_ns,
                ident.ctime_ns,
                self.final_size,
                self.chunk_size,
                len(self.numbers),
                len(self.moves),
            ),
            struct.pack(f"<{len(self.numbers)}Q", *self.numbers),
        ]
        parts.extend(_MOVE.pack(m.source, m.destination, m.length) for m in self.moves)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> ExpungePlan:
        """Decode a plan; raise ValueError if the data does not fit."""
        head = _PLAN_HEAD.unpack_from(data)
        count, move_count = head[7], head[8]
        expected = _PLAN_HEAD.size + 8 * count + _MOVE.size * move_count
        if len(data) != expected:
            raise ValueError(f"plan is {len(data)} bytes, expected {expected}")
        numbers = struct.unpack_from(f"<{count}Q", data, _PLAN_HEAD.size)
        start = _PLAN_HEAD.size + 8 * count
        moves = tuple(
            Move(*_MOVE.unpack_from(data, start + i * _MOVE.size))
            for i in range(move_count)
        )
        return cls(FileIdentity(*head[:5]), numbers, moves, head[5], head[6])


@dataclass(frozen=True, slots=True)
class ExpungeState:
    """The progress of an expunge, as stored in one slot.

    ``copied`` counts bytes of the plan's moves, in order, that are in place
    and durable. ``tail_length`` is the length of data found appended to
    the mbox after a crash, at the pre-expunge size: it is moved down to
    ``final_size`` as one more move after the planned ones. ``backup`` is
    the source bytes of the chunk that starts at ``copied``, saved because
    writing that chunk overwrites part of its own source.
    """

    sequence: int
    phase: Phase
    copied: int
    tail_length: int = 0
    backup: bytes = b""


def _with_crc(data: bytes) -> bytes:
    return data + _CRC.pack(zlib.crc32(data))


def _crc_ok(data: bytes) -> bool:
    if len(data) < _CRC.size:
        return False
    (stored,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    return bool(stored == zlib.crc32(memoryview(data)[: -_CRC.size]))


def encode_slot(state: ExpungeState) -> bytes:
    """Encode one state slot with its checksum."""
    head = _SLOT_HEAD.pack(
        state.sequence,
        state.phase,
        state.copied,
        state.tail_length,
        len(state.backup),
    )
    return _with_crc(head + state.backup)


def decode_slot(data: bytes) -> ExpungeState | None:
    """Decode a slot; None if it is empty, torn or corrupt."""
    if len(data) < _SLOT_HEAD.size + _CRC.size:
        return None
    sequence, phase, copied, tail_length, backup_length = _SLOT_HEAD.unpack_from(data)
    end = _SLOT_HEAD.size + backup_length
    if sequence == 0 or end + _CRC.size > len(data):
        return None
    if not _crc_ok(data[: end + _CRC.size]) or phase not in Phase._value2member_map_:
        return None
    backup = bytes(data[_SLOT_HEAD.size : end])
    return ExpungeState(sequence, Phase(phase), copied, tail_length, backup)


class ExpungeJournal:
    """The journal file of one expunge; every write is fsync'd before return.

    Not safe for concurrent use; callers hold the mbox lock.
    """

    def __init__(self, path: Path, fd: int, plan: ExpungePlan, slots_at: int) -> None:
        self.path = path
        self.plan = plan
        self._fd = fd
        self._slots_at = slots_at
        self._slot_size = _SLOT_HEAD.size + plan.chunk_size + _CRC.size
        self.state = ExpungeState(0, Phase.COPY, 0)

    @classmethod
    def create(cls, path: Path, plan: ExpungePlan) -> ExpungeJournal:
        """Write a new journal with ``plan`` and a first state, durably."""
        plan_bytes = _with_crc(plan.to_bytes())
        header = _HEADER.pack(_MAGIC, _VERSION, plan.chunk_size, len(plan_bytes))
        temp = path.with_name(path.name + ".new")
        try:
            fd = os.open(
                temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise _journal_error("create", temp, exc) from exc
        journal = cls(path, fd, plan, _HEADER.size + len(plan_bytes))
        try:
            os.pwrite(fd, header + plan_bytes, 0)
            journal.write(ExpungeState(1, Phase.COPY, 0))
            # The rename makes the journal appear complete or not at all.
            os.rename(temp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            journal.close()
            raise _journal_error("write", temp, exc) from exc
        return journal

    @classmethod
    def load(cls, path: Path) -> ExpungeJournal | None:
        """Open an existing journal; None if there is none.

        Raises MboxError if the file exists but its plan is unreadable.
        """
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _journal_error("open", path, exc) from exc
        try:
            journal = cls._parse(path, fd)
        except BaseException:
            os.close(fd)
            raise
        return journal

    @classmethod
    def _parse(cls, path: Path, fd: int) -> ExpungeJournal:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        problem = _check_header(data)
        if problem:
            raise MboxError(
                f"cannot resume expunge from journal {path}: {problem}; "
                "the mbox may hold duplicated data: check it, then delete "
                "the journal"
            )
        _, _, _, plan_length = _HEADER.unpack_from(data)
        plan_end = _HEADER.size + plan_length
        try:
            plan = ExpungePlan.from_bytes(data[_HEADER.size : plan_end - _CRC.size])
        except (ValueError, struct.error) as exc:
            raise MboxError(
                f"cannot resume expunge from journal {path}: invalid plan: {exc}"
            ) from exc
        journal = cls(path, fd, plan, plan_end)
        states = [
            decode_slot(data[start : start + journal._slot_size])
            for start in (plan_end, plan_end + journal._slot_size)
        ]
        valid = [state for state in states if state is not None]
        if valid:
            journal.state = max(valid, key=lambda state: state.sequence)
        return journal

    def write(self, state: ExpungeState) -> None:
        """Store ``state`` in the older slot and fsync the journal."""
        if len(state.backup) > self.plan.chunk_size:
            raise ValueError("backup is larger than the journal's chunk size")
        slot = state.sequence % 2
        os.pwrite(self._fd, encode_slot(state), self._slots_at + slot * self._slot_size)
        os.fsync(self._fd)
        self.state = state

    def advance(
        self,
        phase: Phase,
        copied: int,
        tail_length: int | None = None,
        backup: bytes = b"",
    ) -> None:
        """Write the next state (sequence number plus one)."""
        tail = self.state.tail_length if tail_length is None else tail_length
        self.write(ExpungeState(self.state.sequence + 1, phase, copied, tail, backup))

    def close(self) -> None:
        """Close the journal file, keeping it."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        """Close and delete the journal once the expunge is complete."""
        self.close()
        try:
            os.unlink(self.path)
            _fsync_dir(self.path.parent)
        except FileNotFoundError:
            pass


def _check_header(data: bytes) -> str:
    """Return what is wrong with the journal's header and plan, or ''."""
    if len(data) < _HEADER.size:
        return f"truncated ({len(data)} bytes)"
    magic, version, _, plan_length = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        return "not a spoolgate expunge journal"
    if version != _VERSION:
        return f"format version {version}, this program reads {_VERSION}"
    plan_end = _HEADER.size + plan_length
    if len(data) < plan_end or not _crc_ok(data[_HEADER.size : plan_end]):
        return "its plan is truncated or corrupt"
    return ""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _journal_error(operation: str, path: Path, exc: OSError) -> MboxError:
    return MboxError(
        f"cannot {operation} expunge journal {path}: {exc.strerror}; "
        "the expunge was not started or is resumed on the next open"
    )


def plan_moves(
    offsets: Sequence[int], lengths: Sequence[int], deleted: set[int], end: int
) -> tuple[tuple[Move, ...], int]:
    """Compute the moves that close the gaps of the deleted messages.

    ``offsets`` and ``lengths`` describe the messages in file order and
    ``end`` is the file size (bytes past the last message move too).
    Returns the moves, adjacent kept messages merged into one, and the
    final size.
    """
    moves: list[Move] = []
    write = None
    run_start = run_end = 0
    for number, (offset, length) in enumerate(zip(offsets, lengths, strict=True)):
        if number in deleted:
            if write is None:
                write = offset
            elif run_end > run_start:
                moves.append(Move(run_start, write, run_end - run_start))
                write += run_end - run_start
            run_start = run_end = offset + length
        elif write is not None:
            run_end = offset + length
    if write is None:
        return (), end
    run_end = max(run_end, end)
    if run_end > run_start:
        moves.append(Move(run_start, write, run_end - run_start))
        write += run_end - run_start
    return tuple(moves), write
