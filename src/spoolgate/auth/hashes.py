"""Password hash schemes of Dovecot's passwd-file: verify, create, imitate.

Supported schemes, named as Dovecot names them in ``{SCHEME}`` prefixes:

- ``ARGON2ID``: argon2-cffi; also the scheme ``hash_password`` writes.
- ``BLF-CRYPT``: bcrypt (Dovecot writes ``$2y$``, which bcrypt accepts).
- ``SHA512-CRYPT``: ``$6$`` SHA-crypt, verified with libpass (the
  maintained fork of passlib), because the stdlib ``crypt`` module is
  deprecated and gone from Python 3.13.

Each library compares the computed hash in constant time. Passwords are
``str`` and are encoded as UTF-8 with ``surrogateescape``, so octets a
client sent that are not UTF-8 reach the hash unchanged.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError
from passlib.hash import sha512_crypt

from spoolgate.errors import PasswdFormatError

__all__ = [
    "SCHEMES",
    "StoredHash",
    "hash_password",
    "make_dummy",
    "parse_stored_hash",
    "verify_password",
]

SCHEMES = ("ARGON2ID", "BLF-CRYPT", "SHA512-CRYPT")

# bcrypt uses only the first 72 octets of a password; Dovecot's
# crypt_blowfish truncates the same way, and bcrypt 5 raises instead.
BCRYPT_MAX_OCTETS = 72

_BCRYPT_RE = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True, slots=True)
class StoredHash:
    """A scheme name and the hash string after the ``{SCHEME}`` prefix."""

    scheme: str
    encoded: str = field(repr=False)

    def __str__(self) -> str:
        return f"{{{self.scheme}}}{self.encoded}"


def parse_stored_hash(text: str) -> StoredHash:
    """Split ``{SCHEME}hash`` and check the hash is well-formed for the scheme.

    Raises PasswdFormatError naming the scheme but never the hash.
    """
    match = re.fullmatch(r"\{([A-Za-z0-9-]+)\}(.+)", text)
    if match is None:
        raise PasswdFormatError(
            "password field must start with a {SCHEME} prefix, "
            f"one of {', '.join(SCHEMES)}"
        )
    stored = StoredHash(match[1].upper(), match[2])
    if stored.scheme not in SCHEMES:
        raise PasswdFormatError(
            f"unsupported hash scheme {{{stored.scheme}}}; "
            f"use one of {', '.join(SCHEMES)} (spoolgate passwd writes ARGON2ID)"
        )
    if not _is_well_formed(stored):
        raise PasswdFormatError(f"malformed {{{stored.scheme}}} hash")
    return stored


def _is_well_formed(stored: StoredHash) -> bool:
    if stored.scheme == "ARGON2ID":
        try:
            params = argon2.extract_parameters(stored.encoded)
        except InvalidHashError:
            return False
        return params.type is argon2.Type.ID
    if stored.scheme == "BLF-CRYPT":
        return _BCRYPT_RE.fullmatch(stored.encoded) is not None
    try:
        sha512_crypt.from_string(stored.encoded)
    except ValueError:
        return False
    return True


def _encode(password: str) -> bytes:
    return password.encode("utf-8", "surrogateescape")


def verify_password(stored: StoredHash, password: str) -> bool:
    """Return True if ``password`` matches ``stored``. Slow by design."""
    secret = _encode(password)
    if stored.scheme == "ARGON2ID":
        try:
            return argon2.PasswordHasher().verify(stored.encoded, secret)
        except VerificationError:
            return False
    if stored.scheme == "BLF-CRYPT":
        return bcrypt.checkpw(secret[:BCRYPT_MAX_OCTETS], stored.encoded.encode())
    try:
        return bool(sha512_crypt.verify(secret, stored.encoded))
    except ValueError:
        # libpass rejects NUL octets and passwords over 4096 octets, and no
        # stored hash can match those.
        return False


def hash_password(password: str) -> StoredHash:
    """Hash ``password`` with argon2id at argon2-cffi's default cost."""
    return StoredHash("ARGON2ID", argon2.PasswordHasher().hash(_encode(password)))


def make_dummy(template: StoredHash) -> StoredHash:
    """Return a hash of a random secret with the scheme and cost of ``template``.

    Verifying a password of an unknown user against it takes as long as
    verifying one of a real user hashed like ``template``.
    """
    secret = secrets.token_hex(16).encode()
    if template.scheme == "ARGON2ID":
        params = argon2.extract_parameters(template.encoded)
        hasher = argon2.PasswordHasher.from_parameters(params)
        return StoredHash("ARGON2ID", hasher.hash(secret))
    if template.scheme == "BLF-CRYPT":
        cost = int(template.encoded[4:6])
        encoded = bcrypt.hashpw(secret, bcrypt.gensalt(rounds=cost))
        return StoredHash("BLF-CRYPT", encoded.decode())
    rounds = sha512_crypt.from_string(template.encoded).rounds
    encoded = sha512_crypt.using(rounds=rounds).hash(secret)
    return StoredHash("SHA512-CRYPT", encoded)
