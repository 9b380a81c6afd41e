"""Tests for the spoolgate command line entry point."""

import subprocess
import sys
from pathlib import Path

from spoolgate.cli import EXIT_TEMPFAIL, EXIT_USAGE, exit_code_for
from spoolgate.errors import ConfigError, LockTimeoutError, MboxError


def test_exit_code_for_error_branches() -> None:
    assert exit_code_for(ConfigError("x")) == EXIT_USAGE
    assert exit_code_for(LockTimeoutError("x")) == EXIT_TEMPFAIL
    assert exit_code_for(MboxError("x")) == 1


def test_closed_stdout_gives_no_traceback(tmp_path: Path) -> None:
    mbox = tmp_path / "inbox"
    message = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n\n"
    mbox.write_bytes(message * 2000)
    command = [sys.executable, "-m", "spoolgate", "index", "show", str(mbox)]
    command += ["--cache-dir", str(tmp_path / "cache")]
    shell = " ".join(command) + " | head -1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell],
        capture_output=True,
        timeout=60,
    )
    assert result.stdout.count(b"\n") == 1
    assert b"Traceback" not in result.stderr
