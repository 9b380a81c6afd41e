"""Spools and client cases shared by the interop tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from clients import CLIENTS, Client, Security, expected_forms, served_messages
from dovecot import DovecotServer

from spoolgate.mbox.generate import GenerateOptions, generate_bytes

SPOOL_MESSAGES = 50

# Serve a copy of an mbox from a directory with a new Dovecot.
StartDovecot = Callable[[Path, bytes], DovecotServer]


@dataclass(frozen=True, slots=True)
class Spool:
    """A generated mbox and the messages a server serves from it."""

    data: bytes
    messages: list[bytes]
    mboxrd: bool


def make_spool(*, mboxrd: bool, seed: int = 3) -> Spool:
    """Generate a small spool with >From lines, dot lines and CRLF messages."""
    options = GenerateOptions(
        messages=SPOOL_MESSAGES,
        format="mboxrd" if mboxrd else "mboxo",
        seed=seed,
        attach_rate=0.0,
        from_line_rate=0.3,
        dot_line_rate=0.3,
        crlf_rate=0.1,
    )
    data, manifest = generate_bytes(options)
    return Spool(data, served_messages(data, manifest, mboxrd), mboxrd)


def client_cases(*, every_security: bool) -> list[object]:
    """Return pytest params: each client with each of its securities."""
    cases: list[object] = []
    for client in CLIENTS:
        securities = client.securities if every_security else (Security.PLAIN,)
        for security in securities:
            reason = client.missing()
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            cases.append(
                pytest.param(
                    client, security, id=f"{client.name}-{security.value}", marks=marks
                )
            )
    return cases


def check_download(client: Client, got: list[bytes], expected: list[bytes]) -> None:
    """Assert a client stored exactly the expected messages, in order."""
    wanted = expected_forms(client, expected)
    assert len(got) == len(wanted), f"{client.name} stored {len(got)} messages"
    for msgno, (stored, served) in enumerate(zip(got, wanted, strict=True), 1):
        assert stored == served, f"{client.name}: message {msgno}: " + first_difference(
            stored, served
        )


def first_difference(got: bytes, wanted: bytes) -> str:
    """Describe the first line where two messages differ."""
    got_lines, wanted_lines = got.split(b"\r\n"), wanted.split(b"\r\n")
    for number, (line, other) in enumerate(
        zip(got_lines, wanted_lines, strict=False), 1
    ):
        if line != other:
            return f"line {number} is {line[:100]!r}, expected {other[:100]!r}"
    return f"{len(got_lines)} lines, expected {len(wanted_lines)}"
