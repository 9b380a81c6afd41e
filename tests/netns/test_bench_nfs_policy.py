"""Smoke run of bench/nfs.py's spoolgate-policy route, so it cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)"
    ),
]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "nfs.py"


def test_bench_policy_route_reports_rates(lab_skip_reason: str | None) -> None:
    # 8 MiB, because the tunnel's CPU time for a 1 MiB copy can round to 0
    # clock ticks.
    if lab_skip_reason:
        pytest.skip(lab_skip_reason)
    command = [
        sys.executable, str(BENCH), "--route", "spoolgate-policy",
        "--size-mib", "8", "--runs", "1", "--json",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)["routes"]["spoolgate-policy"]
    assert set(rows) == {"v3_read", "v4_read", "v3_write"}
    for kind, row in rows.items():
        assert row["mb_s_median"], kind
        assert row["cpu_s_per_gib_median"], kind
