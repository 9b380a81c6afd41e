"""Unit tests of the sans-IO POP3 state machine and the message encoder."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest

from spoolgate.errors import ConfigError, POP3ProtocolError, POP3StateError
from spoolgate.pop3 import (
    AuthFailure,
    AuthRequest,
    ByteStuffer,
    Close,
    CloseReason,
    Event,
    Expunge,
    MaildropFailure,
    MessageEncoder,
    OpenMaildrop,
    Pending,
    POP3Session,
    ProtocolConfig,
    Reply,
    SendMessage,
    StartTLS,
    State,
    TopLimiter,
)

PLAIN = ProtocolConfig(allow_plaintext_auth=True)


@dataclass
class FakeMaildrop:
    sizes: list[int] = field(default_factory=lambda: [100, 200, 300])

    def count(self) -> int:
        return len(self.sizes)

    def size(self, msgno: int) -> int:
        return self.sizes[msgno - 1]

    def uidl(self, msgno: int) -> str:
        return f"uid-{msgno}"

    def all_sizes(self) -> list[int]:
        return self.sizes

    def all_uidls(self) -> list[str]:
        return [self.uidl(n) for n in range(1, self.count() + 1)]


def drain(session: POP3Session) -> tuple[list[Event], Pending]:
    events: list[Event] = []
    while True:
        event = session.next_event()
        if isinstance(event, Pending):
            return events, event
        events.append(event)


def replies(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Reply))


def feed(session: POP3Session, data: bytes) -> tuple[list[Event], Pending]:
    session.receive_data(data)
    return drain(session)


def new_session(config: ProtocolConfig = PLAIN, *, tls: bool = False) -> POP3Session:
    session = POP3Session(config, tls_active=tls)
    events, _ = drain(session)
    assert replies(events).startswith(b"+OK ")
    return session


def logged_in(maildrop: FakeMaildrop | None = None) -> POP3Session:
    session = new_session()
    feed(session, b"USER ann\r\nPASS secret\r\n")
    session.auth_succeeded()
    drain(session)
    session.maildrop_opened(maildrop or FakeMaildrop())
    drain(session)
    return session


def plain_b64(authzid: str, user: str, password: str) -> bytes:
    raw = f"{authzid}\0{user}\0{password}".encode()
    return base64.b64encode(raw)


# Greeting and AUTHORIZATION.


def test_greeting_is_single_ok_line() -> None:
    session = POP3Session(PLAIN)
    events, pending = drain(session)
    assert events == [Reply(b"+OK spoolgate POP3 server ready\r\n")]
    assert pending is Pending.NEED_DATA


def test_user_pass_emits_auth_request_and_pauses() -> None:
    session = new_session()
    events, pending = feed(session, b"USER ann\r\nPASS two words\r\n")
    assert replies(events) == b"+OK send PASS\r\n"
    assert AuthRequest("ann", "two words", "USER") in events
    assert pending is Pending.PAUSED
    assert session.state is State.AWAIT_AUTH


def test_auth_request_repr_hides_password() -> None:
    request = AuthRequest("ann", "hunter2", "USER")
    assert "hunter2" not in repr(request)


def test_commands_case_insensitive() -> None:
    session = new_session()
    events, _ = feed(session, b"user ann\r\npAsS secret\r\n")
    assert AuthRequest("ann", "secret", "USER") in events


def test_login_opens_maildrop_then_transaction() -> None:
    session = new_session()
    feed(session, b"USER ann\r\nPASS secret\r\n")
    session.auth_succeeded()
    events, pending = drain(session)
    assert events == [OpenMaildrop("ann")]
    assert pending is Pending.PAUSED
    session.maildrop_opened(FakeMaildrop())
    events, _ = drain(session)
    assert replies(events) == b"+OK maildrop has 3 messages (600 octets)\r\n"
    assert session.state is State.TRANSACTION
    assert session.user == "ann"


def test_auth_succeeded_uses_backend_user_name() -> None:
    session = new_session()
    feed(session, b"USER Ann\r\nPASS secret\r\n")
    session.auth_succeeded("ann")
    events, _ = drain(session)
    assert events == [OpenMaildrop("ann")]
    session.maildrop_opened(FakeMaildrop())
    assert session.user == "ann"


def test_auth_failed_replies_auth_code() -> None:
    session = new_session()
    feed(session, b"USER ann\r\nPASS wrong\r\n")
    session.auth_failed()
    events, pending = drain(session)
    assert replies(events) == b"-ERR [AUTH] authentication failed\r\n"
    assert pending is Pending.NEED_DATA
    assert session.state is State.AUTHORIZATION


def test_auth_failed_login_delay_code() -> None:
    session = new_session()
    feed(session, b"USER ann\r\nPASS secret\r\n")
    session.auth_failed(AuthFailure.LOGIN_DELAY)
    events, _ = drain(session)
    assert replies(events).startswith(b"-ERR [LOGIN-DELAY] ")


def test_auth_failed_temporary_code() -> None:
    session = new_session()
    feed(session, b"USER ann\r\nPASS secret\r\n")
    session.auth_failed(AuthFailure.TEMPORARY)
    events, _ = drain(session)
    assert replies(events).startswith(b"-ERR [SYS/TEMP] ")


def test_auth_failures_limit_closes() -> None:
    session = new_session(
        ProtocolConfig(allow_plaintext_auth=True, max_auth_failures=2)
    )
    for _ in range(2):
        feed(session, b"USER ann\r\nPASS wrong\r\n")
        session.auth_failed()
    events, pending = drain(session)
    assert Close(CloseReason.TOO_MANY_AUTH_FAILURES) in events
    assert pending is Pending.CLOSED


def test_pass_without_user_rejected() -> None:
    session = new_session()
    events, _ = feed(session, b"PASS secret\r\n")
    assert replies(events).startswith(b"-ERR ")
    assert not any(isinstance(e, AuthRequest) for e in events)


def test_user_invalid_name_rejected() -> None:
    session = new_session()
    for name in (b"../etc", b"a/b", b"a:b", b".hidden"):
        events, _ = feed(session, b"USER " + name + b"\r\n")
        assert replies(events) == b"-ERR [AUTH] invalid user name\r\n", name


@pytest.mark.parametrize("reason", list(MaildropFailure))
def test_maildrop_failed_replies_code(reason: MaildropFailure) -> None:
    session = new_session()
    feed(session, b"USER ann\r\nPASS secret\r\n")
    session.auth_succeeded()
    drain(session)
    session.maildrop_failed(reason)
    events, _ = drain(session)
    assert replies(events).startswith(f"-ERR [{reason.value}] ".encode())
    assert session.state is State.AUTHORIZATION


def test_transaction_command_in_authorization_rejected() -> None:
    session = new_session()
    for verb in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"UIDL"):
        events, _ = feed(session, verb + b"\r\n")
        assert replies(events) == b"-ERR command not valid in this state\r\n", verb


def test_authorization_command_in_transaction_rejected() -> None:
    session = logged_in()
    for verb in (b"USER ann", b"PASS x", b"AUTH PLAIN", b"STLS"):
        events, _ = feed(session, verb + b"\r\n")
        assert replies(events) == b"-ERR command not valid in this state\r\n", verb


def test_apop_unknown_command() -> None:
    session = new_session()
    events, _ = feed(session, b"APOP ann 0123456789abcdef0123456789abcdef\r\n")
    assert replies(events) == b"-ERR unknown command\r\n"


def test_quit_in_authorization_closes() -> None:
    session = new_session()
    events, pending = feed(session, b"QUIT\r\n")
    assert replies(events).startswith(b"+OK ")
    assert events[-1] == Close(CloseReason.QUIT)
    assert pending is Pending.CLOSED


def test_eof_closes_without_expunge() -> None:
    session = logged_in()
    feed(session, b"DELE 1\r\n")
    events, pending = feed(session, b"")
    assert events == [Close(CloseReason.EOF)]
    assert pending is Pending.CLOSED


def test_bad_commands_limit_closes() -> None:
    session = new_session(ProtocolConfig(max_bad_commands=3))
    events, pending = feed(session, b"FOO\r\nBAR\r\nBAZ\r\nQUIT\r\n")
    assert replies(events).count(b"-ERR") == 3
    assert events[-1] == Close(CloseReason.TOO_MANY_BAD_COMMANDS)
    assert pending is Pending.CLOSED


def test_control_characters_rejected() -> None:
    session = new_session()
    events, _ = feed(session, b"US\x00ER ann\r\n")
    assert replies(events) == b"-ERR control characters in command line\r\n"


def test_bare_lf_line_accepted() -> None:
    session = new_session()
    events, _ = feed(session, b"CAPA\n")
    assert replies(events).startswith(b"+OK capability list follows\r\n")


# Plaintext and TLS (RFC 2595).


def test_plaintext_user_rejected_before_tls() -> None:
    session = new_session(ProtocolConfig(tls_available=True))
    events, _ = feed(session, b"USER ann\r\n")
    assert replies(events).startswith(b"-ERR [AUTH] ")


def test_plaintext_auth_plain_rejected_before_tls() -> None:
    session = new_session(ProtocolConfig(tls_available=True))
    events, _ = feed(session, b"AUTH PLAIN " + plain_b64("", "ann", "pw") + b"\r\n")
    assert replies(events).startswith(b"-ERR [AUTH] ")
    assert not any(isinstance(e, AuthRequest) for e in events)


def test_plaintext_allowed_over_implicit_tls() -> None:
    session = new_session(ProtocolConfig(), tls=True)
    events, _ = feed(session, b"USER ann\r\n")
    assert replies(events) == b"+OK send PASS\r\n"


def test_stls_discards_pipelined_commands() -> None:
    session = new_session(ProtocolConfig(tls_available=True))
    events, pending = feed(session, b"STLS\r\nUSER evil\r\nPASS injected\r\n")
    assert replies(events) == b"+OK begin TLS negotiation\r\n"
    assert events[-1] == StartTLS()
    assert pending is Pending.PAUSED
    session.tls_started()
    events, pending = drain(session)
    assert events == []
    assert pending is Pending.NEED_DATA


def test_stls_then_user_allowed() -> None:
    session = new_session(ProtocolConfig(tls_available=True))
    feed(session, b"STLS\r\n")
    session.tls_started()
    events, _ = feed(session, b"USER ann\r\n")
    assert replies(events) == b"+OK send PASS\r\n"
    assert session.tls_active


def test_stls_twice_rejected() -> None:
    session = new_session(ProtocolConfig(tls_available=True))
    feed(session, b"STLS\r\n")
    session.tls_started()
    events, _ = feed(session, b"STLS\r\n")
    assert replies(events).startswith(b"-ERR ")


def test_stls_unavailable_rejected() -> None:
    session = new_session(ProtocolConfig())
    events, _ = feed(session, b"STLS\r\n")
    assert replies(events).startswith(b"-ERR ")
    assert not any(isinstance(e, StartTLS) for e in events)


def test_receive_during_tls_handshake_raises() -> None:
    session = new_session(ProtocolConfig(tls_available=True))
    feed(session, b"STLS\r\n")
    with pytest.raises(POP3StateError):
        session.receive_data(b"NOOP\r\n")


def test_capa_before_tls_hides_plaintext_mechanisms() -> None:
    session = new_session(ProtocolConfig(tls_available=True, login_delay_s=60))
    events, _ = feed(session, b"CAPA\r\n")
    lines = replies(events).split(b"\r\n")
    assert b"STLS" in lines
    assert b"USER" not in lines
    assert b"SASL PLAIN" not in lines
    assert b"LOGIN-DELAY 60" in lines
    assert b"RESP-CODES" in lines
    assert b"AUTH-RESP-CODE" in lines
    assert b"PIPELINING" in lines
    assert b"IMPLEMENTATION spoolgate" in lines
    assert lines[-2:] == [b".", b""]


def test_capa_after_tls_lists_user_and_sasl() -> None:
    session = new_session(ProtocolConfig(tls_available=True))
    feed(session, b"STLS\r\n")
    session.tls_started()
    events, _ = feed(session, b"CAPA\r\n")
    lines = replies(events).split(b"\r\n")
    assert b"STLS" not in lines
    assert b"USER" in lines
    assert b"SASL PLAIN" in lines


# AUTH PLAIN (RFC 5034, RFC 4616).


def test_auth_plain_initial_response() -> None:
    session = new_session()
    events, _ = feed(session, b"AUTH PLAIN " + plain_b64("", "ann", "pw") + b"\r\n")
    assert events == [AuthRequest("ann", "pw", "PLAIN")]


def test_auth_plain_continuation() -> None:
    session = new_session()
    events, pending = feed(session, b"AUTH PLAIN\r\n")
    assert replies(events) == b"+ \r\n"
    assert pending is Pending.NEED_DATA
    events, _ = feed(session, plain_b64("ann", "ann", "pw") + b"\r\n")
    assert events == [AuthRequest("ann", "pw", "PLAIN")]


def test_auth_plain_abort() -> None:
    session = new_session()
    feed(session, b"AUTH PLAIN\r\n")
    events, _ = feed(session, b"*\r\n")
    assert replies(events) == b"-ERR authentication cancelled\r\n"
    assert session.state is State.AUTHORIZATION


def test_auth_plain_empty_initial_response_rejected() -> None:
    session = new_session()
    events, _ = feed(session, b"AUTH PLAIN =\r\n")
    assert replies(events).startswith(b"-ERR ")
    assert not any(isinstance(e, AuthRequest) for e in events)


def test_auth_plain_bad_base64_rejected() -> None:
    session = new_session()
    events, _ = feed(session, b"AUTH PLAIN !!notbase64\r\n")
    assert replies(events) == b"-ERR SASL response is not valid base64\r\n"


def test_auth_plain_other_authzid_fails() -> None:
    session = new_session()
    events, _ = feed(session, b"AUTH PLAIN " + plain_b64("root", "ann", "pw") + b"\r\n")
    assert replies(events) == b"-ERR [AUTH] authentication failed\r\n"


def test_auth_unknown_mechanism_rejected() -> None:
    session = new_session()
    events, _ = feed(session, b"AUTH CRAM-MD5\r\n")
    assert replies(events).startswith(b"-ERR unsupported SASL mechanism")


def test_auth_without_mechanism_lists_plain() -> None:
    session = new_session()
    events, _ = feed(session, b"AUTH\r\n")
    assert replies(events) == b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"


def test_auth_plain_long_response_accepted() -> None:
    session = new_session()
    password = "p" * 250
    response = plain_b64("", "ann", password)
    assert len(response) > 255
    events, _ = feed(session, b"AUTH PLAIN " + response + b"\r\n")
    assert events == [AuthRequest("ann", password, "PLAIN")]


# Line limits (RFC 2449 section 4).


def test_command_line_255_octets_accepted() -> None:
    session = logged_in()
    line = b"NOOP" + b" " * 249 + b"\r\n"
    assert len(line) == 255
    events, _ = feed(session, line)
    assert replies(events) == b"+OK\r\n"


def test_command_line_256_octets_rejected() -> None:
    session = logged_in()
    line = b"NOOP" + b" " * 250 + b"\r\n"
    events, _ = feed(session, line)
    assert replies(events).startswith(b"-ERR line too long")


def test_long_line_without_newline_discarded() -> None:
    session = logged_in()
    events, _ = feed(session, b"X" * 1000)
    assert replies(events).startswith(b"-ERR line too long")
    events, _ = feed(session, b"Y" * 1000 + b"\r\nNOOP\r\n")
    assert replies(events) == b"+OK\r\n"


def test_long_user_line_in_authorization_rejected() -> None:
    session = new_session()
    events, _ = feed(session, b"USER " + b"a" * 300 + b"\r\n")
    assert replies(events).startswith(b"-ERR line too long")


@pytest.mark.parametrize("verb", [b"NOOP", b"STAT", b"XYZZY", b"CAPA"])
def test_long_line_any_verb_in_authorization_rejected(verb: bytes) -> None:
    session = new_session()
    events, _ = feed(session, verb + b" " + b"a" * 300 + b"\r\n")
    assert replies(events).startswith(b"-ERR line too long")


def test_unread_input_over_limit_raises() -> None:
    session = POP3Session(ProtocolConfig(max_buffered_octets=1000))
    with pytest.raises(POP3ProtocolError):
        session.receive_data(b"NOOP\r\n" * 200)


# TRANSACTION (RFC 1939 sections 5 and 7).


def test_stat_counts_undeleted() -> None:
    session = logged_in()
    events, _ = feed(session, b"STAT\r\nDELE 2\r\nSTAT\r\n")
    assert replies(events) == (b"+OK 3 600\r\n+OK message 2 deleted\r\n+OK 2 400\r\n")


def test_list_all_skips_deleted() -> None:
    session = logged_in()
    events, _ = feed(session, b"DELE 1\r\nLIST\r\n")
    assert replies(events).endswith(
        b"+OK 2 messages (500 octets)\r\n2 200\r\n3 300\r\n.\r\n"
    )


def test_list_one_message() -> None:
    session = logged_in()
    events, _ = feed(session, b"LIST 3\r\n")
    assert replies(events) == b"+OK 3 300\r\n"


@pytest.mark.parametrize("arg", [b"0", b"4", b"-1", b"x", b"99999999999"])
def test_list_bad_msgno_rejected(arg: bytes) -> None:
    session = logged_in()
    events, _ = feed(session, b"LIST " + arg + b"\r\n")
    assert replies(events) == b"-ERR no such message\r\n"


def test_list_deleted_message_rejected() -> None:
    session = logged_in()
    events, _ = feed(session, b"DELE 1\r\nLIST 1\r\n")
    assert replies(events).endswith(b"-ERR message 1 already deleted\r\n")


def test_uidl_all_and_one() -> None:
    session = logged_in()
    events, _ = feed(session, b"UIDL\r\nUIDL 2\r\n")
    assert replies(events) == (
        b"+OK unique-id listing follows\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n"
        b"+OK 2 uid-2\r\n"
    )


def test_uidl_invalid_from_maildrop_raises() -> None:
    class BadMaildrop(FakeMaildrop):
        def uidl(self, msgno: int) -> str:
            return "has space"

    session = logged_in(BadMaildrop())
    session.receive_data(b"UIDL 1\r\n")
    with pytest.raises(POP3StateError):
        drain(session)


def test_uidl_listing_skips_deleted() -> None:
    session = logged_in()
    events, _ = feed(session, b"DELE 2\r\nUIDL\r\n")
    assert replies(events).endswith(
        b"+OK unique-id listing follows\r\n1 uid-1\r\n3 uid-3\r\n.\r\n"
    )


def test_list_empty_maildrop_ends_at_once() -> None:
    session = logged_in(FakeMaildrop(sizes=[]))
    events, _ = feed(session, b"LIST\r\nUIDL\r\n")
    assert replies(events).endswith(
        b"+OK 0 messages (0 octets)\r\n.\r\n+OK unique-id listing follows\r\n.\r\n"
    )


@pytest.mark.parametrize("uidl", ["has space", "", "x" * 71, "caf\u00e9", "tab\t"])
def test_uidl_listing_invalid_from_maildrop_raises(uidl: str) -> None:
    class BadMaildrop(FakeMaildrop):
        def uidl(self, msgno: int) -> str:
            return uidl if msgno == 2 else f"uid-{msgno}"

    session = logged_in(BadMaildrop())
    session.receive_data(b"UIDL\r\n")
    with pytest.raises(POP3StateError):
        drain(session)


def test_maildrop_sizes_count_mismatch_raises() -> None:
    class ShortMaildrop(FakeMaildrop):
        def all_sizes(self) -> list[int]:
            return self.sizes[:-1]

    with pytest.raises(POP3StateError):
        logged_in(ShortMaildrop())


def test_retr_emits_ok_then_send_message() -> None:
    session = logged_in()
    events, _ = feed(session, b"RETR 2\r\n")
    assert events == [Reply(b"+OK 200 octets\r\n"), SendMessage(2, None)]


def test_top_zero_lines() -> None:
    session = logged_in()
    events, _ = feed(session, b"TOP 1 0\r\n")
    assert events == [Reply(b"+OK top of message follows\r\n"), SendMessage(1, 0)]


@pytest.mark.parametrize("args", [b"TOP 1", b"TOP 1 -1", b"TOP 1 x", b"TOP"])
def test_top_bad_arguments_rejected(args: bytes) -> None:
    session = logged_in()
    events, _ = feed(session, args + b"\r\n")
    assert replies(events).startswith(b"-ERR TOP takes")


def test_dele_twice_rejected() -> None:
    session = logged_in()
    events, _ = feed(session, b"DELE 1\r\nDELE 1\r\nRETR 1\r\n")
    assert replies(events) == (
        b"+OK message 1 deleted\r\n"
        b"-ERR message 1 already deleted\r\n"
        b"-ERR message 1 already deleted\r\n"
    )


def test_rset_undeletes() -> None:
    session = logged_in()
    events, _ = feed(session, b"DELE 1\r\nRSET\r\nSTAT\r\n")
    assert replies(events).endswith(
        b"+OK maildrop has 3 messages (600 octets)\r\n+OK 3 600\r\n"
    )


def test_noop_ok() -> None:
    session = logged_in()
    events, _ = feed(session, b"NOOP\r\n")
    assert replies(events) == b"+OK\r\n"


def test_quit_without_deletions_closes() -> None:
    session = logged_in()
    events, pending = feed(session, b"QUIT\r\n")
    assert not any(isinstance(e, Expunge) for e in events)
    assert events[-1] == Close(CloseReason.QUIT)
    assert pending is Pending.CLOSED


def test_quit_expunges_then_replies() -> None:
    session = logged_in()
    events, pending = feed(session, b"DELE 3\r\nDELE 1\r\nQUIT\r\n")
    assert events[-1] == Expunge((1, 3))
    assert pending is Pending.PAUSED
    session.expunge_done()
    events, pending = drain(session)
    assert replies(events).startswith(b"+OK ")
    assert events[-1] == Close(CloseReason.QUIT)
    assert pending is Pending.CLOSED


def test_quit_expunge_failed_replies_sys_temp() -> None:
    session = logged_in()
    feed(session, b"DELE 1\r\nQUIT\r\n")
    session.expunge_failed()
    events, _ = drain(session)
    assert replies(events) == b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"


def test_pipelined_commands_answered_in_order() -> None:
    session = logged_in()
    events, _ = feed(session, b"STAT\r\nLIST 1\r\nUIDL 1\r\nNOOP\r\nRETR 1\r\n")
    assert events == [
        Reply(b"+OK 3 600\r\n"),
        Reply(b"+OK 1 100\r\n"),
        Reply(b"+OK 1 uid-1\r\n"),
        Reply(b"+OK\r\n"),
        Reply(b"+OK 100 octets\r\n"),
        SendMessage(1, None),
    ]


def test_pipelined_login_waits_for_answer() -> None:
    session = new_session()
    events, pending = feed(session, b"USER ann\r\nPASS pw\r\nSTAT\r\n")
    assert pending is Pending.PAUSED
    session.auth_succeeded()
    drain(session)
    session.maildrop_opened(FakeMaildrop())
    events, _ = drain(session)
    assert replies(events).endswith(b"+OK 3 600\r\n")


def test_answer_in_wrong_state_raises() -> None:
    session = new_session()
    with pytest.raises(POP3StateError):
        session.auth_succeeded()
    with pytest.raises(POP3StateError):
        session.expunge_done()


def test_config_rejects_multiline_implementation() -> None:
    with pytest.raises(ConfigError):
        ProtocolConfig(implementation="x\r\nEVIL")


# Byte-stuffing and TOP.


def encode_chunks(chunks: list[bytes], body_lines: int | None = None) -> bytes:
    encoder = MessageEncoder(body_lines)
    out = b"".join(encoder.feed(chunk) for chunk in chunks)
    return out + encoder.finish()


def test_stuffer_dot_at_chunk_border() -> None:
    stuffer = ByteStuffer()
    out = stuffer.feed(b"line\r\n") + stuffer.feed(b".dot\r\n")
    assert out == b"line\r\n..dot\r\n"


def test_stuffer_dot_mid_line_at_border_not_stuffed() -> None:
    stuffer = ByteStuffer()
    out = stuffer.feed(b"line") + stuffer.feed(b".dot\r\n")
    assert out == b"line.dot\r\n"


def test_stuffer_leading_dot_first_chunk() -> None:
    assert ByteStuffer().feed(b".\r\n") == b"..\r\n"


def test_encoder_adds_crlf_and_terminator() -> None:
    assert encode_chunks([b"no newline"]) == b"no newline\r\n.\r\n"


def test_encoder_empty_message() -> None:
    assert encode_chunks([]) == b".\r\n"


def test_encoder_same_output_for_every_split() -> None:
    message = b"A: b\r\n\r\n.x\r\n..\r\nend.\r\n.\r\n"
    whole = encode_chunks([message])
    assert whole == b"A: b\r\n\r\n..x\r\n...\r\nend.\r\n..\r\n.\r\n"
    for cut in range(len(message) + 1):
        assert encode_chunks([message[:cut], message[cut:]]) == whole, cut


MESSAGE = b"Subject: hi\r\nFrom: a\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n"


def test_top_zero_returns_header_and_blank_line() -> None:
    assert encode_chunks([MESSAGE], 0) == b"Subject: hi\r\nFrom: a\r\n\r\n.\r\n"


def test_top_two_lines() -> None:
    assert encode_chunks([MESSAGE], 2).endswith(b"\r\n\r\nbody 1\r\nbody 2\r\n.\r\n")


def test_top_more_lines_than_body() -> None:
    assert encode_chunks([MESSAGE], 99) == MESSAGE + b".\r\n"


def test_top_blank_line_split_across_chunks() -> None:
    for cut in range(len(MESSAGE) + 1):
        out = encode_chunks([MESSAGE[:cut], MESSAGE[cut:]], 1)
        assert out == b"Subject: hi\r\nFrom: a\r\n\r\nbody 1\r\n.\r\n", cut


def test_top_limiter_done_drops_rest() -> None:
    limiter = TopLimiter(0)
    assert limiter.feed(b"H: v\r\n\r\nbody\r\n") == b"H: v\r\n\r\n"
    assert limiter.done
    assert limiter.feed(b"more\r\n") == b""


def test_top_header_only_message_passes_whole() -> None:
    assert encode_chunks([b"H: v\r\nI: w\r\n"], 0) == b"H: v\r\nI: w\r\n.\r\n"
