"""Measure NFS throughput in the three-namespace lab, per route to the server.

Each route gets a fresh lab (tests/lab/nfs-lab.sh). The client copies one file
with libnfs's nfs-cp: an NFSv3 read and an NFSv3 write, and an NFSv4 read
(libnfs 4.0 cannot write over NFSv4 past about 3.9 kB). Every copy is checked
byte for byte. The script prints the median and the range in MB/s (10**6 bytes
per second) and, for tunnel routes, the CPU seconds per GiB of the tunnel
processes on both ends (utime + stime from /proc/PID/stat).

Routes:
  plain      the bastion's kernel routes between client and falcon
  spoolgate  spoolgate tunnel (client) and spoolgate bastion (bastion)
  openvpn    OpenVPN 2.6 in TCP mode, user space (bench/openvpn.py)
  spoolgate-policy  the spoolgate route with RPC policy on: every call passes
             the bastion's RPC proxy (bench/nfs_policy_route.py)

A new route is a class with the `Route` methods (bench/nfs_routes.py),
added to `ROUTES`.

    python bench/nfs.py                          # 256 MiB, 3 runs, all routes
    python bench/nfs.py --route openvpn --json
    python bench/nfs.py --size-mib 2 --runs 1    # smoke run
    python bench/nfs.py --route spoolgate --profile /tmp/prof   # cProfile both ends
    mkdir /tmp/old && git archive HEAD~1 src | tar -x -C /tmp/old
    python bench/nfs.py --route spoolgate --baseline-src /tmp/old/src  # before/after

Needs root and the lab's Debian packages (scripts/install-test-deps.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lab"))

from lab import Lab, missing_requirements, random_config  # noqa: E402
from nfs_routes import PlainRoute, Route, SpoolgateTunnelRoute, Target  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
CHUNK_BYTES = 4 * MIB


def make_openvpn() -> Route:
    from openvpn import OpenVpnRoute  # bench/openvpn.py, beside this file

    return OpenVpnRoute()


def make_policy() -> Route:
    from nfs_policy_route import SpoolgatePolicyRoute  # beside this file

    return SpoolgatePolicyRoute()


ROUTES: dict[str, Callable[[], Route]] = {
    "plain": PlainRoute,
    "spoolgate": SpoolgateTunnelRoute,
    "spoolgate-policy": make_policy,
    "openvpn": make_openvpn,
}


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    cpu_seconds: float


@dataclass(slots=True)
class RouteResult:
    route: str
    size_bytes: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for kind, samples in self.samples.items():
            rates = [self.size_bytes / s.seconds / 1e6 for s in samples]
            cpu = [s.cpu_seconds / (self.size_bytes / GIB) for s in samples]
            out[kind] = {
                "mb_s_median": round(statistics.median(rates), 1),
                "mb_s_min": round(min(rates), 1),
                "mb_s_max": round(max(rates), 1),
                "cpu_s_per_gib_median": (
                    round(statistics.median(cpu), 1) if any(cpu) else None
                ),
            }
        return out


def cpu_seconds(pids: list[int]) -> float:
    """Sum utime + stime of PIDS, in seconds (fields 14 and 15 of stat)."""
    ticks = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def make_data(path: Path, size: int) -> str:
    """Write SIZE random bytes to PATH and return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(CHUNK_BYTES, remaining))
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def timed_copy(lab: Lab, route: Route, source: str, target: str) -> Sample:
    pids = route.tunnel_pids()
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    lab.run("client", ["nfs-cp", source, target], timeout=600)
    seconds = time.perf_counter() - started
    return Sample(seconds, cpu_seconds(pids) - cpu_before)


