"""The sans-IO POP3 server state machine: octets in, events out.

Theory of operation. The caller feeds received octets with
``receive_data`` and drains ``next_event`` until it returns a ``Pending``
value. Commands are handled one line at a time, in order, so pipelined
commands (RFC 2449 section 6.6) get their replies in order. Events that
need an outside answer pause the session; while paused, input stays
buffered and unread. The states are:

    AUTHORIZATION --USER/PASS, AUTH--> AWAIT_AUTH --ok--> AWAIT_MAILDROP
    AWAIT_MAILDROP --opened--> TRANSACTION --QUIT--> AWAIT_EXPUNGE --> CLOSED
    AUTHORIZATION --AUTH PLAIN (no initial response)--> SASL_RESPONSE
    AUTHORIZATION --STLS--> AWAIT_TLS --tls_started--> AUTHORIZATION

Rules this module keeps: every reply is one or more complete lines that
start with ``+OK``, ``-ERR`` or ``+ `` (SASL continuation) or are
multi-line bodies ending in ``.CRLF``; no peer octets are echoed back;
a login failure looks the same whatever its cause (RFC 2449 section 8.1.2
codes only); plaintext logins are rejected before TLS unless configured;
deletions take effect only through QUIT (RFC 1939 section 6). The module
knows nothing about mbox files, sockets or clocks.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spoolgate.errors import ConfigError, POP3ProtocolError, POP3StateError
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
from spoolgate.pop3.sasl import SASLError, decode_plain

__all__ = ["POP3Session", "ProtocolConfig", "State"]

# RFC 2449 section 4: a command line is at most 255 octets including CRLF.
COMMAND_LINE_OCTETS = 255
# RFC 1939 section 7: a unique-id is 1 to 70 characters in 0x21-0x7E.
UIDL_MAX_CHARS = 70
# A longer user name is rejected before it reaches a backend.
USER_MAX_OCTETS = 255


class State(enum.Enum):
    """Session state; the module docstring shows the transitions."""

    AUTHORIZATION = "authorization"
    SASL_RESPONSE = "sasl response"
    AWAIT_AUTH = "await auth"
    AWAIT_MAILDROP = "await maildrop"
    AWAIT_TLS = "await tls"
    TRANSACTION = "transaction"
    AWAIT_EXPUNGE = "await expunge"
    CLOSED = "closed"


PAUSED_STATES = frozenset(
    {State.AWAIT_AUTH, State.AWAIT_MAILDROP, State.AWAIT_TLS, State.AWAIT_EXPUNGE}
)


class _Overflow(enum.Enum):
    LINE_TOO_LONG = "line too long"


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """Settings of the state machine; the server builds it from its config.

    ``login_delay_s`` is only advertised (RFC 2449 section 6.5); the I/O
    layer enforces it and answers ``AuthFailure.LOGIN_DELAY``.
    """

    tls_available: bool = False
    allow_plaintext_auth: bool = False
    implementation: str = "spoolgate"
    login_delay_s: int | None = None
    max_bad_commands: int = 10
    max_auth_failures: int = 3
    # A base64 PLAIN response with three 255-octet fields takes 1024
    # octets, so SASL lines get more room than RFC 2449's 255.
    max_sasl_line_octets: int = 4096
    max_buffered_octets: int = 1 << 20

    def __post_init__(self) -> None:
        text = self.implementation
        if not text or not text.isascii() or not text.isprintable():
            raise ConfigError(
                f"pop3 implementation = {text!r}: must be printable ASCII text"
            )
        if self.login_delay_s is not None and self.login_delay_s < 0:
            raise ConfigError(
                f"pop3 login_delay_s = {self.login_delay_s}: must be >= 0"
            )
        if self.max_bad_commands < 1 or self.max_auth_failures < 1:
            raise ConfigError(
                "pop3 max_bad_commands and max_auth_failures must be >= 1"
            )
        if self.max_sasl_line_octets < COMMAND_LINE_OCTETS:
            raise ConfigError(
                f"pop3 max_sasl_line_octets = {self.max_sasl_line_octets}: "
                f"must be >= {COMMAND_LINE_OCTETS}"
            )


Handler = Callable[["POP3Session", list[bytes], bytes], None]


class POP3Session:
    """One POP3 server session, from greeting to close.

    Not safe for concurrent use; one task drives one session. Methods that
    answer a paused event raise POP3StateError when called in another
    state, since that is a bug in the caller.
    """

    def __init__(self, config: ProtocolConfig, *, tls_active: bool = False) -> None:
        self._config = config
        self._tls_active = tls_active
        self._state = State.AUTHORIZATION
        self._buffer = bytearray()
        self._discarding = False
        self._eof = False
        self._lines_received = 0
        self._events: deque[Event] = deque()
        self._bad_commands = 0
        self._auth_failures = 0
        self._pending_user: str | None = None
        self._user: str | None = None
        self._maildrop: Maildrop | None = None
        self._count = 0
        self._sizes: Sequence[int] = ()
        self._uidls: Sequence[str] | None = None
        self._total_octets = 0
        self._deleted: set[int] = set()
        self._deletion_changes = 0
        self._reply(b"+OK spoolgate POP3 server ready")

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def user(self) -> str | None:
        """The logged-in user, once the maildrop is open."""
        return self._user

    @property
    def lines_received(self) -> int:
        """How many complete lines (commands, SASL responses) were taken so far.

        The I/O layer restarts its idle timer when this grows: RFC 1939's
        autologout timer is about commands, not single octets.
        """
        return self._lines_received

    @property
    def deletion_changes(self) -> int:
        """How many DELE and RSET commands were carried out so far.

        The I/O layer drops a message it read ahead when this changes.
        """
        return self._deletion_changes

    @property
    def tls_active(self) -> bool:
        """True if the connection is encrypted (POP3S or after STLS)."""
        return self._tls_active

    # Input and output.

    def receive_data(self, data: bytes) -> None:
        """Buffer received octets; ``b""`` means the peer closed its side.

        Raises POP3ProtocolError if the peer sent more than
        ``max_buffered_octets`` without waiting for replies, and
        POP3StateError during the TLS handshake, when plaintext input
        must not be read.
        """
        if self._state is State.AWAIT_TLS and data:
            raise POP3StateError("receive_data called before tls_started")
        if not data:
            self._eof = True
            return
        if len(self._buffer) + len(data) > self._config.max_buffered_octets:
            raise POP3ProtocolError(
                f"peer sent more than {self._config.max_buffered_octets} octets "
                "without reading replies"
            )
        self._buffer += data

    def next_event(self) -> Event | Pending:
        """Return the next event, or why there is none yet."""
        while not self._events:
            if self._state in PAUSED_STATES:
                return Pending.PAUSED
            if self._state is State.CLOSED:
                return Pending.CLOSED
            line = self._next_line()
            if line is None:
                if not self._eof:
                    return Pending.NEED_DATA
                self._close(CloseReason.EOF)
            elif line is _Overflow.LINE_TOO_LONG:
                self._line_too_long()
            elif self._state is State.SASL_RESPONSE:
                self._sasl_response(line)
            else:
                self._command(line)
        return self._events.popleft()

    def _line_limit(self) -> int:
        if self._state in (State.AUTHORIZATION, State.SASL_RESPONSE):
            return self._config.max_sasl_line_octets
        return COMMAND_LINE_OCTETS

    def _next_line(self) -> bytes | _Overflow | None:
        limit = self._line_limit()
        while self._discarding:
            newline = self._buffer.find(b"\n")
            if newline == -1:
                self._buffer.clear()
                return None
            del self._buffer[: newline + 1]
            self._discarding = False
        newline = self._buffer.find(b"\n")
        if newline == -1:
            if len(self._buffer) >= limit:
                self._buffer.clear()
                self._discarding = True
                return _Overflow.LINE_TOO_LONG
            return None
        line = bytes(self._buffer[:newline])
        del self._buffer[: newline + 1]
        self._lines_received += 1
        if newline + 1 > limit:
            return _Overflow.LINE_TOO_LONG
        return line[:-1] if line.endswith(b"\r") else line

    # Replies.

    def _reply(self, line: bytes) -> None:
        self._events.append(Reply(line + b"\r\n"))

    def _ok(self, text: str) -> None:
        self._reply(f"+OK {text}".rstrip().encode("ascii"))

    def _err(self, text: str, code: str | None = None) -> None:
        prefix = f"-ERR [{code}] " if code else "-ERR "
        self._reply((prefix + text).encode("ascii"))

    def _multiline(self, first: str, lines: list[str]) -> None:
        self._multiline_body(first, "".join(f"{line}\r\n" for line in lines))

    def _multiline_body(self, first: str, body: str) -> None:
        data = f"+OK {first}\r\n{body}.\r\n".encode("ascii")
        self._events.append(Reply(data))

    def _close(self, reason: CloseReason) -> None:
        self._events.append(Close(reason))
        self._state = State.CLOSED
        self._buffer.clear()

    def _bad_command(self, text: str) -> None:
        self._bad_commands += 1
        if self._bad_commands >= self._config.max_bad_commands:
            self._err("too many bad commands, closing connection")
            self._close(CloseReason.TOO_MANY_BAD_COMMANDS)
        else:
            self._err(text)

    def _line_too_long(self) -> None:
        if self._state is State.SASL_RESPONSE:
            self._state = State.AUTHORIZATION
        self._bad_command(f"line too long (max {self._line_limit()} octets)")

    # Command dispatch.

    def _command(self, line: bytes) -> None:
        if any(octet < 0x20 or octet == 0x7F for octet in line):
            self._bad_command("control characters in command line")
            return
        verb, _, rest = line.partition(b" ")
        # The length check comes first so every non-SASL line over the
        # limit gets the same reply, whatever its verb or the state.
        if verb.upper() != b"AUTH" and len(line) + 2 > COMMAND_LINE_OCTETS:
            self._bad_command(f"line too long (max {COMMAND_LINE_OCTETS} octets)")
            return
        entry = _COMMANDS.get(verb.upper())
        if entry is None:
            self._bad_command("unknown command")
            return
        handler, states = entry
        if self._state not in states:
            self._bad_command("command not valid in this state")
            return
        handler(self, rest.split(), rest)

    def _capa(self, args: list[bytes], rest: bytes) -> None:
        if args:
            self._bad_command("CAPA takes no arguments")
            return
        self._multiline("capability list follows", self._capabilities())

    def _capabilities(self) -> list[str]:
        capabilities = ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "TOP", "UIDL"]
        if self._state is State.AUTHORIZATION and self._plaintext_allowed():
            capabilities += ["USER", "SASL PLAIN"]
        if self._config.tls_available and not self._tls_active:
            capabilities.append("STLS")
        if self._config.login_delay_s is not None:
            capabilities.append(f"LOGIN-DELAY {self._config.login_delay_s}")
        capabilities.append(f"IMPLEMENTATION {self._config.implementation}")
        return capabilities

    def _quit(self, args: list[bytes], rest: bytes) -> None:
        if self._state is State.TRANSACTION and self._deleted:
            self._events.append(Expunge(tuple(sorted(self._deleted))))
            self._state = State.AWAIT_EXPUNGE
            return
        self._ok("spoolgate POP3 server signing off")
        self._close(CloseReason.QUIT)

    # AUTHORIZATION state (RFC 1939 section 4, RFC 5034, RFC 2595).

    def _plaintext_allowed(self) -> bool:
        return self._tls_active or self._config.allow_plaintext_auth

    def _reject_plaintext(self) -> bool:
        if self._plaintext_allowed():
            return False
        self._err("plaintext authentication is disabled before STLS", "AUTH")
        return True

    def _user_command(self, args: list[bytes], rest: bytes) -> None:
        self._pending_user = None
        if len(args) != 1:
            self._bad_command("USER takes one argument: the user name")
            return
        if self._reject_plaintext():
            return
        name = _decode_user(args[0])
        if name is None:
            self._err("invalid user name", "AUTH")
            return
        self._pending_user = name
        self._ok("send PASS")

    def _pass_command(self, args: list[bytes], rest: bytes) -> None:
        user, self._pending_user = self._pending_user, None
        if user is None:
            self._bad_command("PASS must follow a successful USER")
            return
        if not rest:
            self._bad_command("PASS takes one argument: the password")
            return
        # RFC 1939 section 7: the password is the rest of the line, spaces
        # included. surrogateescape keeps non-UTF-8 octets for the backend.
        password = rest.decode("utf-8", "surrogateescape")
        self._request_auth(user, password, "USER")

    def _auth_command(self, args: list[bytes], rest: bytes) -> None:
        self._pending_user = None
        if not args:
            mechanisms = ["PLAIN"] if self._plaintext_allowed() else []
            self._multiline("SASL mechanisms follow", mechanisms)
            return
        if len(args) > 2:
            self._bad_command("AUTH takes a mechanism and an initial response")
            return
        if args[0].upper() != b"PLAIN":
            self._err("unsupported SASL mechanism; CAPA lists the supported ones")
            return
        if self._reject_plaintext():
            return
        if len(args) == 2:
            self._plain_response(args[1])
            return
        self._reply(b"+ ")
        self._state = State.SASL_RESPONSE

    def _sasl_response(self, line: bytes) -> None:
        self._state = State.AUTHORIZATION
        if line == b"*":
            self._err("authentication cancelled")
            return
        self._plain_response(line)

    def _plain_response(self, response: bytes) -> None:
        try:
            plain = decode_plain(response)
        except SASLError as exc:
            self._bad_command(str(exc))
            return
        name = _decode_user(plain.authcid.encode("utf-8"))
        if name is None or plain.authzid not in ("", plain.authcid):
            # Acting as another user (a different authzid) is not supported.
            self._count_auth_failure(AuthFailure.CREDENTIALS)
            return
        self._request_auth(name, plain.password, "PLAIN")

    def _request_auth(self, user: str, password: str, mechanism: str) -> None:
        self._events.append(AuthRequest(user, password, mechanism))
        self._pending_user = user
        self._state = State.AWAIT_AUTH

    def _stls(self, args: list[bytes], rest: bytes) -> None:
        if args:
            self._bad_command("STLS takes no arguments")
            return
        if self._tls_active or not self._config.tls_available:
            self._bad_command("STLS is not available on this connection")
            return
        self._pending_user = None
        self._ok("begin TLS negotiation")
        # RFC 2595 section 4: input sent before the handshake is dropped.
        self._buffer.clear()
        self._events.append(StartTLS())
        self._state = State.AWAIT_TLS

    # Answers from the I/O layer.

    def _expect(self, state: State, method: str) -> None:
        if self._state is not state:
            raise POP3StateError(
                f"{method} called in state {self._state.value}, expected {state.value}"
            )

    def tls_started(self) -> None:
        """Record that the TLS handshake after StartTLS succeeded."""
        self._expect(State.AWAIT_TLS, "tls_started")
        self._tls_active = True
        self._state = State.AUTHORIZATION

    def auth_succeeded(self, user: str | None = None) -> None:
        """Accept the login of the last AuthRequest; emits OpenMaildrop.

        ``user`` is the name the backend returned, when it differs from
        the one the client typed (a PAM module may map names); by default
        the typed name is used.
        """
        self._expect(State.AWAIT_AUTH, "auth_succeeded")
        if user is not None:
            self._pending_user = user
        assert self._pending_user is not None, "AWAIT_AUTH has a pending user"
        self._events.append(OpenMaildrop(self._pending_user))
        self._state = State.AWAIT_MAILDROP

    def auth_failed(self, reason: AuthFailure = AuthFailure.CREDENTIALS) -> None:
        """Reject the last AuthRequest; the reply shows only ``reason``'s code."""
        self._expect(State.AWAIT_AUTH, "auth_failed")
        self._pending_user = None
        self._state = State.AUTHORIZATION
        self._count_auth_failure(reason)

    def _count_auth_failure(self, reason: AuthFailure) -> None:
        texts = {
            AuthFailure.CREDENTIALS: "authentication failed",
            AuthFailure.LOGIN_DELAY: "minimum time between logins not reached",
            AuthFailure.TEMPORARY: "authentication unavailable, try again later",
        }
        self._err(texts[reason], reason.value)
        if reason is not AuthFailure.CREDENTIALS:
            return
        self._auth_failures += 1
        if self._auth_failures >= self._config.max_auth_failures:
            self._close(CloseReason.TOO_MANY_AUTH_FAILURES)

    def maildrop_opened(self, maildrop: Maildrop) -> None:
        """Enter TRANSACTION on ``maildrop``'s snapshot.

        Raises POP3StateError if the maildrop reports a negative count or
        size, since those cannot be sent.
        """
        self._expect(State.AWAIT_MAILDROP, "maildrop_opened")
        count = maildrop.count()
        sizes = maildrop.all_sizes()
        if count < 0 or len(sizes) != count or min(sizes, default=0) < 0:
            raise POP3StateError(
                "maildrop reported a negative message count or size, or "
                f"{len(sizes)} sizes for {count} messages"
            )
        self._maildrop, self._count, self._sizes = maildrop, count, sizes
        self._total_octets = sum(sizes)
        self._user, self._pending_user = self._pending_user, None
        self._state = State.TRANSACTION
        self._ok(f"maildrop has {count} messages ({self._total_octets} octets)")

    def maildrop_failed(self, reason: MaildropFailure) -> None:
        """Report that the maildrop could not be opened; back to AUTHORIZATION."""
        self._expect(State.AWAIT_MAILDROP, "maildrop_failed")
        texts = {
            MaildropFailure.IN_USE: "maildrop is locked by another session",
            MaildropFailure.TEMPORARY: "cannot open maildrop, try again later",
            MaildropFailure.PERMANENT: "cannot open maildrop",
        }
        self._pending_user = None
        self._state = State.AUTHORIZATION
        self._err(texts[reason], reason.value)

    def expunge_done(self) -> None:
        """Report that QUIT's deletions were carried out; ends the session."""
        self._expect(State.AWAIT_EXPUNGE, "expunge_done")
        self._ok(f"spoolgate POP3 server signing off ({len(self._deleted)} deleted)")
        self._close(CloseReason.QUIT)

    def expunge_failed(self) -> None:
        """Report that QUIT's deletions failed (RFC 1939 section 6); ends it."""
        self._expect(State.AWAIT_EXPUNGE, "expunge_failed")
        self._err("some deleted messages not removed", "SYS/TEMP")
        self._close(CloseReason.QUIT)

    # TRANSACTION state (RFC 1939 sections 5 and 7).

    def _msgno(self, arg: bytes) -> int | None:
        number = int(arg) if arg.isdigit() and len(arg) <= 10 else 0
        if not 1 <= number <= self._count:
            self._err("no such message")
            return None
        if number in self._deleted:
            self._err(f"message {number} already deleted")
            return None
        return number

    def _stat(self, args: list[bytes], rest: bytes) -> None:
        if args:
            self._bad_command("STAT takes no arguments")
            return
        count, octets = self._totals()
        self._ok(f"{count} {octets}")

    def _totals(self) -> tuple[int, int]:
        deleted_octets = sum(self._sizes[n - 1] for n in self._deleted)
        octets = self._total_octets - deleted_octets
        return self._count - len(self._deleted), octets

    def _undeleted(self) -> list[int]:
        return [n for n in range(1, self._count + 1) if n not in self._deleted]

    def _list(self, args: list[bytes], rest: bytes) -> None:
        if len(args) > 1:
            self._bad_command("LIST takes at most one argument")
        elif args:
            msgno = self._msgno(args[0])
            if msgno is not None:
                self._ok(f"{msgno} {self._sizes[msgno - 1]}")
        else:
            count, octets = self._totals()
            body = self._numbered_lines(self._sizes)
            self._multiline_body(f"{count} messages ({octets} octets)", body)

    def _uidl(self, args: list[bytes], rest: bytes) -> None:
        if len(args) > 1:
            self._bad_command("UIDL takes at most one argument")
        elif args:
            msgno = self._msgno(args[0])
            if msgno is not None:
                self._ok(f"{msgno} {self._checked_uidl(msgno)}")
        else:
            body = self._numbered_lines(self._checked_uidls())
            self._multiline_body("unique-id listing follows", body)

    def _checked_uidl(self, msgno: int) -> str:
        assert self._maildrop is not None, "TRANSACTION always has a maildrop"
        uidl = self._maildrop.uidl(msgno)
        printable = all(0x21 <= ord(char) <= 0x7E for char in uidl)
        if not 1 <= len(uidl) <= UIDL_MAX_CHARS or not printable:
            raise POP3StateError(
                f"maildrop returned an invalid uidl {uidl!r} for message {msgno}"
            )
        return uidl

    def _checked_uidls(self) -> Sequence[str]:
        if self._uidls is None:
            assert self._maildrop is not None, "TRANSACTION always has a maildrop"
            uidls = self._maildrop.all_uidls()
            if len(uidls) != self._count or not _valid_uidls(uidls):
                raise POP3StateError(
                    "maildrop returned an invalid uidl listing: "
                    f"{len(uidls)} uidls for {self._count} messages, or a uidl "
                    "that is empty, longer than 70 or not in 0x21-0x7E"
                )
            self._uidls = uidls
        return self._uidls

    def _numbered_lines(self, values: Sequence[object]) -> str:
        """Return ``msgno value`` CRLF lines for the undeleted messages.

        One ``%`` over a repeated format builds the whole listing in C,
        several times faster than one format call per message.
        """
        msgnos: Sequence[int] = range(1, self._count + 1)
        if self._deleted:
            msgnos = self._undeleted()
            values = [values[n - 1] for n in msgnos]
        fields: list[object] = [None] * (2 * len(msgnos))
        fields[0::2] = msgnos
        fields[1::2] = values
        return ("%d %s\r\n" * len(msgnos)) % tuple(fields)

    def _retr(self, args: list[bytes], rest: bytes) -> None:
        if len(args) != 1:
            self._bad_command("RETR takes one argument: a message number")
            return
        msgno = self._msgno(args[0])
        if msgno is not None:
            self._ok(f"{self._sizes[msgno - 1]} octets")
            self._events.append(SendMessage(msgno, None))

    def _top(self, args: list[bytes], rest: bytes) -> None:
        if len(args) != 2 or not args[1].isdigit() or len(args[1]) > 10:
            self._bad_command("TOP takes a message number and a line count")
            return
        msgno = self._msgno(args[0])
        if msgno is not None:
            self._ok("top of message follows")
            self._events.append(SendMessage(msgno, int(args[1])))

    def _dele(self, args: list[bytes], rest: bytes) -> None:
        if len(args) != 1:
            self._bad_command("DELE takes one argument: a message number")
            return
        msgno = self._msgno(args[0])
        if msgno is not None:
            self._deleted.add(msgno)
            self._deletion_changes += 1
            self._ok(f"message {msgno} deleted")

    def _noop(self, args: list[bytes], rest: bytes) -> None:
        if args:
            self._bad_command("NOOP takes no arguments")
            return
        self._ok("")

    def _rset(self, args: list[bytes], rest: bytes) -> None:
        if args:
            self._bad_command("RSET takes no arguments")
            return
        self._deleted.clear()
        self._deletion_changes += 1
        count, octets = self._totals()
        self._ok(f"maildrop has {count} messages ({octets} octets)")


