"""Tests for the pure parts of spoolgate.tunnel.login: lines, limits, signers."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.config import ConfigReader
from spoolgate.errors import LoginProtocolError
from spoolgate.tunnel.login import (
    GREETING,
    KeyLogin,
    LoginReply,
    LoginServerProtocol,
    Logout,
    PasswordLogin,
    Quit,
    allowed_signers,
    format_reply,
    format_request,
    parse_greeting,
    parse_reply,
    parse_request,
    read_login_config,
    signed_message,
)

NONCE = "0123456789abcdef0123456789abcdef"


def session(timeout_s: float = 30.0, max_line: int = 8192) -> LoginServerProtocol:
    return LoginServerProtocol(NONCE, 100.0, timeout_s, max_line)


def test_greeting_round_trips_nonce() -> None:
    line = session().greeting()
    assert line.startswith(GREETING + b" ")
    assert parse_greeting(line) == NONCE


@pytest.mark.parametrize(
    "line",
    [b"HELLO 1 " + NONCE.encode() + b"\n", b"SPOOLGATE-LOGIN 1 xyz\n", b"\n"],
)
def test_parse_greeting_rejects_other_lines(line: bytes) -> None:
    with pytest.raises(LoginProtocolError):
        parse_greeting(line)


@pytest.mark.parametrize(
    "request_",
    [
        PasswordLogin("ann", "pa ss:wörd\t"),
        KeyLogin("ann", b"-----BEGIN SSH SIGNATURE-----\nabc\n"),
        Logout("ann.b-c_d"),
        Quit(),
    ],
)
def test_request_round_trips(request_: object) -> None:
    line = format_request(request_)  # type: ignore[arg-type]
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert parse_request(line[:-1]) == request_


def test_feed_returns_requests_split_anywhere() -> None:
    proto = session()
    data = format_request(Logout("ann")) + format_request(Quit())
    found = []
    for byte in data:
        found.extend(proto.feed(bytes([byte])))
    assert found == [Logout("ann"), Quit()]


def test_feed_accepts_crlf() -> None:
    assert session().feed(b"QUIT\r\n") == [Quit()]


def test_feed_line_over_limit_rejected_before_newline() -> None:
    proto = session(max_line=600)
    with pytest.raises(LoginProtocolError, match="longer than 600"):
        proto.feed(b"PASSWORD ann " + b"A" * 700)


def test_feed_second_proof_on_one_nonce_rejected() -> None:
    proto = session()
    proto.feed(format_request(PasswordLogin("ann", "x")))
    with pytest.raises(LoginProtocolError, match="one login attempt"):
        proto.feed(format_request(KeyLogin("ann", b"sig")))


def test_logout_does_not_use_up_the_nonce() -> None:
    proto = session()
    proto.feed(format_request(Logout("ann")))
    assert proto.feed(format_request(PasswordLogin("ann", "x"))) == [
        PasswordLogin("ann", "x")
    ]


def test_session_expires_at_deadline() -> None:
    proto = session(timeout_s=30.0)
    assert not proto.is_expired(129.9)
    assert proto.is_expired(130.0)


@pytest.mark.parametrize(
    "line",
    [
        b"PASSWORD ann",
        b"PASSWORD ann !!notbase64",
        b"PASSWORD ../etc " + base64.b64encode(b"x"),
        b"LOGOUT",
        b"LOGOUT a b",
        b"QUIT now",
        b"HELO",
        b"PASSWORD " + b"a" * 65 + b" eA==",
        "LOGOUT änn".encode(),
    ],
)
def test_parse_request_rejects_malformed(line: bytes) -> None:
    with pytest.raises(LoginProtocolError):
        parse_request(line)


def test_malformed_password_line_error_hides_password() -> None:
    secret = base64.b64encode(b"hunter2").decode()
    with pytest.raises(LoginProtocolError) as info:
        parse_request(f"PASSWORD ann {secret} extra".encode())
    assert secret not in str(info.value)
    assert "hunter2" not in str(info.value)


def test_password_repr_hides_password() -> None:
    assert "hunter2" not in repr(PasswordLogin("ann", "hunter2"))


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"OK bound user=ann\n", LoginReply(True, "bound user=ann")),
        (b"NO login failed\r\n", LoginReply(False, "login failed")),
        (b"BAD unknown request\n", LoginReply(False, "unknown request")),
    ],
)
def test_parse_reply(line: bytes, reply: LoginReply) -> None:
    assert parse_reply(line) == reply


def test_format_reply_round_trips() -> None:
    assert parse_reply(format_reply(False, "login failed")) == LoginReply(
        False, "login failed"
    )


def test_parse_reply_rejects_other_status() -> None:
    with pytest.raises(LoginProtocolError):
        parse_reply(b"MAYBE\n")


def test_signed_message_binds_nonce_and_user() -> None:
    assert signed_message(NONCE, "ann") != signed_message(NONCE, "bob")
    assert signed_message(NONCE, "ann") != signed_message("f" * 32, "ann")
    assert NONCE.encode() in signed_message(NONCE, "ann")


def test_allowed_signers_drops_options_and_comments() -> None:
    keys = (
        "# comment\n"
        "\n"
        "ssh-ed25519 AAAAC3Nza1 ann@laptop\n"
        'from="10.0.0.1",no-pty ssh-rsa AAAAB3Nza2 ann@desk\n'
        "cert-authority ssh-ed25519 AAAAC3Nza3 ca\n"
        "garbage line\n"
    )
    assert allowed_signers("ann", keys) == (
        "ann ssh-ed25519 AAAAC3Nza1\nann ssh-rsa AAAAB3Nza2\n"
    )


def test_read_login_config_defaults_and_errors() -> None:
    root = ConfigReader({"login": {"listen": "10.0.0.1:7000", "methods": ["pw"]}}, "f")
    settings = read_login_config(root)
    assert settings.host == "10.0.0.1"
    assert settings.port == 7000
    assert settings.methods == ()
    with pytest.raises(Exception, match="methods"):
        root.finish()


@given(st.binary(max_size=200))
def test_feed_any_bytes_requests_or_protocol_error(data: bytes) -> None:
    proto = session(max_line=100)
    try:
        requests = proto.feed(data)
    except LoginProtocolError:
        return
    assert all(
        isinstance(r, PasswordLogin | KeyLogin | Logout | Quit) for r in requests
    )


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_password_round_trips_any_text(password: str) -> None:
    line = format_request(PasswordLogin("ann", password))
    assert parse_request(line[:-1]) == PasswordLogin("ann", password)
