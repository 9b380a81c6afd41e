"""Measure what the RPC proxy costs against a plain TCP relay, in the NFS lab.

One lab with LAB_FORWARD=0 (tests/lab/nfs-lab.sh). In the bastion namespace
two carriers run side by side: tests/lab/tcp_relay.py (copies bytes) on the
bastion's client-side address, ports 2049 and 20048, and the RPC proxy with
its login service (python -m spoolgate.tunnel.rpcproxy) on ports 3049 and
30048. root logs in with an SSH key made for the run, and the policy allows
uid 0 for this client. The client copies one file with libnfs's nfs-cp over
NFSv3, reads and writes, alternating between the carriers run by run.
Every copy is checked by SHA-256. The script prints medians in MB/s (10**6
bytes per second) and the CPU seconds per GiB of the carrier process
(utime + stime from /proc/PID/stat).

    python bench/rpcproxy.py                     # 64 MiB, 3 runs
    python bench/rpcproxy.py --size-mib 1 --runs 1 --json   # smoke run

Needs root, ssh-keygen and the lab's Debian packages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lab"))

from lab import TCP_RELAY, Lab, missing_requirements, random_config, wait_for_file  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
CARRIERS = {"relay": (2049, 20048), "rpcproxy": (3049, 30048)}
LOGIN_PORT = 7451


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of PID in seconds (fields 14 and 15 of stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def proxy_config(lab: Lab, work: Path) -> str:
    config = lab.config
    nfs_port, mnt_port = CARRIERS["rpcproxy"]
    return textwrap.dedent(
        f"""
        [[rpc_proxy.listener]]
        listen = "{config.bastion_client_ip}:{nfs_port}"
        upstream = "{config.falcon_ip}:2049"

        [[rpc_proxy.listener]]
        listen = "{config.bastion_client_ip}:{mnt_port}"
        upstream = "{config.falcon_ip}:{config.mnt_port}"

        [login]
        listen = "{config.bastion_client_ip}:{LOGIN_PORT}"
        methods = ["ssh-key"]
        authorized_keys = "{work}/%u.keys"

        [[policy.client]]
        name = "bench"
        address = "{config.client_ip}"
        exports = ["/export"]
        users = ["root"]
        allow_root = true
        """
    )


def start(lab: Lab, work: Path, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    ready = work / f"{name}.ready"
    process = lab.popen(
        "bastion", [*argv, "--ready-file", str(ready)], log_path=work / f"{name}.log"
    )
    wait_for_file(ready, timeout=20)
    return process


def start_carriers(lab: Lab, work: Path) -> dict[str, subprocess.Popen[bytes]]:
    config = lab.config
    relay = start(
        lab, work, "relay",
        [sys.executable, str(TCP_RELAY), "--listen", config.bastion_client_ip,
         "--target", config.falcon_ip, "--port", "2049",
         "--port", str(config.mnt_port)],
    )  # fmt: skip
    (work / "proxy.toml").write_text(proxy_config(lab, work))
    proxy = start(
        lab, work, "rpcproxy",
        [sys.executable, "-m", "spoolgate.tunnel.rpcproxy", "--config",
         str(work / "proxy.toml")],
    )  # fmt: skip
    key = work / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    (work / "root.keys").write_text(Path(f"{key}.pub").read_text())
    lab.run(
        "client",
        [sys.executable, "-m", "spoolgate", "login", "--server",
         f"{config.bastion_client_ip}:{LOGIN_PORT}", "--user", "root",
         "--ssh-key", str(key)],
    )  # fmt: skip
    return {"relay": relay, "rpcproxy": proxy}


def url(lab: Lab, carrier: str, name: str) -> str:
    nfs_port, mnt_port = CARRIERS[carrier]
    params = {"nfsport": nfs_port, "mountport": mnt_port, "uid": 0, "gid": 0}
    return lab.nfs_url(name, host=lab.config.bastion_client_ip, params=params)


def timed_copy(lab: Lab, pid: int, source: str, target: str) -> tuple[float, float]:
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    lab.run("client", ["nfs-cp", source, target], timeout=600)
    return time.perf_counter() - started, cpu_seconds(pid) - cpu_before


def measure(
    lab: Lab, work: Path, pids: dict[str, int], size: int, runs: int
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    data = work / "data.bin"
    expected = sha256_file(data)
    shutil.copyfile(data, lab.config.export_dir / "read.bin")
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        carrier: {"v3_read": [], "v3_write": []} for carrier in CARRIERS
    }
    for carrier in CARRIERS:  # warm-up: mount, fill falcon's page cache
        warm = work / f"warm-{carrier}.bin"
        lab.run("client", ["nfs-cp", url(lab, carrier, "read.bin"), str(warm)])
        warm.unlink()
    for run in range(runs):
        for carrier, pid in pids.items():
            out = work / f"{carrier}-{run}.bin"
            sample = timed_copy(lab, pid, url(lab, carrier, "read.bin"), str(out))
            check(out, expected, f"{carrier} read")
            out.unlink()
            samples[carrier]["v3_read"].append(sample)
            name = f"write-{carrier}-{run}.bin"
            sample = timed_copy(lab, pid, str(data), url(lab, carrier, name))
            check(lab.config.export_dir / name, expected, f"{carrier} write")
            (lab.config.export_dir / name).unlink()
            samples[carrier]["v3_write"].append(sample)
    return samples


def check(path: Path, expected: str, label: str) -> None:
    if sha256_file(path) != expected:
        raise RuntimeError(f"{label}: {path} differs from the data file")


def summarize(
    samples: dict[str, dict[str, list[tuple[float, float]]]], size: int
) -> dict[str, dict[str, dict[str, float]]]:
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for carrier, kinds in samples.items():
        summary[carrier] = {}
        for kind, rows in kinds.items():
            rates = [size / seconds / 1e6 for seconds, _ in rows]
            cpu = [cpu_s * GIB / size for _, cpu_s in rows]
            summary[carrier][kind] = {
                "mb_s_median": round(statistics.median(rates), 1),
                "mb_s_min": round(min(rates), 1),
                "mb_s_max": round(max(rates), 1),
                "cpu_s_per_gib_median": round(statistics.median(cpu), 1),
            }
    return summary


def machine() -> dict[str, str | int]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "ram_gib": round(mem_kib / MIB),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def run(size: int, runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="spoolgate-bench-rpcproxy-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        with (work / "data.bin").open("wb") as out:
            out.write(os.urandom(size))
        lab = Lab(random_config(work / "labs", forward=False))
        lab.up()
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            processes = start_carriers(lab, work)
            pids = {name: process.pid for name, process in processes.items()}
            samples = measure(lab, work, pids, size, runs)
        finally:
            for process in processes.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)
            lab.down()
    return {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(),
        "size_bytes": size,
        "runs": runs,
        "carriers": summarize(samples, size),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=64, help="default: 64")
    parser.add_argument("--runs", type=int, default=3, help="default: 3")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    reason = missing_requirements()
    if reason or shutil.which("ssh-keygen") is None:
        print(f"bench/rpcproxy.py: {reason or 'needs ssh-keygen'}", file=sys.stderr)
        return 2
    report = run(args.size_mib * MIB, args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(json.dumps(report["machine"]))
    print(f"median of {args.runs} (min-max), MB/s; CPU s/GiB of the carrier")
    carriers = report["carriers"]
    assert isinstance(carriers, dict)
    for carrier, kinds in carriers.items():
        for kind, row in kinds.items():
            print(
                f"{carrier:9} {kind:9} {row['mb_s_median']:8.1f} "
                f"({row['mb_s_min']:.1f}-{row['mb_s_max']:.1f})  "
                f"cpu {row['cpu_s_per_gib_median']:.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
