"""Smoke run of bench/pop3.py on tiny mboxes, so the benchmark cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dovecot import missing_requirements

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed"),
]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pop3.py"
SCENARIOS = {
    "big first",
    "big cached",
    "big login",
    "big append",
    "big delete",
    "small retr",
    "concurrent",
}


def test_bench_pop3_reports_every_scenario() -> None:
    servers = {"spoolgate", "dovecot"}
    command = [sys.executable, str(BENCH), "--json", "--reps", "1"]
    command += ["--messages", "200", "--small", "30", "--clients", "3"]
    if missing_requirements():
        # Without Dovecot the spoolgate half still has to run.
        servers = {"spoolgate"}
        command += ["--only", "spoolgate"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert set(report["median_s"]) == SCENARIOS
    for scenario, row in report["median_s"].items():
        assert servers <= set(row), scenario
    assert report["count_mismatches"] == []
    assert report["counts"]["big login"]["spoolgate"] == [200]
    assert report["counts"]["big append"]["spoolgate"] == [201]
    assert report["counts"]["big delete"]["spoolgate"] == [200]
