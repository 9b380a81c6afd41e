"""Tests of password hashes, passwd-file parsing and the passwd backend."""

from __future__ import annotations

import io
import json
import stat
import statistics
import time
from pathlib import Path

import argon2
import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import sha512_crypt

from spoolgate.auth import (
    Credential,
    PasswdAuthenticator,
    StoredHash,
    hash_password,
    parse_passwd,
    parse_stored_hash,
    set_password,
    verify_password,
)
from spoolgate.auth.hashes import make_dummy
from spoolgate.cli import main
from spoolgate.errors import AuthBackendError, LoginFailedError, PasswdFormatError

# The SHA-crypt specification's own test vector (Drepper, "Unix crypt using
# SHA-256 and SHA-512", test 1 of SHA-512).
SHA512_VECTOR = (
    "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4"
    "OTLiBFdcbYEdFCoEOfaS35inz1"
)
SHA512_VECTOR_PASSWORD = "Hello world!"

# Cheap costs keep the tests fast; production costs are the libraries'.
FAST_ARGON2 = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def argon2_line(user: str, password: str) -> str:
    return f"{user}:{{ARGON2ID}}{FAST_ARGON2.hash(password)}"


def bcrypt_line(user: str, password: str, cost: int = 4) -> str:
    encoded = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    # Dovecot writes the $2y$ prefix.
    return f"{user}:{{BLF-CRYPT}}$2y${encoded[4:]}"


def sha512_line(user: str, password: str) -> str:
    return f"{user}:{{SHA512-CRYPT}}{sha512_crypt.using(rounds=1000).hash(password)}"


