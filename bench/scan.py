"""Benchmark a full mbox scan against grep and Python's mailbox module.

Usage: python bench/scan.py [--mbox PATH] [--runs N] [--cold] [--json]

Without --mbox it uses (and on first use generates) a ~1 GiB,
100,000-message mbox in /tmp/spoolgate-bench. Each tool runs once to warm
up, then the tools take turns for --runs rounds, so a change in the load of
a shared machine hits all of them alike. The script prints the median and
p95 wall-clock seconds of each tool, the median CPU seconds (user + system,
of this process or of grep), and the ratios of the medians. With --cold
the page cache is dropped before every timed run (root only; skipped with
a note otherwise). Standard library and spoolgate only.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from spoolgate.mbox.cache import scan_file
from spoolgate.mbox.generate import GenerateOptions, generate_file

DEFAULT_MBOX = Path("/tmp/spoolgate-bench/bench-100k.mbox")
DEFAULT_MESSAGES = 100_000
DEFAULT_SIZE = 1024**3


def ensure_mbox(path: Path, messages: int, size: int) -> None:
    """Generate the data set once; later runs reuse it."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {path} ({messages} messages, ~{size} bytes)", file=sys.stderr)
    options = GenerateOptions(messages=messages, target_size=size, seed=1)
    generate_file(path, options)


def drop_page_cache() -> bool:
    """Write back dirty pages and drop the page cache; False if not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as control:
            control.write("3\n")
    except OSError:
        return False
    return True


def cpu_seconds() -> float:
    """Return the user + system CPU time of this process and its children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_once(work: Callable[[], int], cold: bool) -> tuple[float, float, int]:
    """Run ``work`` once; return wall-clock seconds, CPU seconds and result."""
    if cold:
        drop_page_cache()
    cpu = cpu_seconds()
    started = time.perf_counter()
    result = work()
    wall = time.perf_counter() - started
    return wall, cpu_seconds() - cpu, result


def time_rounds(
    tools: dict[str, tuple[Callable[[], int], int]], cold: bool
) -> dict[str, tuple[list[float], list[float], int]]:
    """Warm up each tool, then run the tools in turns; return times per tool.

    A tool with fewer runs than the others drops out of the later rounds.
    """
    results: dict[str, tuple[list[float], list[float], int]] = {}
    for name, (work, runs) in tools.items():
        if runs >= 1:
            results[name] = ([], [], work())
    for round_number in range(max(runs for _, runs in tools.values())):
        for name, (work, runs) in tools.items():
            if round_number >= runs:
                continue
            wall, cpu, count = time_once(work, cold)
            walls, cpus, _ = results[name]
            walls.append(wall)
            cpus.append(cpu)
            results[name] = (walls, cpus, count)
    return results


def scan_messages(path: Path) -> int:
    return len(scan_file(path))


def grep_count(path: Path) -> int:
    grep = shutil.which("grep") or "grep"
    output = subprocess.run(
        [grep, "-c", "^From ", str(path)], capture_output=True, check=True, text=True
    ).stdout
    return int(output)


def mailbox_keys(path: Path) -> int:
    return len(mailbox.mbox(path, create=False).keys())


def summarize(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_s": statistics.median(times), "p95_s": p95}


def machine() -> dict[str, str]:
    """Describe the machine: CPU, cores, RAM, kernel, Python."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram_gib": f"{ram / 1024**3:.1f}",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbox", type=Path, default=DEFAULT_MBOX)
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="bytes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--mailbox-runs",
        type=int,
        default=None,
        help="runs of mailbox.mbox().keys(), slow on big files (default: --runs)",
    )
    parser.add_argument("--cold", action="store_true", help="drop the page cache")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ensure_mbox(args.mbox, args.messages, args.size)
    cold = args.cold and drop_page_cache()
    mailbox_runs = args.runs if args.mailbox_runs is None else args.mailbox_runs
    tools: dict[str, tuple[Callable[[], int], int]] = {
        "spoolgate_scan": (lambda: scan_messages(args.mbox), args.runs),
        "grep_c": (lambda: grep_count(args.mbox), args.runs),
        "python_mailbox_keys": (lambda: mailbox_keys(args.mbox), mailbox_runs),
    }
    results: dict[str, object] = {
        "mbox": str(args.mbox),
        "bytes": args.mbox.stat().st_size,
        "page_cache": "cold" if cold else "warm",
        "cold_requested_but_not_permitted": args.cold and not cold,
        "machine": machine(),
    }
    medians = {}
    cpu_medians = {}
    for name, (walls, cpus, count) in time_rounds(tools, cold).items():
        results[name] = {
            **summarize(walls),
            "cpu_median_s": statistics.median(cpus),
            "runs": len(walls),
            "messages": count,
        }
        medians[name] = statistics.median(walls)
        cpu_medians[name] = statistics.median(cpus)
    base = medians["spoolgate_scan"]
    results["ratio_scan_to_grep"] = base / medians["grep_c"]
    results["cpu_ratio_scan_to_grep"] = (
        cpu_medians["spoolgate_scan"] / cpu_medians["grep_c"]
    )
    if "python_mailbox_keys" in medians:
        results["ratio_mailbox_to_scan"] = medians["python_mailbox_keys"] / base
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
