"""The bastion's login service on loopback, with real PAM and real ssh-keygen.

Needs root: the tests write /etc/pam.d/spoolgate-test-<random> and add a
system user with useradd and chpasswd, and remove both afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spoolgate import cli
from spoolgate.errors import LoginProtocolError
from spoolgate.tunnel.login import (
    KeyLogin,
    LoginClient,
    LoginService,
    LoginSettings,
    Logout,
    PasswordLogin,
    Quit,
    sign_with_ssh_key,
    signed_message,
)
from spoolgate.tunnel.rpcpolicy import ClientRule, PolicySettings, RPCPolicy

PAM_DIR = Path("/etc/pam.d")
FAILURE_DELAY_S = 0.4

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to add a system user"),
    pytest.mark.skipif(
        shutil.which("useradd") is None or shutil.which("chpasswd") is None,
        reason="useradd or chpasswd not installed (Debian package passwd)",
    ),
    pytest.mark.skipif(
        shutil.which("ssh-keygen") is None,
        reason="ssh-keygen not installed (Debian package openssh-client)",
    ),
]


@dataclass
class Setup:
    service: str
    user: str
    password: str = field(repr=False)
    keys_dir: Path


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    tag = secrets.token_hex(4)
    found = Setup(
        f"spoolgate-test-{tag}", f"sgh{tag}", secrets.token_urlsafe(12), tmp_path
    )
    pam_file = PAM_DIR / found.service
    # nodelay: pam_unix otherwise sleeps about 2 s after each failure.
    pam_file.write_text(
        "auth required pam_unix.so nodelay\naccount required pam_unix.so\n"
    )
    try:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", found.user],
            check=True,
        )
        try:
            subprocess.run(
                ["chpasswd"], input=f"{found.user}:{found.password}\n", text=True,
                check=True,
            )  # fmt: skip
            yield found
        finally:
            subprocess.run(["userdel", found.user], check=True)
    finally:
        pam_file.unlink()


def make_key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
    )
    return key


def run_service(
    setup: Setup,
    body: Callable[[LoginService, RPCPolicy], Awaitable[None]],
    addresses: dict[str, str] | None = None,
    timeout_s: float = 10.0,
    methods: tuple[str, ...] = ("password", "ssh-key"),
    log_interval_s: float = 60.0,
) -> None:
    policy = RPCPolicy(PolicySettings((ClientRule("alice", ((b"export",),)),)))
    settings = LoginSettings(
        host="127.0.0.1",
        port=0,
        ttl_s=600.0,
        pam_service=setup.service,
        authorized_keys=str(setup.keys_dir / "%u.keys"),
        failure_delay_s=FAILURE_DELAY_S,
        timeout_s=timeout_s,
        methods=methods,
    )

    async def main() -> None:
        service = LoginService(
            policy,
            {"127.0.0.1": "alice"} if addresses is None else addresses,
            settings,
            log_interval_s=log_interval_s,
        )
        await service.start()
        try:
            await asyncio.wait_for(body(service, policy), 60)
        finally:
            await service.close()

    asyncio.run(main())


def login_once(port: int, make: Callable[[str], object]) -> tuple[bool, str, float]:
    client = LoginClient("127.0.0.1", port, 10.0)
    try:
        started = time.monotonic()
        reply = client.request(make(client.nonce))  # type: ignore[arg-type]
        elapsed = time.monotonic() - started
        client.request(Quit())
    finally:
        client.close()
    return reply.ok, reply.text, elapsed


def assert_no_secret(caplog: pytest.LogCaptureFixture, secret: str) -> None:
    encoded = base64.b64encode(secret.encode()).decode()
    for record in caplog.records:
        text = record.getMessage()
        assert secret not in text
        assert encoded not in text


def test_login_password_binds_uid_and_gids(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spoolgate.tunnel.login")
    entry = pwd.getpwnam(setup.user)

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        ok, text, _ = await asyncio.to_thread(
            login_once,
            service.port,
            lambda nonce: PasswordLogin(setup.user, setup.password),
        )
        assert ok, text
        assert f"uid={entry.pw_uid}" in text
        (binding,) = policy.bindings("alice", time.monotonic())
        assert binding.user.uid == entry.pw_uid
        assert entry.pw_gid in binding.user.gids

    run_service(setup, body)
    assert any("login ok client=alice" in r.getMessage() for r in caplog.records)
    assert_no_secret(caplog, setup.password)


def test_login_wrong_password_refused_delayed_logged(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spoolgate.tunnel.login")
    wrong = setup.password + "x"

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        ok, text, elapsed = await asyncio.to_thread(
            login_once, service.port, lambda nonce: PasswordLogin(setup.user, wrong)
        )
        assert not ok
        assert text == "login failed"
        assert elapsed >= FAILURE_DELAY_S
        assert policy.bindings("alice", time.monotonic()) == ()

    run_service(setup, body)
    failed = [r for r in caplog.records if "login failed" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING
    assert "client=alice peer=127.0.0.1:" in failed[0].getMessage()
    assert f"user={setup.user}" in failed[0].getMessage()
    assert_no_secret(caplog, wrong)
    assert_no_secret(caplog, setup.password)


def test_login_unknown_user_gets_same_reply(setup: Setup) -> None:
    async def body(service: LoginService, policy: RPCPolicy) -> None:
        result = await asyncio.to_thread(
            login_once,
            service.port,
            lambda nonce: PasswordLogin(setup.user + "z", "pw"),
        )
        assert result[:2] == (False, "login failed")

    run_service(setup, body)


def test_login_ssh_key_binds_user(setup: Setup) -> None:
    key = make_key(setup.keys_dir, "good")
    keys_file = setup.keys_dir / f"{setup.user}.keys"
    keys_file.write_text(Path(f"{key}.pub").read_text())
    keys_file.chmod(0o644)

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        def make(nonce: str) -> KeyLogin:
            signature = sign_with_ssh_key(key, signed_message(nonce, setup.user))
            return KeyLogin(setup.user, signature)

        ok, text, _ = await asyncio.to_thread(login_once, service.port, make)
        assert ok, text
        assert len(policy.bindings("alice", time.monotonic())) == 1

    run_service(setup, body)


def test_login_wrong_ssh_key_refused_delayed_logged(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spoolgate.tunnel.login")
    good = make_key(setup.keys_dir, "good")
    wrong = make_key(setup.keys_dir, "wrong")
    (setup.keys_dir / f"{setup.user}.keys").write_text(Path(f"{good}.pub").read_text())

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        def make(nonce: str) -> KeyLogin:
            signature = sign_with_ssh_key(wrong, signed_message(nonce, setup.user))
            return KeyLogin(setup.user, signature)

        ok, text, elapsed = await asyncio.to_thread(login_once, service.port, make)
        assert (ok, text) == (False, "login failed")
        assert elapsed >= FAILURE_DELAY_S
        assert policy.bindings("alice", time.monotonic()) == ()

    run_service(setup, body)
    failed = [
        r.getMessage() for r in caplog.records if "login failed" in r.getMessage()
    ]
    assert len(failed) == 1
    assert "client=alice" in failed[0]
    assert "method=ssh-key" in failed[0]
    private = wrong.read_text()
    assert all(private not in r.getMessage() for r in caplog.records)


def test_login_signature_over_old_nonce_refused(setup: Setup) -> None:
    key = make_key(setup.keys_dir, "good")
    (setup.keys_dir / f"{setup.user}.keys").write_text(Path(f"{key}.pub").read_text())
    stale = sign_with_ssh_key(key, signed_message("0" * 32, setup.user))

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        result = await asyncio.to_thread(
            login_once, service.port, lambda nonce: KeyLogin(setup.user, stale)
        )
        assert result[:2] == (False, "login failed")

    run_service(setup, body)


def test_login_group_writable_keys_file_refused(setup: Setup) -> None:
    key = make_key(setup.keys_dir, "good")
    keys_file = setup.keys_dir / f"{setup.user}.keys"
    keys_file.write_text(Path(f"{key}.pub").read_text())
    keys_file.chmod(0o664)

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        def make(nonce: str) -> KeyLogin:
            signature = sign_with_ssh_key(key, signed_message(nonce, setup.user))
            return KeyLogin(setup.user, signature)

        result = await asyncio.to_thread(login_once, service.port, make)
        assert result[:2] == (False, "login failed")

    run_service(setup, body)


def test_logout_removes_binding(setup: Setup) -> None:
    async def body(service: LoginService, policy: RPCPolicy) -> None:
        await asyncio.to_thread(
            login_once,
            service.port,
            lambda nonce: PasswordLogin(setup.user, setup.password),
        )
        assert len(policy.bindings("alice", time.monotonic())) == 1
        ok, text, _ = await asyncio.to_thread(
            login_once, service.port, lambda nonce: Logout(setup.user)
        )
        assert (ok, text) == (True, "unbound")
        assert policy.bindings("alice", time.monotonic()) == ()

    run_service(setup, body)


def test_login_from_unknown_address_closed(setup: Setup) -> None:
    async def body(service: LoginService, policy: RPCPolicy) -> None:
        with pytest.raises(LoginProtocolError, match="closed"):
            await asyncio.to_thread(LoginClient, "127.0.0.1", service.port, 10.0)

    run_service(setup, body, addresses={"10.9.9.9": "alice"})


def test_login_idle_session_closed_after_timeout(setup: Setup) -> None:
    async def body(service: LoginService, policy: RPCPolicy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        greeting = await reader.readline()
        assert greeting.startswith(b"SPOOLGATE-LOGIN 1 ")
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - started < 5
        writer.close()

    run_service(setup, body, timeout_s=0.5)


def test_login_timeouts_logged_once_then_counted(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spoolgate.tunnel.login")

    async def idle_session(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        await asyncio.gather(*(idle_session(service.port) for _ in range(5)))

    run_service(setup, body, timeout_s=1.0)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    ended = [m for m in messages if "login session ended client=alice" in m]
    assert len(ended) == 1
    assert "timed out after 1 s" in ended[0]
    summaries = [m for m in messages if "login sessions timed out client=alice" in m]
    assert len(summaries) == 1
    assert "client=alice: 4 more in" in summaries[0]


def test_login_overlong_line_gets_bad(setup: Setup) -> None:
    async def body(service: LoginService, policy: RPCPolicy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        await reader.readline()
        writer.write(b"PASSWORD x " + b"A" * 10000)
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 10)
        assert reply.startswith(b"BAD ")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()

    run_service(setup, body)


def test_spoolgate_login_command_password_stdin(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(setup.password + "\n"))

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        argv = [
            "login", "--server", f"127.0.0.1:{service.port}", "--user", setup.user,
            "--password-stdin", "--json",
        ]  # fmt: skip
        code = await asyncio.to_thread(cli.main, argv)
        assert code == 0
        assert len(policy.bindings("alice", time.monotonic())) == 1
        argv = ["logout", "--server", f"127.0.0.1:{service.port}", "--user", setup.user]
        assert await asyncio.to_thread(cli.main, argv) == 0
        assert policy.bindings("alice", time.monotonic()) == ()

    run_service(setup, body)
    out = capsys.readouterr().out
    assert '"ok": true' in out
    assert setup.password not in out


def test_login_parallel_failures_are_serialised(setup: Setup) -> None:
    wrong = setup.password + "x"

    async def body(service: LoginService, policy: RPCPolicy) -> None:
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                asyncio.to_thread(
                    login_once,
                    service.port,
                    lambda nonce: PasswordLogin(setup.user, wrong),
                )
                for _ in range(3)
            )
        )
        assert [ok for ok, _, _ in results] == [False, False, False]
        assert time.monotonic() - started >= 3 * FAILURE_DELAY_S

    run_service(setup, body)


def test_login_disabled_method_refused(setup: Setup) -> None:
    async def body(service: LoginService, policy: RPCPolicy) -> None:
        ok, text, elapsed = await asyncio.to_thread(
            login_once,
            service.port,
            lambda nonce: PasswordLogin(setup.user, setup.password),
        )
        assert (ok, text) == (False, "login failed")
        assert elapsed >= FAILURE_DELAY_S
        assert policy.bindings("alice", time.monotonic()) == ()

    run_service(setup, body, methods=("ssh-key",))
