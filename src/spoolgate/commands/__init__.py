"""Subcommands of the ``spoolgate`` tool, one module each.

Each module provides ``register(subparsers)``; ``COMMANDS`` lists them in
the order ``--help`` shows them. Add a new subcommand with one line here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from spoolgate.commands import (
    bastion,
    demo,
    index,
    keygen,
    login,
    passwd,
    pop3d,
    tunnel,
)

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

COMMANDS: list[Register] = [
    keygen.register,
    tunnel.register,
    bastion.register,
    login.register,
    passwd.register,
    index.register,
    demo.register,
    pop3d.register,
]
