"""The view of a maildrop the POP3 state machine needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Maildrop"]


class Maildrop(Protocol):
    """A snapshot of one user's messages, numbered from 1 (RFC 1939 msgno).

    Hidden messages (the IMAP internal-data pseudo-message) are not
    counted and have no msgno. The snapshot does not change during a
    session: mail delivered meanwhile is not shown. Message contents are
    streamed by the I/O layer, not by the state machine.
    """

    def count(self) -> int:
        """Return the number of messages in the snapshot."""
        ...

    def size(self, msgno: int) -> int:
        """Return the octets RETR sends for ``msgno``, before byte-stuffing."""
        ...

    def uidl(self, msgno: int) -> str:
        """Return the unique-id of ``msgno``: 1 to 70 characters 0x21-0x7E."""
        ...

    def all_sizes(self) -> Sequence[int]:
        """Return every message's size; item 0 is msgno 1."""
        ...

    def all_uidls(self) -> Sequence[str]:
        """Return every message's unique-id; item 0 is msgno 1."""
        ...
