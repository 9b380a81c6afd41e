"""Find message boundaries in mbox bytes, fed in chunks (pure, the hot loop).

Theory of operation
-------------------
``MboxScanner`` takes the bytes of an mbox in chunks of any size and
returns, per message, its offset, its length in the file, its POP3 size,
a digest for its UIDL and its flags. It keeps only what it cannot decide
yet: the From_ line and headers of the current message (at most
``HEADER_LIMIT`` bytes), a partial last line, and, while an mboxcl2
Content-Length is being checked, the body it covers (at most
``CONTENT_LENGTH_LIMIT`` bytes). It never holds the whole file.

Each message goes through four phases: ``FROM_LINE`` (find the end of its
From_ line), ``HEADERS`` (find the empty line that ends the header block,
hash it, look for Content-Length and the IMAP internal-data marks),
``CONTENT_LENGTH`` (only when the header is present: check that the body
length lands on a boundary) and ``BODY`` (search for the next From_ line
with one regex pass, so the per-byte work happens in C).

Most messages in a real spool have a dated From_ line and ordinary headers.
For those the body phase does the work of all four phases itself
(``_next_dated``) and goes on searching in the same regex pass, without a
round trip through the driver. Anything unusual sends the message back to
the phases above, so both routes give the same records.

The separator rule
------------------
A line is a From_ line (starts a new message) when:

1. it starts with ``From `` and ends in an asctime-style date: weekday,
   month, day, time (seconds optional) and year, with an optional zone name
   or numeric offset before or after the year. Such a line is a separator
   wherever it is, with or without an empty line before it, because
   ``git format-patch`` (``From <sha> Mon Sep 17 00:00:00 2001``), Mailman's
   pipermail archives (``From alice at example.org  Mon Jan  1 ...``) and
   procmail, Postfix ``local`` and mutt all write one; or
2. it is ``From `` plus one token and nothing else but blanks (``From -``,
   ``From - ``, ``From 1234@xxx``), it follows an empty line, and the next line is a
   header line (``Name: value``). Netscape, Thunderbird and some exporters
   write these; or
3. it is the first line of the file and starts with ``From ``.

Any other ``From `` line is body text and stays in the message before it.
A From_ line longer than ``MAX_FROM_LINE`` bytes is never a separator.

Sizes
-----
The POP3 size of a message counts its content (everything after the From_
line) with every LF line end counted as CRLF, without the empty line that
separates it from the next From_ line (or the end of the file), and, for
the mboxrd variant, with one ``>`` removed from each ``>+From `` line. A
last line without a line end is counted as it is. ``read_message`` produces
exactly these octets.

mboxcl2
-------
A ``Content-Length: N`` header is trusted only when the body ends exactly
N bytes after the empty line that ends the headers, at a line start, and
what follows (after at most one empty line) is the end of the file or a
line that passes rule 1 or has the shape of rule 2. Then ``From `` lines
inside that body do not split it. Values over ``CONTENT_LENGTH_LIMIT`` are
not trusted.
"""

from __future__ import annotations

import enum
import hashlib
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from spoolgate.errors import NotAnMboxError
from spoolgate.mbox.index import UIDL_DIGEST_BYTES, MessageFlag, Variant

__all__ = [
    "CONTENT_LENGTH_LIMIT",
    "HEADER_LIMIT",
    "MAX_FROM_LINE",
    "MboxScanner",
    "MessageReader",
    "ScanBatch",
    "is_from_line",
    "read_message",
    "scan_bytes",
]

# Header bytes hashed for the UIDL and searched for Content-Length. RFC 5322
# sets no limit on the header block; 64 KiB holds dozens of Received lines.
HEADER_LIMIT = 64 * 1024
# Maximum length of a From_ line. RFC 5322 section 2.1.1 allows 998 octets
# per line, and the From_ lines of the writers named above are far shorter.
MAX_FROM_LINE = 1000
# Maximum Content-Length trusted, because the body it covers is kept in
# memory until the check is done.
CONTENT_LENGTH_LIMIT = 64 * 1024 * 1024
# A partial line longer than this is counted without waiting for its end,
# unless its start could still turn out to be a From_ or >From line.
_LONG_LINE = 4096
_BOM = b"\xef\xbb\xbf"
# Bytes the scanner searches: a bytes object, or a bytearray that a reader
# fills again for each window.
_Buffer = bytes | bytearray
_LF = 10
_CR = 13

