"""Authentication backends behind one interface, ``Authenticator``.

``PasswdAuthenticator`` reads a Dovecot-compatible passwd file with
ARGON2ID, BLF-CRYPT or SHA512-CRYPT hashes; ``PAMAuthenticator`` checks
passwords through a PAM service. Both raise LoginFailedError with one
message for an unknown user and a wrong password, and never put the
password in an error, ``repr`` or log line.
"""

from spoolgate.auth.credential import Authenticator, Credential
from spoolgate.auth.hashes import (
    SCHEMES,
    StoredHash,
    hash_password,
    parse_stored_hash,
    verify_password,
)
from spoolgate.auth.pam import PAMAuthenticator
from spoolgate.auth.passwd import (
    PasswdAuthenticator,
    PasswdEntry,
    parse_passwd,
    set_password,
)

__all__ = [
    "SCHEMES",
    "Authenticator",
    "Credential",
    "PAMAuthenticator",
    "PasswdAuthenticator",
    "PasswdEntry",
    "StoredHash",
    "hash_password",
    "parse_passwd",
    "parse_stored_hash",
    "set_password",
    "verify_password",
]
