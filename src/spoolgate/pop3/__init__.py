"""POP3: the sans-IO state machine and the helpers that encode its output.

The I/O layer creates a ``POP3Session``, feeds it received octets, and acts
on the events it returns; see ``spoolgate.pop3.protocol`` for the states.
"""

from spoolgate.pop3.events import (
    AuthFailure,
    AuthRequest,
    Close,
    CloseReason,
    Event,
    Expunge,
    MaildropFailure,
    OpenMaildrop,
    Pending,
    Reply,
    SendMessage,
    StartTLS,
)
from spoolgate.pop3.maildrop import Maildrop
from spoolgate.pop3.protocol import POP3Session, ProtocolConfig, State
from spoolgate.pop3.sasl import PlainResponse, SASLError, decode_plain
from spoolgate.pop3.stuffing import ByteStuffer, MessageEncoder, TopLimiter

__all__ = [
    "AuthFailure",
    "AuthRequest",
    "ByteStuffer",
    "Close",
    "CloseReason",
    "Event",
    "Expunge",
    "Maildrop",
    "MaildropFailure",
    "MessageEncoder",
    "OpenMaildrop",
    "POP3Session",
    "Pending",
    "PlainResponse",
    "ProtocolConfig",
    "Reply",
    "SASLError",
    "SendMessage",
    "StartTLS",
    "State",
    "TopLimiter",
    "decode_plain",
]
