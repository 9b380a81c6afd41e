"""The plain routed NFS lab: libnfs transfers through the bastion's kernel route.

These checks guard the lab itself, so a failing tunnel test can be
distinguished from a broken lab. Sizes are odd (no multiple of a block size)
and a few MiB, which catches truncation and padding bugs.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from lab import RPC_PROBE, TCP_RELAY, Lab, MakeLab, wait_for_file

pytestmark = pytest.mark.root

TEST_UID = 1234
TEST_GID = 5678

# libnfs 4.0.0 (Debian 12) fails an NFSv4 WRITE of about 3.9 kB or more.
V4_WRITE_BYTES = 3001


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def put_on_falcon(lab: Lab, name: str, data: bytes) -> None:
    """Write NAME into the export directly on falcon's side (a host directory)."""
    (lab.config.export_dir / name).write_bytes(data)


def nfs_cp(lab: Lab, source: str, target: str) -> None:
    lab.run("client", ["nfs-cp", source, target], timeout=60)


def connect_from(lab: Lab, role: str, host: str, port: int) -> bool:
    """Return whether a TCP connection from ROLE to HOST:PORT opens within 1 s."""
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1)"
    result = lab.run(role, [sys.executable, "-c", code], timeout=30, check=False)
    return result.returncode == 0


def test_plain_v3_read_identical(plain_lab: Lab, tmp_path: Path) -> None:
    data = random_bytes(2_345_679, seed=3)
    put_on_falcon(plain_lab, "plain-v3-read.bin", data)
    nfs_cp(plain_lab, plain_lab.nfs_url("plain-v3-read.bin"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data


def test_plain_v3_write_identical(plain_lab: Lab, tmp_path: Path) -> None:
    data = random_bytes(3_456_789, seed=4)
    (tmp_path / "in").write_bytes(data)
    url = plain_lab.nfs_url(
        "plain-v3-write.bin", params={"uid": TEST_UID, "gid": TEST_GID}
    )
    nfs_cp(plain_lab, str(tmp_path / "in"), url)
    written = plain_lab.config.export_dir / "plain-v3-write.bin"
    assert written.read_bytes() == data
    assert (written.stat().st_uid, written.stat().st_gid) == (TEST_UID, TEST_GID)


def test_plain_v4_read_identical(plain_lab: Lab, tmp_path: Path) -> None:
    data = random_bytes(2_345_681, seed=5)
    put_on_falcon(plain_lab, "plain-v4-read.bin", data)
    url = plain_lab.nfs_url("plain-v4-read.bin", version=4)
    nfs_cp(plain_lab, url, str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data


def test_plain_v4_small_write_identical(plain_lab: Lab, tmp_path: Path) -> None:
    data = random_bytes(V4_WRITE_BYTES, seed=6)
    (tmp_path / "in").write_bytes(data)
    url = plain_lab.nfs_url("plain-v4-write.bin", version=4)
    nfs_cp(plain_lab, str(tmp_path / "in"), url)
    assert (plain_lab.config.export_dir / "plain-v4-write.bin").read_bytes() == data


def test_noforward_direct_path_blocked(make_lab: MakeLab) -> None:
    lab = make_lab(forward=False)
    falcon = lab.config.falcon_ip
    assert connect_from(lab, "bastion", falcon, 2049)
    assert not connect_from(lab, "client", falcon, 2049)
    assert not connect_from(lab, "client", falcon, lab.config.mnt_port)
    assert not connect_from(lab, "client", falcon, 111)


def test_noforward_status_healthy_from_bastion(make_lab: MakeLab) -> None:
    lab = make_lab(forward=False)
    result = lab.status()
    client = lab.config.namespace("client")
    bastion = lab.config.namespace("bastion")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"path {client} -> falcon: blocked (LAB_FORWARD=0)" in result.stdout
    assert f"nfs-ls v3 from {bastion}: ok" in result.stdout


def test_noforward_direct_path_blocked_with_ip_forward(make_lab: MakeLab) -> None:
    # A tunnel bastion turns ip_forward on; the direct path must stay closed.
    lab = make_lab(forward=False)
    lab.run("bastion", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    assert not connect_from(lab, "client", lab.config.falcon_ip, 2049)


def test_noforward_relay_carries_nfs(make_lab: MakeLab, tmp_path: Path) -> None:
    lab = make_lab(forward=False)
    ready = tmp_path / "relay.ready"
    relay = lab.popen(
        "bastion",
        [
            sys.executable,
            str(TCP_RELAY),
            "--listen",
            lab.config.bastion_client_ip,
            "--target",
            lab.config.falcon_ip,
            "--port",
            "2049",
            "--port",
            str(lab.config.mnt_port),
            "--ready-file",
            str(ready),
        ],
        log_path=tmp_path / "relay.log",
    )
    try:
        wait_for_file(ready)
        data = random_bytes(1_234_567, seed=7)
        put_on_falcon(lab, "relayed.bin", data)
        v3_ports = {"nfsport": 2049, "mountport": lab.config.mnt_port}
        host = lab.config.bastion_client_ip
        for version, params in ((3, v3_ports), (4, {})):
            url = lab.nfs_url("relayed.bin", version=version, host=host, params=params)
            out = tmp_path / f"out-v{version}"
            nfs_cp(lab, url, str(out))
            assert out.read_bytes() == data, f"NFSv{version} through the relay"
    finally:
        relay.terminate()
        try:
            relay.wait(timeout=10)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait(timeout=10)


def mnt_status(lab: Lab, path: str) -> str:
    """Return rpc-probe's output for a MOUNT MNT of PATH from the client."""
    argv = [sys.executable, str(RPC_PROBE), lab.config.falcon_ip, "mnt", path]
    argv += ["--tcp", "--port", str(lab.config.mnt_port)]
    return lab.run("client", argv, timeout=30, check=False).stdout


def test_ganesha_refuses_mnt_through_symlink(plain_lab: Lab) -> None:
    # The bastion's policy checks MNT paths as strings, so a symlink inside
    # an allowed directory that points elsewhere in the export is only
    # stopped because the server does not follow it (NFS-Ganesha 4.3).
    top = plain_lab.config.export_dir / "symlink-escape"
    (top / "allowed").mkdir(parents=True, exist_ok=True)
    (top / "secret").mkdir(exist_ok=True)
    link = top / "allowed" / "esc_dir"
    if not link.is_symlink():
        link.symlink_to("../secret")
    allowed = mnt_status(plain_lab, "/export/symlink-escape/allowed")
    assert "mountstat3=0 " in allowed
    escaped = mnt_status(plain_lab, "/export/symlink-escape/allowed/esc_dir")
    assert "mountstat3=13" in escaped  # MNT3ERR_ACCES