def _valid_uidls(uidls: Sequence[str]) -> bool:
    """Check RFC 1939 section 7's unique-id form for all of ``uidls`` at once."""
    if not uidls:
        return True
    lengths = set(map(len, uidls))
    if min(lengths) < 1 or max(lengths) > UIDL_MAX_CHARS:
        return False
    # Printable ASCII without the space is exactly 0x21-0x7E.
    text = "".join(uidls)
    return text.isascii() and text.isprintable() and " " not in text


def is_valid_user_name(user: str) -> bool:
    """Return True if a client could log in as ``user`` (see ``_decode_user``)."""
    try:
        raw = user.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return _decode_user(raw) == user


def _decode_user(raw: bytes) -> str | None:
    """Return the user name, or None if it is unsafe to pass on.

    Names reach passwd-file lookups and path templates such as
    ``/var/mail/{user}``, so path separators, a leading dot and the
    passwd field separator are rejected here.
    """
    if not raw or len(raw) > USER_MAX_OCTETS or raw.startswith(b"."):
        return None
    if any(octet in b"/\\:" or octet < 0x21 or octet == 0x7F for octet in raw):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


_AUTH = frozenset({State.AUTHORIZATION})
_TRANSACTION = frozenset({State.TRANSACTION})
_BOTH = _AUTH | _TRANSACTION

_COMMANDS: dict[bytes, tuple[Handler, frozenset[State]]] = {
    b"CAPA": (POP3Session._capa, _BOTH),
    b"QUIT": (POP3Session._quit, _BOTH),
    b"USER": (POP3Session._user_command, _AUTH),
    b"PASS": (POP3Session._pass_command, _AUTH),
    b"AUTH": (POP3Session._auth_command, _AUTH),
    b"STLS": (POP3Session._stls, _AUTH),
    b"STAT": (POP3Session._stat, _TRANSACTION),
    b"LIST": (POP3Session._list, _TRANSACTION),
    b"UIDL": (POP3Session._uidl, _TRANSACTION),
    b"RETR": (POP3Session._retr, _TRANSACTION),
    b"TOP": (POP3Session._top, _TRANSACTION),
    b"DELE": (POP3Session._dele, _TRANSACTION),
    b"NOOP": (POP3Session._noop, _TRANSACTION),
    b"RSET": (POP3Session._rset, _TRANSACTION),
}
