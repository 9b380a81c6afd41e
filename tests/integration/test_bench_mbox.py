"""Smoke tests: the mbox benchmark scripts run on a tiny data set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent.parent / "bench"


@pytest.mark.parametrize("script", ["scan.py", "cache.py"])
def test_bench_script_tiny_mbox_prints_json(script: str, tmp_path: Path) -> None:
    mbox = tmp_path / "tiny.mbox"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / script),
            "--mbox",
            str(mbox),
            "--messages",
            "30",
            "--size",
            "200000",
            "--runs",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(result.stdout)
    assert report["bytes"] == mbox.stat().st_size
    assert report["page_cache"] == "warm"
