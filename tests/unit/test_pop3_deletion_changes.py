"""POP3Session.deletion_changes, which tells the server to drop read-ahead messages."""

from __future__ import annotations

from test_pop3_protocol import feed, logged_in


def test_deletion_changes_starts_at_zero() -> None:
    assert logged_in().deletion_changes == 0


def test_deletion_changes_counts_dele_and_rset() -> None:
    session = logged_in()
    feed(session, b"DELE 1\r\n")
    assert session.deletion_changes == 1
    feed(session, b"RSET\r\n")
    assert session.deletion_changes == 2


def test_deletion_changes_ignores_other_commands() -> None:
    session = logged_in()
    feed(session, b"RETR 1\r\nTOP 2 0\r\nLIST\r\nUIDL\r\nNOOP\r\nSTAT\r\n")
    assert session.deletion_changes == 0


def test_deletion_changes_ignores_rejected_dele() -> None:
    session = logged_in()
    feed(session, b"DELE 9\r\nDELE x\r\n")
    assert session.deletion_changes == 0
