"""Property tests: any input gives valid POP3 replies or the module's own error."""

from __future__ import annotations

import base64
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from spoolgate.errors import POP3ProtocolError
from spoolgate.pop3 import (
    AuthRequest,
    Expunge,
    MessageEncoder,
    OpenMaildrop,
    Pending,
    POP3Session,
    ProtocolConfig,
    Reply,
    SASLError,
    StartTLS,
    decode_plain,
)

CONFIGS = st.builds(
    ProtocolConfig,
    tls_available=st.booleans(),
    allow_plaintext_auth=st.sampled_from([True, True, False]),
    max_bad_commands=st.integers(1, 30),
    max_auth_failures=st.integers(1, 5),
)

# A status line, a SASL continuation, or a multi-line body whose lines
# contain no CR or LF and which ends with the "." line.
STATUS = rb"(\+OK|-ERR)( [^\r\n]*)?\r\n"
CONTINUATION = rb"\+ [^\r\n]*\r\n"
MULTILINE = rb"\+OK[^\r\n]*\r\n([^\r\n]*\r\n)*?\.\r\n"
REPLY = re.compile(rb"(" + MULTILINE + b"|" + STATUS + b"|" + CONTINUATION + rb")")

VERBS = [
    b"USER",
    b"PASS",
    b"AUTH",
    b"STLS",
    b"CAPA",
    b"QUIT",
    b"STAT",
    b"LIST",
    b"UIDL",
    b"RETR",
    b"TOP",
    b"DELE",
    b"NOOP",
    b"RSET",
    b"APOP",
    b"XYZZY",
]
ARGS = st.one_of(
    st.sampled_from([b"1", b"2"]),
    st.sampled_from(
        [b"", b"0", b"3", b"-1", b"ann", b"PLAIN", b"AGFubgBwdw==", b"*", b"\xff"]
    ),
)
COMMAND = st.builds(
    lambda verb, args, end: verb + b"".join(b" " + a for a in args) + end,
    st.sampled_from(VERBS).map(lambda v: v.lower() if len(v) % 2 else v),
    st.lists(ARGS, max_size=2),
    st.sampled_from([b"\r\n", b"\n"]),
)
# Most random sequences never log in, so half of them start with a login.
LOGIN = st.sampled_from(
    [
        b"",
        b"USER ann\r\nPASS pw\r\n",
        b"AUTH PLAIN AGFubgBwdw==\r\n",
        b"AUTH PLAIN\r\nAGFubgBwdw==\r\n",
    ]
)
STREAM = st.builds(
    lambda login, rest: [login, *rest],
    LOGIN,
    st.lists(st.one_of(COMMAND, COMMAND, st.binary(max_size=300)), max_size=30),
)


TRANSACTION_VERBS = [b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE", b"RSET"]
TRANSACTION_COMMAND = st.builds(
    lambda verb, args: verb + b"".join(b" " + a for a in args) + b"\r\n",
    st.sampled_from(TRANSACTION_VERBS),
    st.lists(ARGS, max_size=2),
)
TRANSACTION_STREAM = st.builds(
    lambda commands, quit: [b"USER ann\r\nPASS pw\r\n", *commands, quit],
    st.lists(TRANSACTION_COMMAND, max_size=30),
    st.sampled_from([b"QUIT\r\n", b""]),
)


class SmallMaildrop:
    def count(self) -> int:
        return 2

    def size(self, msgno: int) -> int:
        return 10 * msgno

    def uidl(self, msgno: int) -> str:
        return f"u{msgno}"

    def all_sizes(self) -> list[int]:
        return [10, 20]

    def all_uidls(self) -> list[str]:
        return ["u1", "u2"]


def assert_valid_reply(data: bytes) -> None:
    assert REPLY.fullmatch(data), data


def answer(session: POP3Session, event: object, grant: bool) -> None:
    """Resolve a paused event the way an I/O layer would."""
    if isinstance(event, AuthRequest):
        if grant:
            session.auth_succeeded()
        else:
            session.auth_failed()
    elif isinstance(event, OpenMaildrop):
        session.maildrop_opened(SmallMaildrop())
    elif isinstance(event, StartTLS):
        session.tls_started()
    elif isinstance(event, Expunge):
        session.expunge_done()


def run(config: ProtocolConfig, chunks: list[bytes], grants: list[bool]) -> None:
    session = POP3Session(config)
    for chunk in [*chunks, b""]:
        try:
            session.receive_data(chunk)
        except POP3ProtocolError:
            return
        while True:
            event = session.next_event()
            if event is Pending.NEED_DATA:
                break
            if event is Pending.CLOSED:
                return
            assert not isinstance(event, Pending), "a paused event was not answered"
            if isinstance(event, Reply):
                assert_valid_reply(event.data)
            answer(session, event, grants.pop() if grants else True)


@settings(max_examples=300, deadline=None)
@given(CONFIGS, STREAM, st.lists(st.booleans()))
def test_fuzz_command_sequences_give_valid_replies(
    config: ProtocolConfig, chunks: list[bytes], grants: list[bool]
) -> None:
    run(config, chunks, grants)


@settings(max_examples=200, deadline=None)
@given(TRANSACTION_STREAM)
def test_fuzz_transaction_commands_give_valid_replies(chunks: list[bytes]) -> None:
    run(ProtocolConfig(allow_plaintext_auth=True), chunks, [])


@settings(max_examples=200, deadline=None)
@given(CONFIGS, st.binary(max_size=2000), st.integers(1, 64))
def test_fuzz_random_bytes_give_valid_replies(
    config: ProtocolConfig, data: bytes, chunk_size: int
) -> None:
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    run(config, chunks, [])


def reference_stuff(message: bytes) -> bytes:
    lines = message.split(b"\n")
    stuffed = b"\n".join(
        b"." + line if line.startswith(b".") else line for line in lines
    )
    if message and not message.endswith(b"\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b".", b"\r\n", b"a", b"..", b"\n", b"From "]), max_size=40
    ),
    st.lists(st.integers(0, 80), max_size=8),
)
def test_fuzz_stuffing_matches_reference_for_any_split(
    pieces: list[bytes], cuts: list[int]
) -> None:
    message = b"".join(pieces)
    bounds = sorted({min(c, len(message)) for c in cuts})
    chunks = [
        message[a:b] for a, b in zip([0, *bounds], [*bounds, len(message)], strict=True)
    ]
    encoder = MessageEncoder()
    out = b"".join(encoder.feed(chunk) for chunk in chunks) + encoder.finish()
    assert out == reference_stuff(message)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_plain_decoder_raises_only_sasl_error(data: bytes) -> None:
    try:
        decode_plain(data)
    except SASLError:
        pass


NAME = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(NAME, NAME)
def test_fuzz_plain_round_trip(user: str, password: str) -> None:
    encoded = base64.b64encode(f"\0{user}\0{password}".encode())
    decoded = decode_plain(encoded)
    assert decoded.authcid == user
    assert decoded.password == password
