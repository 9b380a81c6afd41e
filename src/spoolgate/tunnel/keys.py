"""Make tunnel keys and self-signed certificates, and compute fingerprints.

A fingerprint is ``sha256:`` followed by the lowercase hex SHA-256 digest of
the certificate in DER form. Each side pins the other's fingerprint in its
config.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from spoolgate.errors import ConfigError, TunnelError

KEY_TYPES = ("ed25519", "p256")
DEFAULT_DAYS = 825
FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{64}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPair:
    """Paths of a written key and certificate, and the certificate's pin."""

    key_path: Path
    cert_path: Path
    fingerprint: str
    not_after: datetime.datetime


def fingerprint_der(der: bytes) -> str:
    """Return the pin of a DER certificate: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def check_fingerprint(text: str) -> str:
    """Return ``text`` normalised to lowercase; raise ConfigError if malformed."""
    value = text.strip().lower()
    if not FINGERPRINT_RE.fullmatch(value):
        raise ConfigError(
            f"invalid fingerprint {text!r}: expected sha256: and 64 hex digits, "
            "as printed by spoolgate keygen"
        )
    return value


def load_cert_pem(path: Path) -> x509.Certificate:
    """Read one PEM certificate; raise ConfigError if unreadable or invalid."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read certificate {path}: {exc.strerror}") from exc
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"invalid PEM certificate {path}: {exc}") from exc


def cert_fingerprint(cert: x509.Certificate) -> str:
    """Return the pin of a loaded certificate."""
    return fingerprint_der(cert.public_bytes(serialization.Encoding.DER))


def generate_key(key_type: str) -> PrivateKey:
    """Make a new private key of ``key_type`` (one of KEY_TYPES)."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ConfigError(f"unknown key type {key_type!r}: use one of {KEY_TYPES}")


def make_certificate(
    key: PrivateKey, name: str, now: datetime.datetime, days: int
) -> x509.Certificate:
    """Make a self-signed certificate for ``key``, valid from ``now`` for ``days``.

    The certificate allows both TLS server and client use, so one keygen
    serves either side. It carries no key usage limits, which lets OpenSSL
    accept it as its own trust anchor on the bastion.
    """
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def write_key_pair(
    directory: Path,
    name: str,
    *,
    key_type: str = "ed25519",
    days: int = DEFAULT_DAYS,
    now: datetime.datetime,
) -> KeyPair:
    """Write ``NAME.key`` (mode 0600, never overwritten) and ``NAME.crt``."""
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid key name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64 characters, not starting with a punctuation mark)"
        )
    if days < 1:
        raise ConfigError(f"invalid --days {days}: must be >= 1")
    key = generate_key(key_type)
    cert = make_certificate(key, name, now, days)
    key_path = directory / f"{name}.key"
    cert_path = directory / f"{name}.crt"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new_file(key_path, key_pem, 0o600)
    _write_new_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return KeyPair(
        key_path, cert_path, cert_fingerprint(cert), cert.not_valid_after_utc
    )


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError as exc:
        raise TunnelError(
            f"cannot write {path}: file exists; remove it or choose another name"
        ) from exc
    except OSError as exc:
        raise TunnelError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as file:
        # The umask may have cleared bits of ``mode``; set them exactly.
        os.fchmod(fd, mode)
        file.write(data)
