"""Smoke test of ``make nfs-demo``: run scripts/nfs-demo.sh once and check it.

The script brings up its own lab (prefix sgdemo, nets 10.214.x), so the
test skips when such a lab is already up, for example from a demo someone
else is running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import missing_requirements

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "nfs-demo.sh"
SPOOLGATE = Path(sys.executable).parent / "spoolgate"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        missing_requirements() is not None, reason=str(missing_requirements())
    ),
    pytest.mark.skipif(
        any(shutil.which(p) is None for p in ("useradd", "chpasswd", "sha256sum")),
        reason="needs useradd and chpasswd (passwd) and sha256sum (coreutils)",
    ),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
    pytest.mark.skipif(
        not SPOOLGATE.exists(), reason=f"no spoolgate script beside {sys.executable}"
    ),
    pytest.mark.skipif(
        Path("/run/netns/sgdemo-bastion").exists(),
        reason="an sgdemo lab is already up (a running nfs-demo?)",
    ),
]


def test_nfs_demo_runs_and_cleans_up() -> None:
    env = {**os.environ, "SPOOLGATE": str(SPOOLGATE), "LAB_INSTALL": "0"}
    result = subprocess.run(
        [str(SCRIPT)], capture_output=True, text=True, timeout=300, env=env
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "OK: byte-identical" in result.stdout
    assert "REFUSED as expected: read with uid 4242" in result.stdout
    assert "reason=uid_not_bound" in result.stdout
    assert "REFUSED as expected: mount of /export/secret" in result.stdout
    assert "reason=export" in result.stdout
    assert "login: bound user=sgdemo" in result.stdout
    assert result.stdout.rstrip().endswith("nfs-demo: OK")
    assert not Path("/run/netns/sgdemo-bastion").exists()
    assert not Path("/etc/pam.d/spoolgate-sgdemo").exists()
