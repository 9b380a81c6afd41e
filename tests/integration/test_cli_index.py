"""Tests of ``spoolgate index`` and ``spoolgate demo`` on real files."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from unprivileged import run_cli_unprivileged, shared_temp_dir

from spoolgate.cli import main
from spoolgate.mbox.cache import cache_path_for, load_cache, write_cache
from spoolgate.mbox.generate import GenerateOptions, generate_bytes
from spoolgate.mbox.lock import LockSettings, lock_mbox


@functools.cache
def generated(messages: int, seed: int = 1) -> bytes:
    options = GenerateOptions(
        messages=messages, seed=seed, attach_rate=0.0, format="mboxo"
    )
    return generate_bytes(options)[0]


@pytest.fixture
def mbox(tmp_path: Path) -> Path:
    path = tmp_path / "spool" / "ann"
    path.parent.mkdir()
    path.write_bytes(generated(10))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_index_build_json_reports_new_then_hit(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("index", "build", str(mbox), "--cache-dir", str(tmp_path / "c"), "--json")
    code, first = run_json(capsys, *args)
    assert code == 0
    assert first["refresh"] == "new"
    assert first["messages"] == 10
    assert first["bytes_parsed"] == mbox.stat().st_size
    assert {"seconds", "mbox", "cache"} <= first.keys()
    _, second = run_json(capsys, *args)
    assert second["refresh"] == "hit"
    assert second["bytes_parsed"] == 0


def test_index_build_after_append_parses_little(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("index", "build", str(mbox), "--cache-dir", str(tmp_path / "c"), "--json")
    run_json(capsys, *args)
    extra = generated(1, seed=2)
    with open(mbox, "ab") as file:
        file.write(extra)
    _, report = run_json(capsys, *args)
    assert report["refresh"] == "append"
    assert report["messages"] == 11
    assert len(extra) < report["bytes_parsed"] < len(extra) + 70_000


def test_index_build_text_output(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", "build", str(mbox), "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "refresh: new" in out
    assert "messages: 10 (0 hidden)" in out


def test_index_show_lists_each_message(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, report = run_json(
        capsys, "index", "show", str(mbox), "--cache-dir", str(tmp_path), "--json"
    )
    assert [record["msgno"] for record in report["records"]] == list(range(1, 11))
    assert report["records"][0]["offset"] == 0
    assert len(report["records"][0]["uidl"]) == 24


def test_index_check_matching_cache_exits_zero(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["index", "build", str(mbox), "--cache-dir", str(tmp_path)])
    capsys.readouterr()
    code, report = run_json(
        capsys, "index", "check", str(mbox), "--cache-dir", str(tmp_path), "--json"
    )
    assert code == 0
    assert report["differences"] == []


def test_index_check_wrong_cache_exits_one(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["index", "build", str(mbox), "--cache-dir", str(tmp_path)])
    capsys.readouterr()
    # A cache that claims to fit the file but lacks a message: only a
    # comparison with a rescan can notice.
    path = cache_path_for(mbox, tmp_path)
    index = load_cache(path)
    identity, tail = index.identity, index.tail
    index.remove([0])
    index.identity, index.tail = identity, tail
    index.scanned_length = mbox.stat().st_size
    write_cache(index, path)
    code, report = run_json(
        capsys, "index", "check", str(mbox), "--cache-dir", str(tmp_path), "--json"
    )
    assert code == 1
    assert report["refresh"] == "hit"
    assert "message count: cache 9, rescan 10" in report["differences"][0]


def test_index_build_not_an_mbox_exits_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes"
    path.write_bytes(b"Dear diary\n")
    assert main(["index", "build", str(path), "--cache-dir", str(tmp_path)]) == 1
    assert "not an mbox" in capsys.readouterr().err


def test_index_build_missing_mbox_exits_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["index", "build", str(tmp_path / "gone"), "--no-lock"])
    assert code == 1
    assert "no such file" in capsys.readouterr().err


def test_index_build_bad_digest_bytes_exits_two(
    mbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", "build", str(mbox), "--digest-bytes", "0"]) == 2
    assert "--digest-bytes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--digest-bytes", "99999999999999", "1 to 4294967295"),
        ("--digest-bytes", "4294967296", "1 to 4294967295"),
        ("--lock-timeout", "-1", "finite number >= 0"),
        ("--lock-timeout", "nan", "finite number >= 0"),
        ("--lock-timeout", "inf", "finite number >= 0"),
    ],
)
def test_index_option_out_of_range_exits_two(
    mbox: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    allowed: str,
) -> None:
    argv = ["index", "build", str(mbox), "--cache-dir", str(tmp_path), option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert option in err
    assert allowed in err


def test_index_largest_digest_bytes_builds(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(
        capsys,
        "index",
        "build",
        str(mbox),
        "--cache-dir",
        str(tmp_path),
        "--digest-bytes",
        "4294967295",
        "--json",
    )
    assert code == 0
    assert report["cache_written"]


def test_index_busy_lock_names_lock_timeout_option(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["index", "build", str(mbox), "--cache-dir", str(tmp_path)]
    with lock_mbox(mbox, LockSettings()):
        assert main([*argv, "--lock-timeout", "0.05"]) == 75
    err = capsys.readouterr().err
    assert "--lock-timeout 0.05" in err
    assert "locking." not in err


def test_index_directory_as_mbox_says_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["index", "build", str(folder), "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is a directory" in err
    assert "write access" not in err


def test_index_corrupt_cache_warning_says_rebuilt(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("index", "build", str(mbox), "--cache-dir", str(tmp_path), "--json")
    run_json(capsys, *args)
    cache_path_for(mbox, tmp_path).write_bytes(b"not an index\n" * 20)
    _, report = run_json(capsys, *args)
    assert report["refresh"] == "rebuild"
    assert report["cache_written"]
    assert len(report["warnings"]) == 1
    assert "not a spoolgate index file" in report["warnings"][0]
    assert "delete" not in report["warnings"][0]


@pytest.fixture
def nobody_spool() -> Iterator[Path]:
    """A directory, readable and writable by nobody, holding the mbox ``ann``."""
    with shared_temp_dir() as spool:
        spool.chmod(0o777)
        mbox = spool / "ann"
        mbox.write_bytes(generated(3))
        mbox.chmod(0o666)
        yield spool


def test_index_unwritable_spool_hints_no_lock(nobody_spool: Path) -> None:
    nobody_spool.chmod(0o555)
    argv = ["index", "build", str(nobody_spool / "ann"), "--cache-dir", "cache"]
    result = run_cli_unprivileged(argv, nobody_spool)
    assert result.code == 1
    assert "creating a dotlock" in result.err
    assert "--no-lock" in result.err
    assert "locking." not in result.err


def test_index_readonly_mbox_hints_no_lock(nobody_spool: Path) -> None:
    mbox = nobody_spool / "ann"
    mbox.chmod(0o444)
    argv = ["index", "build", str(mbox), "--cache-dir", str(nobody_spool / "cache")]
    result = run_cli_unprivileged(argv, nobody_spool)
    assert result.code == 1
    assert "read-write" in result.err
    assert "--no-lock" in result.err
    assert run_cli_unprivileged([*argv, "--no-lock"], nobody_spool).code == 0


def test_index_unreachable_cache_dir_reports_new(nobody_spool: Path) -> None:
    closed = nobody_spool / "closed"
    # Mode 0700 keeps nobody out when the tests run as root, 0 otherwise.
    closed.mkdir(mode=0o700 if os.geteuid() == 0 else 0)
    mbox = str(nobody_spool / "ann")
    argv = ["index", "build", mbox, "--no-lock", "--cache-dir", str(closed / "xx")]
    result = run_cli_unprivileged([*argv, "--json"], nobody_spool)
    assert result.code == 0
    report = json.loads(result.out)
    assert report["refresh"] == "new"
    assert not report["cache_written"]
    assert len(report["warnings"]) == 1
    assert "cannot write index cache" in report["warnings"][0]


def test_index_build_no_lock_leaves_no_dotlock(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run_json(
        capsys,
        "index",
        "build",
        str(mbox),
        "--no-lock",
        "--cache-dir",
        str(tmp_path),
        "--json",
    )
    assert code == 0
    assert not mbox.with_name("ann.lock").exists()


def test_index_help_documents_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spoolgate", "index", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "exit codes:" in result.stdout
    assert "75" in result.stdout


def test_demo_json_shows_new_hit_append(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    code, report = run_json(
        capsys,
        "demo",
        "--state-dir",
        str(state),
        "--messages",
        "30",
        "--json",
        "--no-serve",
    )
    assert code == 0
    assert [build["refresh"] for build in report["builds"]] == ["new", "hit", "append"]
    assert [build["messages"] for build in report["builds"]] == [30, 30, 31]
    assert report["builds"][2]["bytes_parsed"] < report["builds"][0]["bytes_parsed"]


def test_demo_copies_given_mbox(
    mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    _, report = run_json(
        capsys,
        "demo",
        "--state-dir",
        str(state),
        "--mbox",
        str(mbox),
        "--json",
        "--no-serve",
    )
    assert report["mbox"] == str(state / "spool" / "demo")
    assert report["builds"][0]["messages"] == 10
    assert mbox.read_bytes() == generated(10)