_ASCTIME = re.compile(
    rb" (?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +"
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +"
    rb"\d{1,2} +\d{1,2}:\d\d(?::\d\d)?"
    rb"(?: +(?:[A-Z]{1,5}|[+-]\d{4}))? +\d{4}(?: +(?:[A-Z]{1,5}|[+-]\d{4}))?"
    rb"[ \t]*\Z"
)
# Every "\nFrom " in a body is a candidate separator. The optional group
# matches the rest of the line when it ends in an asctime-style date (rule 1,
# the same shape as _ASCTIME). So the common From_ line is accepted without
# a Python call per line, and any other candidate goes to _classify.
_CANDIDATE = re.compile(
    rb"\nFrom ((?:[^\n]{0,%d}? )?(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +"
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +"
    rb"\d{1,2} +\d{1,2}:\d\d(?::\d\d)?"
    rb"(?: +(?:[A-Z]{1,5}|[+-]\d{4}))? +\d{4}(?: +(?:[A-Z]{1,5}|[+-]\d{4}))?"
    rb"[ \t]*(?=\n))?" % MAX_FROM_LINE
)
# Trailing blanks are allowed: Thunderbird writes "From - " in some versions.
_SINGLE_TOKEN = re.compile(rb"From [^ \t\r\n]+[ \t]*\Z")
_FIELD_NAME = re.compile(rb"[!-9;-~]*")
_CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*(\d{1,19})[ \t]*\r?\n")
_INTERNAL_DATA = re.compile(
    rb"\n(?:x-imap(?:base)?:|subject: *don't delete this message -- "
    rb"folder internal data)"
)
# Headers that MUAs rewrite in place when a user reads or tags a message.
# They are left out of the UIDL digest, so the UIDL survives such a rewrite.
# One regex search for all names took 0.75 us on a 1 KB header block, and
# one "in" test per name 2.8 us (CPython 3.11.7, timeit on the bench VM).
_VOLATILE_HINT = re.compile(
    rb"\n(?:x-(?:status|keywords|uid|mozilla-status2?)|status|content-length|lines):"
)
# The first empty line after the From_ line (LF or CRLF) or the first header
# that _VOLATILE_HINT looks for, whichever comes first, searched from the
# From_ line's LF. The lookahead rejects most lines with one character test:
# 0.75 us per 700-byte header block against 1.19 us without it (timeit,
# CPython 3.11.7 on the benchmark VM).
_HEADER_END = re.compile(
    rb"\n(?=[\r\nXxSsCcLl])(?:\r?\n|"
    rb"(?i:x-(?:status|keywords|uid|mozilla-status2?)|status|content-length|lines):)"
)
_VOLATILE_HEADER = re.compile(
    rb"(?im)^(?:status|x-status|x-keywords|x-uid|x-mozilla-status2?|"
    rb"content-length|lines):[^\n]*\n(?:[ \t][^\n]*\n)*"
)


class _Phase(enum.IntEnum):
    # IntEnum, not Enum: the driver indexes a tuple by phase once per step,
    # and int hashing and indexing run in C.
    FILE_START = 0
    FROM_LINE = 1
    HEADERS = 2
    CONTENT_LENGTH = 3
    BODY = 4


class _Verdict(enum.Enum):
    YES = "yes"
    NO = "no"
    NEED_DATA = "need data"


@dataclass(slots=True)
class ScanBatch:
    """Messages found by a scan, as columns ready for ``MboxIndex.extend``.

    ``digests`` packs ``UIDL_DIGEST_BYTES`` bytes per message.
    """

    offsets: array[int] = field(default_factory=lambda: array("Q"))
    lengths: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("Q"))
    flags: array[int] = field(default_factory=lambda: array("B"))
    digests: bytearray = field(default_factory=bytearray)

    def __len__(self) -> int:
        return len(self.offsets)


