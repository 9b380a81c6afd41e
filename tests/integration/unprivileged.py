"""Run the ``spoolgate`` command where file permissions apply.

Root may write anywhere, so permission errors cannot be seen as root.
``run_cli_unprivileged`` forks. The child switches to the user nobody when
the tests run as root, then calls the command's ``main`` in-process. Every module is
already imported in the parent, because nobody may not be able to read the
interpreter's own files (a pyenv build under /root, for example).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from spoolgate.cli import main

NOBODY_UID = 65534
NOBODY_GID = 65534
# Exit status of a child whose ``main`` raised instead of returning a code.
EXIT_TRACEBACK = 99


@dataclass(frozen=True, slots=True)
class CLIResult:
    """Exit code and output of one run of the command."""

    code: int
    out: str
    err: str


@contextmanager
def shared_temp_dir() -> Iterator[Path]:
    """Yield a new directory in the system temp directory that the user
    nobody can enter, unlike pytest's ``tmp_path`` (its parents are mode
    0700)."""
    path = Path(tempfile.mkdtemp(prefix="spoolgate-unpriv-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for directory, _, _ in os.walk(path):
            os.chmod(directory, 0o755)
        shutil.rmtree(path)


def run_cli_unprivileged(argv: Sequence[str], cwd: Path) -> CLIResult:
    """Run ``spoolgate ARGV`` in ``cwd`` in a forked child without root."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        pid = os.fork()
        if pid == 0:
            _child(argv, cwd, out, err)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return CLIResult(os.waitstatus_to_exitcode(status), out.read(), err.read())


def _child(argv: Sequence[str], cwd: Path, out: TextIO, err: TextIO) -> None:
    code = EXIT_TRACEBACK
    try:
        os.chdir(cwd)
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY_GID)
            os.setuid(NOBODY_UID)
        sys.stdout = out
        sys.stderr = err
        code = main(list(argv))
    except BaseException:
        traceback.print_exc(file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
