"""The PAM backend against real pam_unix, a real service file and a real user.

Needs root: the test writes /etc/pam.d/spoolgate-test-<random> and creates
a system user with useradd and chpasswd, and removes both afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spoolgate.auth import Credential, PAMAuthenticator
from spoolgate.errors import AuthBackendError, LoginFailedError

PAM_DIR = Path("/etc/pam.d")
PAM_UNIX = [
    Path("/lib/x86_64-linux-gnu/security/pam_unix.so"),
    Path("/usr/lib/x86_64-linux-gnu/security/pam_unix.so"),
    Path("/lib/security/pam_unix.so"),
    Path("/usr/lib/security/pam_unix.so"),
    Path("/usr/lib64/security/pam_unix.so"),
]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to add a system user"),
    pytest.mark.skipif(
        shutil.which("useradd") is None or shutil.which("chpasswd") is None,
        reason="useradd or chpasswd not installed (Debian package passwd)",
    ),
    pytest.mark.skipif(
        not any(path.exists() for path in PAM_UNIX),
        reason="pam_unix.so not found (Debian package libpam-modules)",
    ),
]


@dataclass
class PAMSetup:
    service: str
    user: str
    password: str = field(repr=False)


def write_service(name: str, text: str) -> Path:
    path = PAM_DIR / name
    path.write_text(text)
    return path


@pytest.fixture
def pam_setup() -> Iterator[PAMSetup]:
    tag = secrets.token_hex(4)
    setup = PAMSetup(f"spoolgate-test-{tag}", f"sgt{tag}", secrets.token_urlsafe(12))
    # nodelay: pam_unix otherwise sleeps about 2 s after each failure.
    service = write_service(
        setup.service,
        "auth required pam_unix.so nodelay\naccount required pam_unix.so\n",
    )
    try:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", setup.user],
            check=True,
        )
        try:
            subprocess.run(
                ["chpasswd"],
                input=f"{setup.user}:{setup.password}\n",
                text=True,
                check=True,
            )
            yield setup
        finally:
            subprocess.run(["userdel", setup.user], check=True)
    finally:
        service.unlink()


def test_pam_right_password_accepted(pam_setup: PAMSetup) -> None:
    backend = PAMAuthenticator(pam_setup.service)
    credential = Credential(pam_setup.user, pam_setup.password)
    assert backend.authenticate(credential) == pam_setup.user


def test_pam_wrong_password_rejected(pam_setup: PAMSetup) -> None:
    backend = PAMAuthenticator(pam_setup.service)
    with pytest.raises(LoginFailedError):
        backend.authenticate(Credential(pam_setup.user, pam_setup.password + "x"))


def test_pam_unknown_user_same_error(pam_setup: PAMSetup) -> None:
    backend = PAMAuthenticator(pam_setup.service)
    with pytest.raises(LoginFailedError) as unknown:
        backend.authenticate(Credential(pam_setup.user + "nobody", "pw"))
    with pytest.raises(LoginFailedError) as wrong:
        backend.authenticate(Credential(pam_setup.user, "pw"))
    assert str(unknown.value) == str(wrong.value)


def test_pam_nul_in_password_rejected(pam_setup: PAMSetup) -> None:
    backend = PAMAuthenticator(pam_setup.service)
    with pytest.raises(LoginFailedError):
        backend.authenticate(Credential(pam_setup.user, pam_setup.password + "\0"))


def test_pam_broken_service_is_backend_error(pam_setup: PAMSetup) -> None:
    name = pam_setup.service + "-broken"
    path = write_service(name, "auth required pam_spoolgate_missing.so\n")
    try:
        backend = PAMAuthenticator(name)
        with pytest.raises(AuthBackendError, match=f"/etc/pam.d/{name}") as info:
            backend.authenticate(Credential(pam_setup.user, pam_setup.password))
        assert pam_setup.password not in str(info.value)
    finally:
        path.unlink()
