"""Tests for the log level chosen from -v, -q and the subcommand's default."""

from __future__ import annotations

import logging

import pytest

from spoolgate.cli import build_parser, log_level


@pytest.mark.parametrize("command", ["bastion", "tunnel", "pop3d"])
def test_cli_daemons_default_to_info(command: str) -> None:
    args = build_parser().parse_args([command, "--config", "x.toml"])
    assert args.log_level == logging.INFO


def test_cli_other_commands_default_to_warning() -> None:
    args = build_parser().parse_args(["keygen", "alice"])
    assert getattr(args, "log_level", logging.WARNING) == logging.WARNING


@pytest.mark.parametrize(
    ("verbose", "quiet", "default", "expected"),
    [
        (0, 0, logging.WARNING, logging.WARNING),
        (1, 0, logging.WARNING, logging.INFO),
        (2, 0, logging.WARNING, logging.DEBUG),
        (0, 0, logging.INFO, logging.INFO),
        (1, 0, logging.INFO, logging.INFO),
        (2, 0, logging.INFO, logging.DEBUG),
        (0, 1, logging.INFO, logging.WARNING),
        (0, 2, logging.INFO, logging.ERROR),
        (0, 1, logging.WARNING, logging.WARNING),
    ],
)
def test_cli_log_level_from_flags(
    verbose: int, quiet: int, default: int, expected: int
) -> None:
    assert log_level(verbose, quiet, default) == expected


def test_cli_verbose_and_quiet_exclusive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-v", "-q", "pop3d"])
