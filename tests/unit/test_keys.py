"""Tests for spoolgate.tunnel.keys and the pin checks in spoolgate.tunnel.tls."""

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spoolgate.errors import ConfigError, PinError, TunnelError
from spoolgate.tunnel import keys, tls

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)


def der_of(path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("key_type", keys.KEY_TYPES)
def test_write_key_pair_modes_and_fingerprint(tmp_path: Path, key_type: str) -> None:
    pair = keys.write_key_pair(tmp_path, "alice", key_type=key_type, now=NOW)
    assert stat.S_IMODE(pair.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pair.cert_path.stat().st_mode) == 0o644
    assert keys.FINGERPRINT_RE.fullmatch(pair.fingerprint)
    assert pair.fingerprint == keys.fingerprint_der(der_of(pair.cert_path))
    assert pair.not_after == NOW + datetime.timedelta(days=keys.DEFAULT_DAYS)


def test_write_key_pair_existing_key_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "alice.key").write_text("keep me")
    with pytest.raises(TunnelError, match="file exists"):
        keys.write_key_pair(tmp_path, "alice", now=NOW)
    assert (tmp_path / "alice.key").read_text() == "keep me"


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x"])
def test_write_key_pair_bad_name_raises(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid key name"):
        keys.write_key_pair(tmp_path, name, now=NOW)


def test_write_key_pair_zero_days_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--days"):
        keys.write_key_pair(tmp_path, "alice", days=0, now=NOW)


def test_check_fingerprint_normalises_case() -> None:
    value = "SHA256:" + "AB" * 32
    assert keys.check_fingerprint(value) == "sha256:" + "ab" * 32


@pytest.mark.parametrize("value", ["", "sha256:abc", "md5:" + "0" * 32, "0" * 64])
def test_check_fingerprint_malformed_raises(value: str) -> None:
    with pytest.raises(ConfigError, match="invalid fingerprint"):
        keys.check_fingerprint(value)


def test_match_pin_returns_pinned_value(tmp_path: Path) -> None:
    pair = keys.write_key_pair(tmp_path, "alice", now=NOW)
    der = der_of(pair.cert_path)
    assert tls.match_pin(der, {pair.fingerprint: "alice"}, NOW) == "alice"


def test_match_pin_unknown_cert_raises(tmp_path: Path) -> None:
    pair = keys.write_key_pair(tmp_path, "alice", now=NOW)
    with pytest.raises(PinError, match="not pinned"):
        tls.check_pin(der_of(pair.cert_path), ["sha256:" + "0" * 64], NOW)


def test_match_pin_expired_cert_raises(tmp_path: Path) -> None:
    pair = keys.write_key_pair(tmp_path, "alice", days=1, now=NOW)
    later = NOW + datetime.timedelta(days=2)
    with pytest.raises(PinError, match="expired"):
        tls.check_pin(der_of(pair.cert_path), [pair.fingerprint], later)


def test_match_pin_not_yet_valid_cert_raises(tmp_path: Path) -> None:
    pair = keys.write_key_pair(tmp_path, "alice", now=NOW)
    earlier = NOW - datetime.timedelta(days=1)
    with pytest.raises(PinError, match="not valid before"):
        tls.check_pin(der_of(pair.cert_path), [pair.fingerprint], earlier)


def test_contexts_allow_only_tls13(tmp_path: Path) -> None:
    pair = keys.write_key_pair(tmp_path, "alice", now=NOW)
    client = tls.client_context(pair.cert_path, pair.key_path)
    server = tls.server_context(pair.cert_path, pair.key_path, "")
    for context in (client, server):
        assert context.minimum_version.name == "TLSv1_3"
        assert context.maximum_version.name == "TLSv1_3"


def test_context_mismatched_key_raises(tmp_path: Path) -> None:
    alice = keys.write_key_pair(tmp_path, "alice", now=NOW)
    bob = keys.write_key_pair(tmp_path, "bob", now=NOW)
    with pytest.raises(TunnelError, match="same spoolgate keygen run"):
        tls.client_context(alice.cert_path, bob.key_path)