class MboxScanner:
    """Incremental boundary scanner for one mbox.

    Feed the file's bytes in order with ``feed``, then call ``finish`` once;
    ``take`` returns the messages completed so far. ``start_offset`` is the
    file offset of the first byte fed: 0 for a full scan, or the offset of
    a known message start to rescan from there (``at_message_start``).
    ``feed`` and ``finish`` raise ``NotAnMboxError`` when a full scan does
    not start with ``From ``. Not safe for concurrent use.
    """

    def __init__(
        self,
        variant: Variant = Variant.MBOXO,
        start_offset: int = 0,
        at_message_start: bool = False,
        first_in_file: bool = True,
    ) -> None:
        self._variant = variant
        self._buf: _Buffer = b""
        self._base = start_offset  # file offset of self._buf[0]
        self._pos = 0  # next unprocessed byte, relative to self._buf
        # Where the body search resumes: past the headers, which the
        # headers phase already searched.
        self._search = 0
        self._pos_at_line_start = True
        self._phase = _Phase.FROM_LINE if at_message_start else _Phase.FILE_START
        self._done = False
        self._batch = ScanBatch()
        # The message being scanned; offsets are file offsets.
        self._msg_offset = start_offset
        self._from_end = start_offset
        self._body_start = start_offset
        self._first_in_file = first_in_file
        self._content_length: int | None = None
        self._msg_flags = MessageFlag.NONE
        self._digest = b""
        self._lf = 0
        self._crlf = 0
        self._quoted = 0
        self._steps = (
            self._step_file_start,
            self._step_from_line,
            self._step_headers,
            self._step_content_length,
            self._step_body,
        )

    @property
    def bytes_fed(self) -> int:
        """Return the file offset just past the last byte fed."""
        return self._base + len(self._buf)

    def feed(self, chunk: bytes) -> None:
        """Scan the next bytes of the file."""
        if self._done:
            raise ValueError("feed() called after finish()")
        if chunk:
            self._buf = self._buf + chunk if self._buf else bytes(chunk)
            self._run(final=False)
            self._compact()

    @property
    def held_offset(self) -> int:
        """Return the file offset of the oldest byte the scanner keeps."""
        return self._base

    def feed_window(self, window: _Buffer) -> None:
        """Scan bytes that start at ``held_offset`` and go past ``bytes_fed``.

        A reader that can read the file at any offset passes the held bytes
        again as the start of the next window instead of the scanner
        joining them to a new chunk, which saves copying every chunk. The
        scanner keeps a copy of the bytes it holds, not ``window`` itself,
        so the reader can read the next window into the same bytearray.
        Raises ``ValueError`` if the window adds no new bytes.
        """
        if self._done:
            raise ValueError("feed_window() called after finish()")
        if len(window) <= len(self._buf):
            raise ValueError(
                f"window of {len(window)} bytes adds nothing to the "
                f"{len(self._buf)} bytes held"
            )
        self._buf = window
        self._run(final=False)
        self._compact()
        if not isinstance(self._buf, bytes):
            self._buf = bytes(self._buf)

    def finish(self) -> None:
        """Scan to the end of the file; the last message ends here."""
        if self._done:
            return
        self._run(final=True)
        self._done = True

    def take(self) -> ScanBatch:
        """Return the messages completed since the last call and forget them."""
        batch, self._batch = self._batch, ScanBatch()
        return batch

    # Driver and buffer management.

    def _run(self, final: bool) -> None:
        steps = self._steps
        while not self._done and steps[self._phase](final):
            pass

    def _compact(self) -> None:
        if self._phase in (_Phase.FROM_LINE, _Phase.HEADERS):
            hold = self._rel(self._msg_offset)
        elif self._phase is _Phase.CONTENT_LENGTH:
            hold = self._rel(self._from_end)
        else:
            hold = self._pos
        # Keep three bytes before the held part, because rule 2 and the
        # separator check look back to see whether the previous line is empty.
        cut = max(0, min(hold, self._pos) - 3)
        if cut:
            self._buf = self._buf[cut:]
            self._base += cut
            self._pos -= cut
            self._search = max(self._search - cut, 0)

    def _rel(self, offset: int) -> int:
        return offset - self._base

    # Phases. Each returns True when it made progress.

    def _step_file_start(self, final: bool) -> bool:
        buf = self._buf
        # Wait while the bytes so far could still be a BOM and "From ".
        if not final and len(buf) < len(_BOM) + 5:
            if (_BOM + b"From ").startswith(buf) or b"From ".startswith(buf):
                return False
        start = len(_BOM) if buf.startswith(_BOM) else 0
        if len(buf) == start:
            self._done = final
            return False
        if not buf.startswith(b"From ", start):
            raise NotAnMboxError(
                f"the file does not start with a From_ line ('From ' at offset "
                f"{start}), so it is not an mbox"
            )
        self._pos = start
        self._start_message(self._base + start)
        return True

    def _step_from_line(self, final: bool) -> bool:
        start = self._rel(self._msg_offset)
        end = self._buf.find(b"\n", start, start + MAX_FROM_LINE + 2)
        if end < 0:
            if len(self._buf) - start > MAX_FROM_LINE:
                raise NotAnMboxError(
                    f"the line at offset {self._msg_offset} starts a message but "
                    f"is longer than {MAX_FROM_LINE} bytes, so it is not a From_ line"
                )
            if not final:
                return False
            end = len(self._buf) - 1
        self._from_end = self._base + end + 1
        self._pos = end + 1
        self._pos_at_line_start = True
        self._phase = _Phase.HEADERS
        self._step_headers(final)
        return True

    def _step_headers(self, final: bool) -> bool:
        buf = self._buf
        start = self._rel(self._from_end)
        limit = min(len(buf), start + HEADER_LIMIT)
        blank = _find_empty_line(buf, start, limit)
        stop = blank if blank >= 0 else limit
        separator, verdict = self._find_separator(start, stop, final)
        if verdict is _Verdict.NEED_DATA:
            return False
        headers_incomplete = limit - start < HEADER_LIMIT
        if separator < 0 and blank < 0 and headers_incomplete and not final:
            return False
        header_end = separator if separator >= 0 else stop
        self._digest_headers(buf[self._rel(self._msg_offset) : header_end])
        self._pos = start
        self._search = blank if blank >= 0 else start
        self._pos_at_line_start = True
        if separator >= 0:
            self._count(start, separator)
            self._end_message(separator)
            self._start_message(self._base + separator)
            return True
        self._phase = _Phase.BODY
        if blank >= 0:
            self._body_start = self._base + blank + (1 if buf[blank] == _LF else 2)
            if self._content_length is not None:
                self._phase = _Phase.CONTENT_LENGTH
        return True

    def _step_content_length(self, final: bool) -> bool:
        assert self._content_length is not None
        verdict, landing = self._check_content_length(self._content_length, final)
        if verdict is _Verdict.NEED_DATA:
            return False
        self._content_length = None
        if verdict is _Verdict.NO:
            self._phase = _Phase.BODY
            return True
        self._msg_flags |= MessageFlag.CONTENT_LENGTH
        self._count(self._pos, landing)
        self._end_message(landing)
        if landing == len(self._buf):
            self._done = final
            self._phase = _Phase.BODY
            return False
        self._start_message(self._base + landing)
        return True

    def _step_body(self, final: bool) -> bool:
        buf = self._buf
        floor = max(self._search, self._pos - 1, 0)
        # Headers of a message started by _next_dated end here. That call
        # leaves the search for separators inside them to this loop.
        header_end = -1
        for match in _CANDIDATE.finditer(buf, floor):
            hit = match.start()
            if hit < header_end:
                # A "From " line in the headers: the header phase decides.
                self._start_message(self._msg_offset)
                return True
            line = hit + 1
            dated_end = match.end(1)
            if 0 <= dated_end - line <= MAX_FROM_LINE:
                header_end = self._next_dated(line, dated_end + 1)
                if header_end < 0:
                    return True
                continue
            verdict = self._classify(line, final)
            if verdict is _Verdict.NO:
                continue
            self._count(self._pos, line)
            if verdict is _Verdict.NEED_DATA:
                return False
            self._end_message(line)
            self._start_message(self._base + line)
            self._step_from_line(final)
            return True
        if final:
            self._count(self._pos, len(buf))
            self._end_message(len(buf))
            self._done = True
            return False
        self._count(self._pos, self._safe_end())
        return False

    def _next_dated(self, line: int, from_end: int) -> int:
        """End the current message at ``buf[line]`` and start the next there.

        ``buf[line:from_end]`` is a dated From_ line with its LF. This does
        the work of _count, _end_message, _step_from_line and _step_headers
        in one call for the common case: the empty line after the headers
        is in the buffer and no header that _digest_headers looks for comes
        before it. Returns where the headers end; the caller still has to
        look for separators inside them. Otherwise returns -1 and leaves
        the new message in the from-line phase.
        """
        buf = self._buf
        pos = self._pos
        if line > pos:
            self._lf += buf.count(b"\n", pos, line)
            if buf.find(b"\r", pos, line) >= 0:
                self._crlf += buf.count(b"\r\n", pos, line)
            if self._variant is Variant.MBOXRD:
                self._quoted += _count_quoted(buf, pos, line, self._pos_at_line_start)
        self._pos = line
        self._pos_at_line_start = True
        self._end_message(line)
        self._start_message(self._base + line)
        match = _HEADER_END.search(buf, from_end - 1, from_end + HEADER_LIMIT)
        if match is None or match.end() - match.start() > 3:
            return -1
        blank = match.start() + 1
        self._digest = hashlib.blake2b(
            buf[line:blank], digest_size=UIDL_DIGEST_BYTES
        ).digest()
        self._from_end = self._base + from_end
        self._pos = from_end
        self._search = blank
        self._body_start = self._base + match.end()
        self._phase = _Phase.BODY
        return blank

    # Helpers.

    def _safe_end(self) -> int:
        """Return how far the body can be counted before more data comes.

        The partial last line waits for its end when its start could still
        make it a From_ line or a quoted ``>From`` line, or when it ends in
        CR (the LF may be in the next chunk).
        """
        buf = self._buf
        line = buf.rfind(b"\n", self._pos) + 1
        if line == 0:
            line = self._pos
            at_line_start = self._pos_at_line_start
        else:
            at_line_start = True
        tail = len(buf) - line
        if tail == 0:
            return len(buf)
        if at_line_start and tail < _LONG_LINE:
            return line
        if at_line_start and _could_be_quoted_from(buf, line):
            return line
        return len(buf) - 1 if buf[-1] == _CR else len(buf)

    def _count(self, start: int, end: int) -> None:
        """Add the line-end and quoting counts of ``buf[start:end]``."""
        if end <= start:
            return
        buf = self._buf
        self._lf += buf.count(b"\n", start, end)
        if buf.find(b"\r", start, end) >= 0:
            self._crlf += buf.count(b"\r\n", start, end)
        if self._variant is Variant.MBOXRD:
            self._quoted += _count_quoted(buf, start, end, self._pos_at_line_start)
        self._pos = end
        self._pos_at_line_start = buf[end - 1] == _LF

    def _start_message(self, offset: int) -> None:
        self._msg_offset = offset
        self._from_end = offset
        self._body_start = offset
        self._content_length = None
        self._msg_flags = MessageFlag.NONE
        self._digest = b""
        self._lf = self._crlf = self._quoted = 0
        self._phase = _Phase.FROM_LINE

    def _end_message(self, end: int) -> None:
        """Record the current message as ending at ``buf[end]``."""
        from_end = self._from_end - self._base
        size = max(0, end - from_end) + self._lf - self._crlf - self._quoted
        if _ends_with_empty_line(self._buf, from_end, end):
            size -= 2
        batch = self._batch
        offset = self._msg_offset
        batch.offsets.append(offset)
        batch.lengths.append(self._base + end - offset)
        batch.sizes.append(size)
        batch.flags.append(self._msg_flags)
        batch.digests += self._digest or bytes(UIDL_DIGEST_BYTES)
        self._first_in_file = False

    def _digest_headers(self, block: _Buffer) -> None:
        """Hash the From_ line and headers; note Content-Length and marks."""
        lowered = b"\n" + block.lower()
        kept = block
        if _VOLATILE_HINT.search(lowered) is not None:
            kept = _VOLATILE_HEADER.sub(b"", block)
            match = _CONTENT_LENGTH.search(lowered)
            if match is not None and int(match.group(1)) <= CONTENT_LENGTH_LIMIT:
                self._content_length = int(match.group(1))
        self._digest = hashlib.blake2b(kept, digest_size=UIDL_DIGEST_BYTES).digest()
        if self._first_in_file and _INTERNAL_DATA.search(lowered):
            self._msg_flags |= MessageFlag.HIDDEN

    def _find_separator(
        self, start: int, stop: int, final: bool
    ) -> tuple[int, _Verdict]:
        """Return the first From_ line start in ``buf[start:stop]``, or -1."""
        search = max(start - 1, 0)
        while True:
            hit = self._buf.find(b"\nFrom ", search, stop)
            if hit < 0:
                return -1, _Verdict.NO
            verdict = self._classify(hit + 1, final)
            if verdict is not _Verdict.NO:
                return hit + 1, verdict
            search = hit + 1

    def _classify(self, line: int, final: bool) -> _Verdict:
        """Decide whether the ``From `` line at ``buf[line]`` is a From_ line."""
        buf = self._buf
        end = buf.find(b"\n", line, line + MAX_FROM_LINE + 2)
        if end < 0:
            if len(buf) - line > MAX_FROM_LINE:
                return _Verdict.NO
            if not final:
                return _Verdict.NEED_DATA
            return _Verdict.YES if _is_dated(buf[line:]) else _Verdict.NO
        text = buf[line:end]
        if text.endswith(b"\r"):
            text = text[:-1]
        if len(text) > MAX_FROM_LINE:
            return _Verdict.NO
        if _is_dated(text):
            return _Verdict.YES
        if not _SINGLE_TOKEN.match(text) or not _follows_empty_line(buf, line):
            return _Verdict.NO
        return _is_header_line(buf, end + 1, final)

    def _check_content_length(self, length: int, final: bool) -> tuple[_Verdict, int]:
        """Check a Content-Length; return the verdict and the next message start."""
        buf = self._buf
        end = self._rel(self._body_start) + length
        if end > len(buf):
            return (_Verdict.NO if final else _Verdict.NEED_DATA), -1
        if end > self._rel(self._body_start) and buf[end - 1] != _LF:
            return _Verdict.NO, -1
        landing = end
        if buf.startswith(b"\n", end):
            landing = end + 1
        elif buf.startswith(b"\r\n", end):
            landing = end + 2
        elif end + 2 > len(buf) and not final:
            return _Verdict.NEED_DATA, -1
        if landing == len(buf):
            return (_Verdict.YES if final else _Verdict.NEED_DATA), landing
        if not buf.startswith(b"From ", landing):
            if len(buf) - landing < 5 and not final:
                return _Verdict.NEED_DATA, -1
            return _Verdict.NO, -1
        verdict = self._classify_shape(landing, final)
        return verdict, landing

    def _classify_shape(self, line: int, final: bool) -> _Verdict:
        """Like ``_classify`` but without rule 2's empty-line condition."""
        buf = self._buf
        end = buf.find(b"\n", line, line + MAX_FROM_LINE + 2)
        if end < 0:
            if len(buf) - line <= MAX_FROM_LINE and not final:
                return _Verdict.NEED_DATA
            return _Verdict.YES if final and _is_dated(buf[line:]) else _Verdict.NO
        text = buf[line:end].removesuffix(b"\r")
        if _is_dated(text):
            return _Verdict.YES
        if not _SINGLE_TOKEN.match(text):
            return _Verdict.NO
        return _is_header_line(buf, end + 1, final)


