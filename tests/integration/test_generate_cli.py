"""``python -m spoolgate.mbox.generate``: its command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spoolgate.mbox.generate import main


def test_generate_help_names_module(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(
        "usage: python -m spoolgate.mbox.generate "
    )


@pytest.mark.parametrize("option", ["--attach-rate", "--from-line-rate", "--crlf-rate"])
@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_generate_rate_out_of_range_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "out"), "-n", "1", option, value])
    assert info.value.code == 2
    assert f"{option} must be a number from 0 to 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generate_module_writes_mbox(tmp_path: Path) -> None:
    out = tmp_path / "g.mbox"
    result = subprocess.run(
        [sys.executable, "-m", "spoolgate.mbox.generate", str(out), "-n", "3", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().count(b"\nFrom ") == 2


@pytest.mark.parametrize("size", ["abc", "inf", "nan", "0", "-5"])
def test_generate_bad_target_size_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "out"), "--target-size", size])
    assert info.value.code == 2
    assert f"--target-size {size!r}" in capsys.readouterr().err
