"""No password, or base64 form of one, reaches logs, reprs or error text.

Each test logs at DEBUG everything a caller would naturally log (events,
credentials, exceptions) while logins succeed and fail, then scans the
captured output.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import argon2
import pytest

from spoolgate.auth import Credential, PasswdAuthenticator, set_password
from spoolgate.errors import SpoolgateError
from spoolgate.pop3 import (
    Pending,
    POP3Session,
    ProtocolConfig,
    decode_plain,
)

PASSWORD = "Tr0ub4dor&3-correct-horse"
WRONG = "wrong-battery-staple-9"
USER = "ann"

log = logging.getLogger("spoolgate.test")


def secret_forms() -> list[str]:
    """Return each password and the base64 strings a log could leak."""
    forms = []
    for password in (PASSWORD, WRONG):
        forms.append(password)
        forms.append(base64.b64encode(password.encode()).decode())
        forms.append(base64.b64encode(f"\0{USER}\0{password}".encode()).decode())
    return forms


def assert_no_secret(text: str) -> None:
    for form in secret_forms():
        assert form not in text, f"secret form {form!r} leaked"


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    path.write_text(
        f"{USER}:{{ARGON2ID}}{argon2.PasswordHasher(1, 8, 1).hash(PASSWORD)}\n"
    )
    path.chmod(0o600)
    return path


def test_passwd_logins_leak_nothing(
    passwd: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = PasswdAuthenticator(passwd)
    for user, password in [(USER, PASSWORD), (USER, WRONG), ("zed", PASSWORD)]:
        credential = Credential(user, password)
        log.debug("login attempt credential=%r", credential)
        try:
            backend.authenticate(credential)
        except SpoolgateError as exc:
            log.warning("login failed error=%s repr=%r", exc, exc)
    assert "login failed" in caplog.text
    assert_no_secret(caplog.text)


def test_set_password_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    set_password(tmp_path / "passwd", USER, PASSWORD)
    assert_no_secret(caplog.text)


def run_session(lines: bytes, grant: bool) -> None:
    session = POP3Session(ProtocolConfig(allow_plaintext_auth=True))
    session.receive_data(lines)
    session.receive_data(b"")
    while (event := session.next_event()) is not Pending.CLOSED:
        log.debug("event %r", event)
        if event is Pending.PAUSED and session.state.value == "await auth":
            session.auth_succeeded() if grant else session.auth_failed()
        elif event is Pending.PAUSED:
            break


@pytest.mark.parametrize("grant", [True, False])
def test_protocol_events_leak_nothing(
    grant: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    run_session(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode(), grant)
    run_session(b"AUTH PLAIN " + plain + b"\r\n", grant)
    run_session(b"AUTH PLAIN\r\n" + plain + b"\r\n", grant)
    assert "AuthRequest(user='ann'" in caplog.text
    assert_no_secret(caplog.text)


def test_sasl_errors_leak_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = [
        base64.b64encode(f"{USER}\0{PASSWORD}".encode()),
        base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())[:-3] + b"!!!",
        base64.b64encode(f"\0{USER}\0{PASSWORD}\0extra".encode()),
    ]
    for response in bad:
        with pytest.raises(SpoolgateError) as info:
            decode_plain(response)
        log.warning("bad SASL response error=%s repr=%r", info.value, info.value)
    assert_no_secret(caplog.text)


def test_credential_repr_hides_password() -> None:
    credential = Credential(USER, PASSWORD)
    assert_no_secret(repr(credential))
    assert_no_secret(str(credential))