def _is_dated(line: _Buffer) -> bool:
    """Return whether a ``From `` line ends in an asctime-style date (rule 1)."""
    if len(line) > MAX_FROM_LINE:
        return False
    return _ASCTIME.search(line.removesuffix(b"\r"), 4) is not None


def is_from_line(line: bytes) -> bool:
    """Return whether ``line`` passes rule 1 of the separator rule on its own.

    Rule 2 depends on the lines around it; ``MboxScanner`` applies it.
    """
    return line.startswith(b"From ") and _is_dated(line.removesuffix(b"\n"))


def _follows_empty_line(buf: _Buffer, line: int) -> bool:
    """Return whether the line before ``buf[line]`` is empty."""
    if line >= 2 and buf[line - 2] == _LF:
        return True
    return line >= 3 and buf[line - 2] == _CR and buf[line - 3] == _LF


def _is_header_line(buf: _Buffer, start: int, final: bool) -> _Verdict:
    """Decide whether ``buf[start:]`` starts with ``Name:`` (RFC 5322 2.2).

    A name longer than ``MAX_FROM_LINE`` bytes is not a header name, whether
    or not a colon follows in the bytes fed so far, so the verdict does not
    depend on how the file was cut into chunks.
    """
    name_end = _FIELD_NAME.match(buf, start, start + MAX_FROM_LINE + 1)
    assert name_end is not None
    end = name_end.end()
    if end - start > MAX_FROM_LINE:
        return _Verdict.NO
    if end == len(buf):
        return _Verdict.NO if final else _Verdict.NEED_DATA
    return _Verdict.YES if buf[end] == ord(":") and end > start else _Verdict.NO