def write_passwd(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


# Hash schemes.


def test_sha512_crypt_spec_vector_verifies() -> None:
    stored = parse_stored_hash("{SHA512-CRYPT}" + SHA512_VECTOR)
    assert verify_password(stored, SHA512_VECTOR_PASSWORD)
    assert not verify_password(stored, "Hello world?")


@pytest.mark.parametrize("make_line", [argon2_line, bcrypt_line, sha512_line])
def test_scheme_verifies_right_password(make_line: object) -> None:
    assert callable(make_line)
    line = make_line("ann", "s3cret pass")
    entry = parse_passwd(line, "passwd")["ann"]
    assert verify_password(entry.stored, "s3cret pass")
    assert not verify_password(entry.stored, "s3cret pas")


def test_scheme_prefix_case_insensitive() -> None:
    stored = parse_stored_hash("{sha512-crypt}" + SHA512_VECTOR)
    assert stored.scheme == "SHA512-CRYPT"


def test_bcrypt_long_password_truncated_like_dovecot() -> None:
    entry = parse_passwd(bcrypt_line("ann", "a" * 72), "passwd")["ann"]
    assert verify_password(entry.stored, "a" * 80)


def test_non_utf8_password_round_trips() -> None:
    password = b"caf\xe9".decode("utf-8", "surrogateescape")
    stored = StoredHash("ARGON2ID", FAST_ARGON2.hash(b"caf\xe9"))
    assert verify_password(stored, password)


def test_hash_password_writes_argon2id() -> None:
    stored = hash_password("pw")
    assert str(stored).startswith("{ARGON2ID}$argon2id$")
    assert verify_password(stored, "pw")


def test_stored_hash_repr_hides_hash() -> None:
    stored = parse_stored_hash("{SHA512-CRYPT}" + SHA512_VECTOR)
    assert SHA512_VECTOR not in repr(stored)


@pytest.mark.parametrize(
    "text",
    [
        "$6$saltstring$abc",
        "{MD5-CRYPT}$1$abc$def",
        "{PLAIN}secret",
        "{BLF-CRYPT}$2y$04$short",
        "{ARGON2ID}$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        "{SHA512-CRYPT}$5$salt$hash",
    ],
)
def test_parse_stored_hash_rejects(text: str) -> None:
    with pytest.raises(PasswdFormatError):
        parse_stored_hash(text)


def test_make_dummy_keeps_argon2_cost() -> None:
    template = StoredHash("ARGON2ID", FAST_ARGON2.hash("x"))
    dummy = make_dummy(template)
    template_params = argon2.extract_parameters(template.encoded)
    assert argon2.extract_parameters(dummy.encoded) == template_params
    assert dummy.encoded != template.encoded


def test_make_dummy_keeps_bcrypt_cost() -> None:
    template = parse_passwd(bcrypt_line("ann", "x", cost=5), "p")["ann"].stored
    assert make_dummy(template).encoded[:7] == "$2b$05$"


def test_make_dummy_keeps_sha512_rounds() -> None:
    template = parse_passwd(sha512_line("ann", "x"), "p")["ann"].stored
    dummy = make_dummy(template)
    assert sha512_crypt.from_string(dummy.encoded).rounds == 1000


# File format.


def test_parse_passwd_skips_comments_and_keeps_extra_fields() -> None:
    text = "# users\n\n" + sha512_line("ann", "pw") + "::::/home/ann::userdb_x=1\n"
    entries = parse_passwd(text, "passwd")
    assert list(entries) == ["ann"]
    assert entries["ann"].extra == ("", "", "", "/home/ann", "", "userdb_x=1")


def test_parse_passwd_lists_every_bad_line() -> None:
    text = "ann\n" + sha512_line("bob", "pw") + "\ncarl:{PLAIN}x\n"
    with pytest.raises(PasswdFormatError) as info:
        parse_passwd(text, "passwd")
    message = str(info.value)
    assert "passwd:1:" in message
    assert "passwd:3:" in message
    assert "passwd:2:" not in message


def test_parse_passwd_rejects_duplicate_user() -> None:
    line = sha512_line("ann", "pw")
    with pytest.raises(PasswdFormatError, match="duplicate user 'ann'"):
        parse_passwd(f"{line}\n{line}\n", "passwd")


def test_parse_passwd_error_hides_hash() -> None:
    with pytest.raises(PasswdFormatError) as info:
        parse_passwd("ann:{BLF-CRYPT}$2y$04$secrethashmaterial\n", "passwd")
    assert "secrethashmaterial" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_parse_passwd_raises_only_format_error(text: str) -> None:
    try:
        parse_passwd(text, "passwd")
    except PasswdFormatError:
        pass


# The backend.


def test_authenticator_accepts_each_scheme(tmp_path: Path) -> None:
    path = write_passwd(
        tmp_path / "passwd",
        argon2_line("ann", "pw-a"),
        bcrypt_line("bob", "pw-b"),
        sha512_line("cid", "pw-c"),
    )
    backend = PasswdAuthenticator(path)
    assert backend.authenticate(Credential("ann", "pw-a")) == "ann"
    assert backend.authenticate(Credential("bob", "pw-b")) == "bob"
    assert backend.authenticate(Credential("cid", "pw-c")) == "cid"


def test_authenticator_same_error_for_unknown_user(tmp_path: Path) -> None:
    backend = PasswdAuthenticator(
        write_passwd(tmp_path / "p", argon2_line("ann", "pw"))
    )
    with pytest.raises(LoginFailedError) as wrong_password:
        backend.authenticate(Credential("ann", "nope"))
    with pytest.raises(LoginFailedError) as unknown_user:
        backend.authenticate(Credential("zed", "pw"))
    assert str(wrong_password.value) == str(unknown_user.value)


def test_authenticator_unknown_user_costs_a_hash(tmp_path: Path) -> None:
    # bcrypt cost 10 takes tens of milliseconds; a dict miss without the
    # dummy hash takes microseconds. The margin is wide so load does not
    # matter; this is a check of the mechanism, not a benchmark.
    path = write_passwd(tmp_path / "p", bcrypt_line("ann", "pw", cost=10))
    backend = PasswdAuthenticator(path)

    def median_s(user: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with pytest.raises(LoginFailedError):
                backend.authenticate(Credential(user, "wrong"))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    assert median_s("nobody") > 0.3 * median_s("ann")


def test_authenticator_rereads_changed_file(tmp_path: Path) -> None:
    path = write_passwd(tmp_path / "p", sha512_line("ann", "old"))
    backend = PasswdAuthenticator(path)
    set_password(path, "ann", "new")
    assert backend.authenticate(Credential("ann", "new")) == "ann"
    with pytest.raises(LoginFailedError):
        backend.authenticate(Credential("ann", "old"))


def test_authenticator_missing_file_is_backend_error(tmp_path: Path) -> None:
    path = write_passwd(tmp_path / "p", sha512_line("ann", "pw"))
    backend = PasswdAuthenticator(path)
    path.unlink()
    with pytest.raises(AuthBackendError, match="cannot read passwd file"):
        backend.authenticate(Credential("ann", "pw"))


def test_authenticator_empty_file_rejects_everyone(tmp_path: Path) -> None:
    backend = PasswdAuthenticator(write_passwd(tmp_path / "p"))
    with pytest.raises(LoginFailedError):
        backend.authenticate(Credential("ann", "pw"))


# Writing the file.


def test_set_password_creates_file_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    assert set_password(path, "ann", "pw") is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = parse_passwd(path.read_text(), "p")["ann"]
    assert entry.stored.scheme == "ARGON2ID"
    assert verify_password(entry.stored, "pw")


def test_set_password_keeps_other_lines_and_extra_fields(tmp_path: Path) -> None:
    bob = sha512_line("bob", "pw")
    path = write_passwd(
        tmp_path / "passwd", "# comment", sha512_line("ann", "old") + ":1000:1000", bob
    )
    assert set_password(path, "ann", "new") is False
    lines = path.read_text().splitlines()
    assert lines[0] == "# comment"
    assert lines[1].endswith(":1000:1000")
    assert lines[2] == bob
    assert verify_password(parse_passwd(lines[1], "p")["ann"].stored, "new")


def test_set_password_leaves_no_temporary_file(tmp_path: Path) -> None:
    set_password(tmp_path / "passwd", "ann", "pw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]


@pytest.mark.parametrize("user", ["", "a:b", "#ann", "a b", "a\nb"])
def test_set_password_rejects_bad_user(tmp_path: Path, user: str) -> None:
    with pytest.raises(PasswdFormatError):
        set_password(tmp_path / "passwd", user, "pw")
    assert not (tmp_path / "passwd").exists()


def test_set_password_refuses_broken_file(tmp_path: Path) -> None:
    path = write_passwd(tmp_path / "passwd", "ann:{PLAIN}x")
    with pytest.raises(PasswdFormatError):
        set_password(path, "bob", "pw")
    assert path.read_text() == "ann:{PLAIN}x\n"


@pytest.mark.parametrize("password", ["nul\0inside", "x" * 5000])
def test_sha512_unusable_password_fails(password: str) -> None:
    stored = parse_stored_hash("{SHA512-CRYPT}" + SHA512_VECTOR)
    assert not verify_password(stored, password)


# The command.


def test_passwd_command_stdin_adds_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "passwd"
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["passwd", "ann", "--file", str(path), "--stdin", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "user": "ann",
        "file": str(path),
        "added": True,
    }
    entry = parse_passwd(path.read_text(), "p")["ann"]
    assert verify_password(entry.stored, "s3cret")


@pytest.mark.parametrize(
    "user", ["../x", ".ann", "a/b", "a\\b", "a:b", "a b", "é" * 200]
)
def test_passwd_command_invalid_name_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: str
) -> None:
    path = tmp_path / "passwd"
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["passwd", user, "--file", str(path), "--stdin"]) == 2
    assert not path.exists()


def test_passwd_command_empty_password_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "passwd"
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["passwd", "ann", "--file", str(path), "--stdin"]) == 2
    assert not path.exists()
