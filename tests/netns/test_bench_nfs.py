"""Smoke runs of bench/nfs.py on a tiny file, so the benchmark cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

BENCH = Path(__file__).resolve().parents[2] / "bench" / "nfs.py"
KINDS = {"v3_read", "v4_read", "v3_write"}


def run_bench(*routes: str) -> dict[str, dict[str, dict[str, float | None]]]:
    command = [sys.executable, str(BENCH), "--size-mib", "1", "--runs", "1", "--json"]
    for route in routes:
        command += ["--route", route]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    routes_out: dict[str, dict[str, dict[str, float | None]]] = json.loads(
        result.stdout
    )["routes"]
    return routes_out


def test_bench_plain_route_reports_rates(lab_skip_reason: str | None) -> None:
    if lab_skip_reason:
        pytest.skip(lab_skip_reason)
    routes = run_bench("plain")
    assert set(routes) == {"plain"}
    assert set(routes["plain"]) == KINDS
    for kind, row in routes["plain"].items():
        assert row["mb_s_median"], kind
        assert row["cpu_s_per_gib_median"] is None, kind


@pytest.mark.skipif(
    shutil.which("openvpn") is None or shutil.which("openssl") is None,
    reason="needs the openvpn and openssl packages",
)
def test_bench_openvpn_route_reports_rates(lab_skip_reason: str | None) -> None:
    if lab_skip_reason:
        pytest.skip(lab_skip_reason)
    routes = run_bench("openvpn")
    assert set(routes) == {"openvpn"}
    assert set(routes["openvpn"]) == KINDS
    for kind, row in routes["openvpn"].items():
        assert row["mb_s_median"], kind