def _find_empty_line(buf: _Buffer, start: int, stop: int) -> int:
    """Return the start of the first empty line in ``buf[start:stop]``, or -1.

    ``buf[start]`` is a line start.
    """
    if start < len(buf) and (buf[start] == _LF or buf.startswith(b"\r\n", start)):
        return start
    lf = buf.find(b"\n\n", start, stop)
    crlf_stop = stop if lf < 0 else lf + 2
    # A CR search runs at memchr speed; most header blocks have none.
    if buf.find(b"\r", start, crlf_stop) < 0:
        return lf + 1 if lf >= 0 else -1
    crlf = buf.find(b"\n\r\n", start, crlf_stop)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 1
    return lf + 1 if lf >= 0 else -1


def _ends_with_empty_line(buf: _Buffer, content_start: int, end: int) -> bool:
    """Return whether the content ``buf[content_start:end]`` ends in an empty line."""
    if end - 1 < content_start or buf[end - 1] != _LF:
        return False
    if end - 1 == content_start or buf[end - 2] == _LF:
        return True
    return buf[end - 2] == _CR and (end - 2 == content_start or buf[end - 3] == _LF)


def _could_be_quoted_from(buf: _Buffer, line: int) -> bool:
    """Return whether a long partial line still might be a ``>+From `` line."""
    run_end = line
    while run_end < len(buf) and buf[run_end] == ord(">"):
        run_end += 1
    rest = buf[run_end : run_end + 5]
    return run_end > line and b"From "[: len(rest)] == rest and len(rest) < 5


