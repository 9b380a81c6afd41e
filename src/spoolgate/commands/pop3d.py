"""``spoolgate pop3d --config FILE``: serve users' mboxes over POP3 and POP3S."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from spoolgate.pop3.server import serve

DEFAULT_CONFIG = Path("/etc/spoolgate/pop3d.toml")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``pop3d`` subcommand."""
    parser = subparsers.add_parser(
        "pop3d",
        help="run the POP3 server (POP3 with STLS, and POP3S)",
        description="Serve each user's mbox over POP3 with STLS and over POP3S, "
        "from a TOML config file (keys in docs/pop3d.md). SIGHUP rereads the "
        "config; SIGTERM stops accepting, lets sessions finish for "
        "pop3.shutdown_timeout_s, then exits.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"config file (default: {DEFAULT_CONFIG})",
    )
    parser.set_defaults(func=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    """Run the server until it is stopped by a signal."""
    asyncio.run(serve(args.config))
    return 0
