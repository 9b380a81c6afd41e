"""The ``spoolgate`` command: parse arguments, run one subcommand, exit.

Each subcommand lives in ``spoolgate.commands.<name>`` and provides
``register(subparsers)``, which adds its parser and sets ``run`` as the
default ``func``. This module owns the mapping from errors to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from spoolgate import __version__
from spoolgate.commands import COMMANDS
from spoolgate.errors import ConfigError, SpoolgateError, TemporaryError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL from sysexits.h: try again later.

EXIT_CODES_HELP = """\
exit codes:
  0   success
  1   the operation failed (for example `index check` found a difference)
  2   usage or configuration error
  75  temporary failure, try again (lock busy, peer unreachable)
"""

log = logging.getLogger("spoolgate")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="spoolgate",
        description="A caching mbox POP3 server and an encrypting NFS bastion.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: once for INFO, twice for DEBUG (default: WARNING; "
        "INFO for the daemons bastion, tunnel and pop3d)",
    )
    loudness.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="log less: once for WARNING, twice for ERROR",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in COMMANDS:
        register(subparsers)
    return parser


def exit_code_for(exc: SpoolgateError) -> int:
    """Return the exit code for an error, by the branch of the error tree."""
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, TemporaryError):
        return EXIT_TEMPFAIL
    return EXIT_FAILED


def log_level(verbose: int, quiet: int, default: int = logging.WARNING) -> int:
    """Return the log level for the counts of ``-v`` and ``-q``.

    ``default`` is the subcommand's level without either flag: daemons set
    INFO with ``parser.set_defaults(log_level=logging.INFO)`` so that their
    starts, stops and logins are logged.
    """
    if verbose:
        return min(default, logging.INFO if verbose == 1 else logging.DEBUG)
    if quiet:
        return max(default, logging.WARNING if quiet == 1 else logging.ERROR)
    return default


def setup_logging(level: int) -> None:
    """Send logs at ``level`` and above to stderr."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    default = getattr(args, "log_level", logging.WARNING)
    setup_logging(log_level(args.verbose, args.quiet, default))
    try:
        code: int = args.func(args)
    except SpoolgateError as exc:
        print(f"spoolgate {args.command}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`spoolgate index show | head`).
        # Point stdout at /dev/null so the interpreter's final flush does
        # not raise again, as the Python signal documentation advises.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    return code
