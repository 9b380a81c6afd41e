"""``spoolgate login`` and ``spoolgate logout``: bind a user to this tunnel client."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from spoolgate.errors import ConfigError, LoginFailedError
from spoolgate.tunnel.login import (
    KeyLogin,
    LoginClient,
    LoginReply,
    Logout,
    PasswordLogin,
    Quit,
    sign_with_ssh_key,
    signed_message,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``login`` and ``logout`` subcommands."""
    login = subparsers.add_parser(
        "login",
        help="prove a user to the bastion so NFS calls with their uid pass",
        description="Connect to the bastion's login service over the tunnel and "
        "prove who you are, with your password (asked on the terminal) or an "
        "SSH key. The bastion then accepts NFS calls with your uid and gids "
        "from this client until the binding expires.",
    )
    _common(login)
    login.add_argument(
        "--ssh-key",
        type=Path,
        help="sign with this SSH private key (ssh-keygen -Y sign) instead of "
        "sending a password (default: password)",
    )
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: ask)",
    )
    login.set_defaults(func=run_login)
    logout = subparsers.add_parser(
        "logout",
        help="remove a user's binding at the bastion",
        description="Ask the bastion to stop accepting NFS calls with the user's "
        "uid from this client.",
    )
    _common(logout)
    logout.set_defaults(func=run_logout)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        required=True,
        metavar="HOST:PORT",
        help="the login service: the bastion's tunnel address and login port",
    )
    parser.add_argument(
        "--user",
        default=getpass.getuser(),
        help="user name on the bastion (default: the current user)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the service (default: 30)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _connect(args: argparse.Namespace) -> LoginClient:
    host, sep, port = str(args.server).rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--server {args.server!r}: must be HOST:PORT")
    return LoginClient(host.strip("[]"), int(port), args.timeout)


def _print(args: argparse.Namespace, action: str, reply: LoginReply) -> int:
    if args.json:
        print(json.dumps({"action": action, "ok": reply.ok, "reply": reply.text}))
    else:
        print(f"{action}: {reply.text}")
    return 0 if reply.ok else 1


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(f"password for {args.user} at the bastion: ")


def run_login(args: argparse.Namespace) -> int:
    """Log in; exit 0 when the bastion bound the user, 1 when it refused."""
    password = None if args.ssh_key else _password(args)
    client = _connect(args)
    try:
        if args.ssh_key:
            message = signed_message(client.nonce, args.user)
            request: KeyLogin | PasswordLogin = KeyLogin(
                args.user, sign_with_ssh_key(args.ssh_key, message)
            )
        else:
            assert password is not None
            request = PasswordLogin(args.user, password)
        reply = client.request(request)
        client.request(Quit())
    finally:
        client.close()
    code = _print(args, "login", reply)
    if not reply.ok and not args.json:
        raise LoginFailedError(f"the bastion refused the login of {args.user}")
    return code


def run_logout(args: argparse.Namespace) -> int:
    """Log out; exit 0 when the request was accepted."""
    client = _connect(args)
    try:
        reply = client.request(Logout(args.user))
        client.request(Quit())
    finally:
        client.close()
    return _print(args, "logout", reply)
