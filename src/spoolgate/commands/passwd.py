"""``spoolgate passwd USER``: add a user to a passwd file or change a password."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from spoolgate.auth import set_password
from spoolgate.auth.passwd import check_user_name
from spoolgate.errors import AuthError, ConfigError, PasswdFormatError
from spoolgate.pop3.protocol import is_valid_user_name

DEFAULT_FILE = Path("/etc/spoolgate/passwd")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``passwd`` subcommand."""
    parser = subparsers.add_parser(
        "passwd",
        help="add a POP3 user or change a password in a passwd file",
        description="Hash the password with argon2id and write USER's line to "
        "the passwd file, which is replaced atomically with mode 0600. Other "
        "lines, including Dovecot {BLF-CRYPT} and {SHA512-CRYPT} ones, are kept.",
    )
    parser.add_argument("user", help="the user name, as typed at POP3 login")
    parser.add_argument(
        "--file",
        type=Path,
        default=DEFAULT_FILE,
        help=f"passwd file to change (default: {DEFAULT_FILE})",
    )
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from the first line of standard input "
        "(default: prompt twice on the terminal)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def read_password(from_stdin: bool) -> str:
    """Return the new password from stdin or from two terminal prompts."""
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise ConfigError("passwords do not match; nothing was changed")
    if not password:
        raise ConfigError("empty password; nothing was changed")
    return password


def _check_user(user: str) -> None:
    """Refuse a name pop3d would never accept at login or in the passwd file."""
    try:
        check_user_name(user)
    except PasswdFormatError as exc:
        raise ConfigError(f"{exc}; nothing was changed") from exc
    if not is_valid_user_name(user):
        raise ConfigError(
            f"invalid user name {user!r}: pop3d refuses names that are empty, "
            "longer than 255 octets, start with '.' or contain '/', '\\', ':', "
            "spaces or control characters; nothing was changed"
        )


def run(args: argparse.Namespace) -> int:
    """Write the user's new hash and report whether the user was added."""
    path: Path = args.file
    if not path.parent.is_dir():
        raise ConfigError(
            f"--file {path}: folder {path.parent} does not exist; create it first"
        )
    _check_user(args.user)
    password = read_password(args.stdin)
    try:
        added = set_password(path, args.user, password)
    except OSError as exc:
        raise AuthError(f"cannot write passwd file {path}: {exc.strerror}") from exc
    if args.json:
        print(json.dumps({"user": args.user, "file": str(path), "added": added}))
    else:
        action = "added" if added else "changed password of"
        print(f"{action} user {args.user} in {path}")
    return 0
