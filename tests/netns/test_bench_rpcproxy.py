"""A smoke run of bench/rpcproxy.py on a tiny file, so the benchmark cannot rot."""

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

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rpcproxy.py"


def test_bench_rpcproxy_reports_both_carriers(lab_skip_reason: str | None) -> None:
    if lab_skip_reason:
        pytest.skip(lab_skip_reason)
    command = [sys.executable, str(BENCH), "--size-mib", "1", "--runs", "1", "--json"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    carriers = json.loads(result.stdout)["carriers"]
    assert set(carriers) == {"relay", "rpcproxy"}
    for carrier, kinds in carriers.items():
        assert set(kinds) == {"v3_read", "v3_write"}, carrier
        for kind, row in kinds.items():
            assert row["mb_s_median"] > 0, (carrier, kind)
