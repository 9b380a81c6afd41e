"""Events the POP3 state machine returns, and the answers its caller gives.

Each event is an order for the I/O layer: send octets, check a login,
open a maildrop, start TLS, stream a message, expunge, close. Events that
need an answer (``AuthRequest``, ``OpenMaildrop``, ``StartTLS``,
``Expunge``) pause the session until the matching method of
``POP3Session`` is called.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "AuthFailure",
    "AuthRequest",
    "Close",
    "CloseReason",
    "Event",
    "Expunge",
    "MaildropFailure",
    "OpenMaildrop",
    "Pending",
    "Reply",
    "SendMessage",
    "StartTLS",
]


class Pending(enum.Enum):
    """Reason ``next_event`` returned no event."""

    NEED_DATA = "need data"
    """Feed more octets with ``receive_data``."""
    PAUSED = "paused"
    """Resolve the last AuthRequest, OpenMaildrop, StartTLS or Expunge first."""
    CLOSED = "closed"
    """The session ended; close the connection."""


class AuthFailure(enum.Enum):
    """Cause of a failed login; it selects the RFC 2449/3206 response code."""

    CREDENTIALS = "AUTH"
    """Wrong user name or password; counts towards the failure limit."""
    LOGIN_DELAY = "LOGIN-DELAY"
    """The user logged in again sooner than LOGIN-DELAY allows."""
    TEMPORARY = "SYS/TEMP"
    """The backend failed; the client may try again later."""


class MaildropFailure(enum.Enum):
    """Cause of a failed maildrop open after a successful login."""

    IN_USE = "IN-USE"
    """Another session has the maildrop open (RFC 2449 section 8.1.1)."""
    TEMPORARY = "SYS/TEMP"
    """A lock timed out or a read failed; trying later may work."""
    PERMANENT = "SYS/PERM"
    """The maildrop is unusable until an administrator acts."""


class CloseReason(enum.Enum):
    """Cause of the end of a session."""

    QUIT = "quit"
    EOF = "eof"
    TOO_MANY_BAD_COMMANDS = "too many bad commands"
    TOO_MANY_AUTH_FAILURES = "too many authentication failures"


@dataclass(frozen=True, slots=True)
class Reply:
    """Octets to send: one or more complete POP3 response lines."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """Check a password, then call ``auth_succeeded`` or ``auth_failed``.

    ``mechanism`` is ``USER`` for USER/PASS or the SASL mechanism name.
    The password never shows in ``repr``, so logging the event is safe.
    """

    user: str
    password: str = field(repr=False)
    mechanism: str


@dataclass(frozen=True, slots=True)
class OpenMaildrop:
    """Lock and read the user's maildrop, then pass its snapshot back."""

    user: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Run the TLS handshake now, then call ``tls_started``.

    Input received before this event was discarded (RFC 2595 section 4),
    so commands a man in the middle pipelined behind STLS never run. The
    caller must also drop octets it has read but not yet fed.
    """


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Stream message ``msgno`` through a ``MessageEncoder(body_lines)``.

    The ``+OK`` line was sent in the Reply before this event. ``body_lines``
    is None for RETR and the TOP line count for TOP.
    """

    msgno: int
    body_lines: int | None


@dataclass(frozen=True, slots=True)
class Expunge:
    """Remove these messages, then call ``expunge_done`` or ``expunge_failed``."""

    msgnos: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection after sending every earlier Reply."""

    reason: CloseReason


Event = Reply | AuthRequest | OpenMaildrop | StartTLS | SendMessage | Expunge | Close
