"""``spoolgate demo --no-serve``: its checks, its errors and its output."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from unprivileged import run_cli_unprivileged, shared_temp_dir

from spoolgate.cli import main

# A PATH without the virtual environment's bin directory, as in a shell
# where the environment was never activated.
BARE_PATH = "/usr/bin:/bin"


def run_demo(state: Path, *extra: str) -> int:
    argv = ["demo", "--state-dir", str(state), "--messages", "5", "--no-serve"]
    return main([*argv, *extra])


def next_command(out: str) -> list[str]:
    [line] = [line for line in out.splitlines() if line.startswith("next: ")]
    return shlex.split(line.removeprefix("next: "))


def test_demo_state_dir_is_file_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_directory = tmp_path / "passwd"
    not_a_directory.write_text("root:x:0:0::/root:/bin/sh\n")
    assert run_demo(not_a_directory) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"--state-dir {not_a_directory}" in err
    assert "not a directory" in err


def test_demo_spool_is_file_exits_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "spool").write_text("in the way\n")
    assert run_demo(state) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert str(state / "spool") in err


def test_demo_unwritable_cwd_exits_two() -> None:
    with shared_temp_dir() as closed:
        closed.chmod(0o555)
        argv = ["demo", "--messages", "5", "--no-serve"]
        result = run_cli_unprivileged(argv, closed)
    assert result.code == 2
    assert "Traceback" not in result.err
    assert len(result.err.splitlines()) == 1
    assert "demo-state" in result.err
    assert "--state-dir" in result.err


@pytest.mark.parametrize("messages", ["0", "100001"])
def test_demo_messages_out_of_range_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], messages: str
) -> None:
    argv = ["demo", "--state-dir", str(tmp_path), "--no-serve"]
    assert main([*argv, "--messages", messages]) == 2
    err = capsys.readouterr().err
    assert "--messages" in err
    assert "1 to 100000" in err


def test_demo_next_command_runs_without_activation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", BARE_PATH)
    monkeypatch.chdir(tmp_path)
    assert run_demo(tmp_path / "state") == 0
    command = next_command(capsys.readouterr().out)
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ}, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "messages: 6 (0 hidden)" in result.stdout


def test_demo_next_command_relative_to_cwd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "spoolgate").is_file():
        pytest.skip(f"no spoolgate script beside {sys.executable}")
    monkeypatch.setenv("PATH", BARE_PATH)
    # The directory that contains the virtual environment, as for `make demo`.
    monkeypatch.chdir(bin_dir.parent.parent)
    assert run_demo(tmp_path / "state") == 0
    command = next_command(capsys.readouterr().out)
    assert command[0] == f"{bin_dir.parent.name}/{bin_dir.name}/spoolgate"


def test_demo_rerun_leaves_same_mbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert run_demo(state, "--json") == 0
    first = json.loads(capsys.readouterr().out)
    after_first = (state / "spool" / "demo").read_bytes()
    assert run_demo(state, "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert (state / "spool" / "demo").read_bytes() == after_first
    assert [build["messages"] for build in first["builds"]] == [5, 5, 6]
    assert [build["messages"] for build in second["builds"]] == [5, 5, 6]


def test_demo_rerun_with_other_count_regenerates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert run_demo(state) == 0
    assert run_demo(state, "--messages", "7", "--json") == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [build["messages"] for build in report["builds"]] == [7, 7, 8]