def run_transfers(
    lab: Lab, route: Route, target: Target, workdir: Path, size: int, runs: int
) -> RouteResult:
    """Copy the data file RUNS times each way and check every copy."""
    data = workdir / "data.bin"
    expected = sha256_file(data)
    shutil.copyfile(data, lab.config.export_dir / "read.bin")
    result = RouteResult(route.name, size)
    v3 = target.v3_params
    read_v3 = lab.nfs_url("read.bin", host=target.host, params=v3)
    read_v4 = lab.nfs_url("read.bin", version=4, host=target.host)

    # Warm-up: connect, mount and fill falcon's page cache before timing.
    # Debian's nfs-cp opens a local target with O_EXCL too, hence the unlink.
    warm = workdir / "warm.bin"
    lab.run("client", ["nfs-cp", read_v3, str(warm)], timeout=600)
    warm.unlink()
    for run in range(runs):
        for kind, url in (("v3_read", read_v3), ("v4_read", read_v4)):
            out = workdir / f"{kind}-{run}.bin"
            sample = timed_copy(lab, route, url, str(out))
            _check_digest(out, expected, f"{route.name} {kind}")
            out.unlink()
            result.samples.setdefault(kind, []).append(sample)
        name = f"write-{run}.bin"
        url = lab.nfs_url(name, host=target.host, params=v3)
        sample = timed_copy(lab, route, str(data), url)
        _check_digest(lab.config.export_dir / name, expected, f"{route.name} write")
        (lab.config.export_dir / name).unlink()
        result.samples.setdefault("v3_write", []).append(sample)
    route.check_carried(lab, size * runs * 3)
    return result


def _check_digest(path: Path, expected: str, label: str) -> None:
    if sha256_file(path) != expected:
        raise RuntimeError(f"{label}: {path} differs from the data file")


@contextmanager
def lab_for(route: Route, workdir: Path) -> Iterator[Lab]:
    lab = Lab(random_config(workdir / "labs", forward=route.lab_forward))
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def measure_route(route: Route, workdir: Path, size: int, runs: int) -> RouteResult:
    """Bring up a lab, start ROUTE in it, run the transfers, tear all down."""
    with lab_for(route, workdir) as lab:
        try:
            target = route.start(lab, workdir)
            return run_transfers(lab, route, target, workdir, size, runs)
        finally:
            route.stop()


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


def git_commit() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def print_table(results: list[RouteResult], runs: int) -> None:
    print(f"median of {runs} (min-max), MB/s; CPU s/GiB of tunnel processes")
    for result in results:
        for kind, row in result.summary().items():
            cpu = row["cpu_s_per_gib_median"]
            cpu_text = "-" if cpu is None else f"{cpu:.1f}"
            print(
                f"{result.route:18} {kind:8} {row['mb_s_median']:8.1f} "
                f"({row['mb_s_min']:.1f}-{row['mb_s_max']:.1f})  cpu {cpu_text}"
            )


def make_routes(args: argparse.Namespace) -> list[Route]:
    """Return the routes to measure, in order, as the options select them."""
    profile = args.profile.resolve() if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    routes: list[Route] = []
    for name in args.route or list(ROUTES):
        if name != "spoolgate":
            routes.append(ROUTES[name]())
            continue
        if args.baseline_src is not None:
            source = args.baseline_src.resolve()
            routes.append(
                SpoolgateTunnelRoute(profile, source, name="spoolgate-baseline")
            )
        routes.append(SpoolgateTunnelRoute(profile))
    return routes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--route",
        action="append",
        choices=sorted(ROUTES),
        help="route to measure, repeatable (default: all)",
    )
    parser.add_argument(
        "--size-mib", type=int, default=256, help="file size in MiB (default: 256)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="timed copies each way (default: 3)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the spoolgate routes' processes under cProfile and write "
        "ROUTE-bastion.prof and ROUTE-tunnel.prof into DIR (default: no "
        "profiling; the profiler slows them down, so the rates are not comparable)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        metavar="DIR",
        help="also measure spoolgate's tunnel with spoolgate imported from DIR "
        "(the src folder of another checkout), as route spoolgate-baseline, "
        "right before each spoolgate route (default: no baseline)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    reason = missing_requirements()
    if reason:
        print(f"bench/nfs.py: {reason}", file=sys.stderr)
        return 2
    size = args.size_mib * MIB
    results = []
    with tempfile.TemporaryDirectory(prefix="spoolgate-bench-nfs-") as tmp:
        workdir = Path(tmp)
        make_data(workdir / "data.bin", size)
        for route in make_routes(args):
            results.append(measure_route(route, workdir, size, args.runs))
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": git_commit(),
        "machine": machine(),
        "size_bytes": size,
        "runs": args.runs,
        "routes": {r.route: r.summary() for r in results},
        "samples": {
            r.route: {k: [asdict(s) for s in v] for k, v in r.samples.items()}
            for r in results
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps(report["machine"]))
        print_table(results, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
