"""The passwd-file backend: Dovecot-compatible lines of user and hash.

Format, one user per line: ``user:{SCHEME}hash[:more fields]``. Fields
after the hash (Dovecot's uid, gid, home and extra fields) are kept when
the file is rewritten but otherwise ignored. Empty lines and lines
starting with ``#`` are skipped. The file is reread when its identity
(inode, size, mtime) changes, so ``spoolgate passwd`` takes effect at the
next login.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from spoolgate.auth.credential import Credential
from spoolgate.auth.hashes import (
    StoredHash,
    hash_password,
    make_dummy,
    parse_stored_hash,
    verify_password,
)
from spoolgate.errors import AuthBackendError, LoginFailedError, PasswdFormatError

__all__ = ["PasswdAuthenticator", "PasswdEntry", "parse_passwd", "set_password"]

log = logging.getLogger(__name__)

LOGIN_FAILED = "authentication failed: wrong user name or password"


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One user's line: the hash and the fields after it, kept verbatim."""

    user: str
    stored: StoredHash
    extra: tuple[str, ...] = ()

    def to_line(self) -> str:
        """Return the line as written to the file, without a newline."""
        return ":".join([self.user, str(self.stored), *self.extra])


def check_user_name(user: str) -> None:
    """Raise PasswdFormatError unless ``user`` can be a passwd-file key."""
    if not user or ":" in user or user.startswith("#"):
        raise PasswdFormatError(
            f"invalid user name {user!r}: must be non-empty, without ':' "
            "and not starting with '#'"
        )
    if any(not char.isprintable() or char.isspace() for char in user):
        raise PasswdFormatError(
            f"invalid user name {user!r}: spaces and control characters are not allowed"
        )


def parse_passwd(text: str, source: str) -> dict[str, PasswdEntry]:
    """Parse a passwd file; raise one PasswdFormatError listing every bad line."""
    entries: dict[str, PasswdEntry] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            entry = _parse_line(line)
        except PasswdFormatError as exc:
            problems.append(f"{source}:{number}: {exc}")
            continue
        if entry.user in entries:
            problems.append(f"{source}:{number}: duplicate user {entry.user!r}")
        entries[entry.user] = entry
    if problems:
        raise PasswdFormatError("invalid passwd file:\n  " + "\n  ".join(problems))
    return entries


def _parse_line(line: str) -> PasswdEntry:
    user, sep, rest = line.partition(":")
    if not sep:
        raise PasswdFormatError("missing ':' between user name and password hash")
    check_user_name(user)
    password_field, _, extra = rest.partition(":")
    stored = parse_stored_hash(password_field)
    return PasswdEntry(user, stored, tuple(extra.split(":")) if extra else ())


class PasswdAuthenticator:
    """Check logins against a passwd file; safe to call from several threads.

    A user not in the file is checked against a dummy hash with the scheme
    and cost of the first entry, so the reply takes about as long as for a
    real user with that kind of hash.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._identity: tuple[int, int, int, int] | None = None
        self._entries: dict[str, PasswdEntry] = {}
        self._dummy: StoredHash | None = None
        self._reload_if_changed()

    @property
    def path(self) -> Path:
        """The passwd file."""
        return self._path

    def authenticate(self, credential: Credential) -> str:
        """Return the user name if the password matches; see Authenticator."""
        with self._lock:
            self._reload_if_changed()
            entry = self._entries.get(credential.user)
            stored = self._dummy if entry is None else entry.stored
        assert stored is not None, "a successful reload always sets the dummy"
        matched = verify_password(stored, credential.password)
        if entry is None or not matched:
            raise LoginFailedError(LOGIN_FAILED)
        return entry.user

    def _reload_if_changed(self) -> None:
        try:
            st = self._path.stat()
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if identity == self._identity:
                return
            text = self._path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthBackendError(
                f"cannot read passwd file {self._path}: {exc}; check that it "
                "exists and is readable by the server"
            ) from exc
        try:
            entries = parse_passwd(text, str(self._path))
        except PasswdFormatError as exc:
            raise AuthBackendError(f"cannot use passwd file: {exc}") from exc
        if entries:
            self._dummy = make_dummy(next(iter(entries.values())).stored)
        else:
            self._dummy = hash_password(secrets.token_hex(16))
        self._entries, self._identity = entries, identity
        log.info("passwd file loaded path=%s users=%d", self._path, len(entries))


def set_password(path: Path, user: str, password: str) -> bool:
    """Add ``user`` or replace their hash with a new argon2id hash.

    Other lines, comments and the user's extra fields are kept. The file
    is replaced atomically and has mode 0600. Returns True if the user was
    added, False if changed. Raises PasswdFormatError if the user name is
    invalid or the existing file does not parse.
    """
    check_user_name(user)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    parse_passwd("\n".join(lines), str(path))
    stored = hash_password(password)
    added = True
    for number, line in enumerate(lines):
        if line.partition(":")[0] == user and not line.startswith("#"):
            old = _parse_line(line)
            lines[number] = PasswdEntry(user, stored, old.extra).to_line()
            added = False
    if added:
        lines.append(PasswdEntry(user, stored).to_line())
    _write_atomically(path, "".join(f"{line}\n" for line in lines))
    return added


def _write_atomically(path: Path, text: str) -> None:
    """Write a new file beside ``path`` with mode 0600, then rename it over.

    The owner and group of an existing file are kept where permitted, so
    a server running as another user can still read it.
    """
    directory = path.parent
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            _copy_owner(path, f.fileno())
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _copy_owner(path: Path, fd: int) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        log.warning(
            "cannot keep owner of passwd file path=%s uid=%d gid=%d; "
            "the new file belongs to the user running this command",
            path,
            st.st_uid,
            st.st_gid,
        )
