"""Decode SASL PLAIN responses (RFC 4616) as POP3 AUTH carries them (RFC 5034)."""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

from spoolgate.errors import POP3ProtocolError

__all__ = ["PlainResponse", "SASLError", "decode_plain"]

# RFC 4616 section 2 allows up to 255 octets for each of the three fields.
MAX_FIELD_OCTETS = 255


class SASLError(POP3ProtocolError):
    """A SASL response is not valid base64 or not a valid PLAIN message."""


@dataclass(frozen=True, slots=True)
class PlainResponse:
    """The decoded PLAIN message; ``password`` is hidden from ``repr``."""

    authzid: str
    authcid: str
    password: str = field(repr=False)


def decode_plain(line: bytes) -> PlainResponse:
    """Decode a base64 PLAIN response; ``=`` is the empty response.

    Raises SASLError without quoting the input, which contains a password.
    """
    raw = _decode_base64(line)
    parts = raw.split(b"\0")
    if len(parts) != 3:
        raise SASLError(
            f"PLAIN response has {len(parts) - 1} NUL separators, expected 2"
        )
    authzid, authcid, password = parts
    if not authcid or not password:
        raise SASLError("PLAIN response has an empty user name or password")
    if any(len(part) > MAX_FIELD_OCTETS for part in parts):
        raise SASLError(f"PLAIN response field exceeds {MAX_FIELD_OCTETS} octets")
    try:
        return PlainResponse(
            authzid.decode("utf-8"),
            authcid.decode("utf-8"),
            password.decode("utf-8"),
        )
    except UnicodeDecodeError as exc:
        raise SASLError("PLAIN response is not valid UTF-8") from exc


def _decode_base64(line: bytes) -> bytes:
    if line == b"=":
        return b""
    try:
        return binascii.a2b_base64(line, strict_mode=True)
    except binascii.Error as exc:
        raise SASLError("SASL response is not valid base64") from exc
