"""Encode a message as a POP3 multi-line response body, chunk by chunk.

The I/O layer streams a message in chunks of any size, so a line can be
split anywhere, including between a line feed and a '.' that starts the
next line. ``ByteStuffer`` keeps one bit of state across chunks for that
case. ``TopLimiter`` cuts a message after its header and ``n`` body lines
for TOP (RFC 1939 section 7). ``MessageEncoder`` chains both and adds the
terminating ``.CRLF``.

Input must already be in POP3 form: CRLF line ends and no mbox quoting.
A line is any run of octets ended by LF, so a bare CR never ends a line.
"""

from __future__ import annotations

__all__ = ["ByteStuffer", "MessageEncoder", "TopLimiter"]

TERMINATOR = b".\r\n"


class ByteStuffer:
    """Double every '.' that starts a line (RFC 1939 section 3).

    Tracks whether the next octet starts a line, so a '.' at the start of
    a chunk is stuffed only when the previous chunk ended with LF.
    """

    __slots__ = ("_at_line_start",)

    def __init__(self) -> None:
        self._at_line_start = True

    @property
    def at_line_start(self) -> bool:
        """True if the next octet fed starts a line."""
        return self._at_line_start

    def feed(self, chunk: bytes) -> bytes:
        """Return ``chunk`` byte-stuffed."""
        if not chunk:
            return b""
        stuffed = chunk.replace(b"\n.", b"\n..")
        if self._at_line_start and chunk[0] == 0x2E:
            stuffed = b"." + stuffed
        self._at_line_start = chunk[-1] == 0x0A
        return stuffed


class TopLimiter:
    """Pass the header, the empty line after it and ``body_lines`` lines.

    A message without an empty line is all header and passes whole.
    """

    __slots__ = ("_blank_prefix", "_done", "_in_header", "_remaining")

    def __init__(self, body_lines: int) -> None:
        if body_lines < 0:
            raise ValueError(f"body_lines must be >= 0, got {body_lines}")
        self._remaining = body_lines
        self._in_header = True
        self._done = False
        # The current line so far while it could still be empty: b"" or
        # b"\r". None once the line has any other octet.
        self._blank_prefix: bytes | None = b""

    @property
    def done(self) -> bool:
        """True once the limit is reached; later chunks are dropped whole."""
        return self._done

    def feed(self, chunk: bytes) -> bytes:
        """Return the part of ``chunk`` that falls within the limit."""
        pos = 0
        while pos < len(chunk) and not self._done:
            newline = chunk.find(b"\n", pos)
            if newline == -1:
                self._note_partial(chunk[pos:])
                return chunk
            self._end_line(chunk[pos : newline + 1])
            pos = newline + 1
        return chunk[:pos]

    def _note_partial(self, tail: bytes) -> None:
        if self._blank_prefix is not None:
            prefix = self._blank_prefix + tail
            self._blank_prefix = prefix if prefix in (b"", b"\r") else None

    def _end_line(self, segment: bytes) -> None:
        blank = self._blank_prefix is not None and (self._blank_prefix + segment) in (
            b"\n",
            b"\r\n",
        )
        self._blank_prefix = b""
        if self._in_header:
            if blank:
                self._in_header = False
                self._done = self._remaining == 0
            return
        self._remaining -= 1
        self._done = self._remaining == 0


class MessageEncoder:
    """Byte-stuff a message, optionally cut for TOP, and terminate it.

    Feed chunks with ``feed`` and send what it returns; when the message
    ends or ``done`` turns true, send ``finish()``. The result is a valid
    multi-line body: every line ends in CRLF and the last line is ``.``.
    """

    __slots__ = ("_limiter", "_stuffer")

    def __init__(self, body_lines: int | None = None) -> None:
        self._stuffer = ByteStuffer()
        self._limiter = None if body_lines is None else TopLimiter(body_lines)

    @property
    def done(self) -> bool:
        """True when TOP's limit is reached and further chunks are not needed."""
        return self._limiter is not None and self._limiter.done

    def feed(self, chunk: bytes) -> bytes:
        """Return the wire form of ``chunk``."""
        if self._limiter is not None:
            chunk = self._limiter.feed(chunk)
        return self._stuffer.feed(chunk)

    def finish(self) -> bytes:
        """Return the octets that end the response: a CRLF if needed, then ``.``."""
        if self._stuffer.at_line_start:
            return TERMINATOR
        return b"\r\n" + TERMINATOR
