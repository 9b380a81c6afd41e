"""``spoolgate bastion``: run the NFS bastion, or print its status."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from spoolgate.errors import ConfigError
from spoolgate.tunnel.bastion import run_bastion
from spoolgate.tunnel.config import load_bastion_config
from spoolgate.tunnel.status import query_status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bastion`` subcommand."""
    parser = subparsers.add_parser(
        "bastion",
        help="accept tunnel clients and pass their NFS traffic to the server",
        description="With no action, run the bastion in the foreground until "
        "SIGTERM (SIGHUP rereads the client list and the RPC policy rules). "
        "'status' prints the running bastion's sessions, drop counters and, "
        "with RPC policy on, login bindings and proxy counters as JSON.",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "status"),
        default="run",
        help="run the bastion or query it (default: run)",
    )
    parser.add_argument("--config", type=Path, help="bastion config file (TOML)")
    parser.add_argument(
        "--socket",
        type=Path,
        help="status socket to query (default: bastion.status_socket from --config)",
    )
    parser.set_defaults(func=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    """Run the bastion, or print its status JSON."""
    if args.action == "status":
        path = args.socket
        if path is None:
            if args.config is None:
                raise ConfigError("bastion status: give --config or --socket")
            path = load_bastion_config(args.config).status_socket
        print(json.dumps(query_status(path), indent=2))
        return 0
    if args.config is None:
        raise ConfigError("bastion: --config is required")
    return run_bastion(args.config)