def _count_quoted(buf: _Buffer, start: int, end: int, at_line_start: bool) -> int:
    """Count ``>+From `` lines that start in ``buf[start:end]``."""
    count = 0
    hit = buf.find(b">From ", start, end)
    while hit >= 0:
        run = hit
        while run > start and buf[run - 1] == ord(">"):
            run -= 1
        if (run == start and at_line_start) or (run > start and buf[run - 1] == _LF):
            count += 1
        hit = buf.find(b">From ", hit + 6, end)
    return count


def scan_bytes(
    data: bytes, variant: Variant = Variant.MBOXO, chunk_size: int = 0
) -> ScanBatch:
    """Scan a whole mbox held in memory; ``chunk_size`` > 0 feeds it in pieces.

    Raises ``NotAnMboxError`` when the data does not start with ``From ``.
    """
    scanner = MboxScanner(variant)
    step = chunk_size or max(len(data), 1)
    for start in range(0, len(data), step):
        scanner.feed(data[start : start + step])
    scanner.finish()
    return scanner.take()


class MessageReader:
    """Turn the stored bytes of one message into the octets POP3 sends.

    Feed the bytes from the message's offset for its length, in chunks of
    any size; ``feed`` and ``finish`` return output bytes. The From_ line is
    dropped, LF line ends become CRLF (CRLF and lone CR stay as they are),
    mboxrd ``>+From `` lines lose one ``>``, and the empty separator line at
    the end is dropped. The total output length equals the size
    ``MboxScanner`` records. A last line without a line end stays without
    one, so the POP3 layer adds CRLF before its terminating dot.
    Byte-stuffing (RFC 1939 section 3) is the POP3 layer's job.
    """

    def __init__(self, variant: Variant = Variant.MBOXO) -> None:
        self._variant = variant
        self._in_from_line = True
        self._pending = b""
        self._at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        """Return the output for as much of the input as can be decided."""
        data = self._pending + chunk
        if self._in_from_line:
            end = data.find(b"\n")
            if end < 0:
                self._pending = b""
                return b""
            self._in_from_line = False
            data = data[end + 1 :]
        cut = data.rfind(b"\n") + 1
        if cut == len(data):
            # The last line is complete; if it is empty it may be the
            # separator, which only the end of the message can tell.
            cut -= self._empty_line_before(data, cut)
        elif len(data) - cut >= _LONG_LINE and not self._is_ambiguous(data, cut):
            cut = len(data) - (1 if data.endswith(b"\r") else 0)
        self._pending = data[cut:]
        return self._convert(data[:cut])

    def finish(self) -> bytes:
        """Return the rest of the output once the whole message was fed."""
        data = self._pending
        self._pending = b""
        if self._in_from_line:
            return b""
        data = data[: len(data) - self._empty_line_before(data, len(data))]
        return self._convert(data)

    def _empty_line_before(self, data: bytes, cut: int) -> int:
        """Return the length of the empty line ending at ``data[cut - 1]``, or 0."""
        if cut == 0 or data[cut - 1] != _LF:
            return 0
        if cut == 1:
            return 1 if self._at_line_start else 0
        if data[cut - 2] == _LF:
            return 1
        if data[cut - 2] != _CR:
            return 0
        if cut == 2:
            return 2 if self._at_line_start else 0
        return 2 if data[cut - 3] == _LF else 0

    def _is_ambiguous(self, data: bytes, cut: int) -> bool:
        """Return whether a long partial line might still be ``>+From ``."""
        at_line_start = cut > 0 or self._at_line_start
        return at_line_start and _could_be_quoted_from(data, cut)

    def _convert(self, text: bytes) -> bytes:
        if not text:
            return b""
        if self._variant is Variant.MBOXRD:
            text = _unquote(text, self._at_line_start)
        self._at_line_start = text.endswith(b"\n")
        return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


_QUOTED_FROM = re.compile(rb"(?m)^>(>*From )")


def _unquote(text: bytes, at_line_start: bool) -> bytes:
    if at_line_start:
        return _QUOTED_FROM.sub(rb"\1", text)
    first = text.find(b"\n") + 1
    if first == 0:
        return text
    return text[:first] + _QUOTED_FROM.sub(rb"\1", text[first:])


def read_message(
    chunks: Iterable[bytes], variant: Variant = Variant.MBOXO
) -> Iterator[bytes]:
    """Yield the POP3 octets of one message from its stored bytes.

    ``chunks`` are the bytes from the message's offset for its recorded
    length. See ``MessageReader`` for the transformation.
    """
    reader = MessageReader(variant)
    for chunk in chunks:
        out = reader.feed(chunk)
        if out:
            yield out
    out = reader.finish()
    if out:
        yield out
