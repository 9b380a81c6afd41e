"""``spoolgate keygen NAME``: write a tunnel key and self-signed certificate."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from spoolgate.tunnel import keys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keygen`` subcommand."""
    parser = subparsers.add_parser(
        "keygen",
        help="make a tunnel key and certificate; print the fingerprint to pin",
        description="Write NAME.key (mode 0600, never overwritten) and NAME.crt "
        "(self-signed), then print the certificate's sha256 fingerprint.",
    )
    parser.add_argument("name", help="base name of the files, e.g. the host name")
    parser.add_argument(
        "--dir", type=Path, default=Path("."), help="folder to write to (default: .)"
    )
    parser.add_argument(
        "--days",
        type=int,
        default=keys.DEFAULT_DAYS,
        help=f"certificate validity in days (default: {keys.DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--type",
        choices=keys.KEY_TYPES,
        default="ed25519",
        help="key algorithm (default: ed25519)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the key pair and print its fingerprint."""
    pair = keys.write_key_pair(
        args.dir,
        args.name,
        key_type=args.type,
        days=args.days,
        now=datetime.datetime.now(datetime.UTC),
    )
    if args.json:
        print(
            json.dumps(
                {
                    "name": args.name,
                    "key": str(pair.key_path),
                    "cert": str(pair.cert_path),
                    "fingerprint": pair.fingerprint,
                    "not_after": pair.not_after.isoformat(),
                }
            )
        )
    else:
        print(f"{pair.fingerprint}  {pair.cert_path}")
    return 0
