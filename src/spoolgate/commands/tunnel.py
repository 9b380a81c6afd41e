"""``spoolgate tunnel --config FILE``: the NFS client side of the tunnel."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from spoolgate.tunnel.client import run_tunnel


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tunnel`` subcommand."""
    parser = subparsers.add_parser(
        "tunnel",
        help="carry this host's NFS traffic to a bastion over TLS",
        description="Create a tun device, route the configured networks into it "
        "and relay its packets to spoolgate bastion until SIGTERM.",
    )
    parser.add_argument(
        "--config", type=Path, required=True, help="tunnel config file (TOML)"
    )
    parser.set_defaults(func=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    """Run the tunnel client in the foreground."""
    return run_tunnel(args.config)
