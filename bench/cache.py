"""Benchmark the index cache: hit load, append refresh, memory per message.

Usage: python bench/cache.py [--mbox PATH] [--runs N] [--cold] [--json]

Uses the same data set as bench/scan.py (generated on first use). The
script appends generated messages to that mbox and truncates it back
afterwards, so the file ends as it started. It measures:

* a cache hit (stat, read and check the cache file, build the index);
* an append of 1 and of 100 messages: the refresh alone, and the atomic
  cache write (fsync included) that follows it;
* the resident memory of an open index per message, with tracemalloc.

Each measurement runs --runs times after one warm-up; the script prints
medians and p95. Standard library and spoolgate only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scan import (
    DEFAULT_MBOX,
    DEFAULT_MESSAGES,
    DEFAULT_SIZE,
    drop_page_cache,
    ensure_mbox,
    machine,
    summarize,
)
from spoolgate.mbox.cache import (
    Refresh,
    cache_path_for,
    load_cache,
    open_index,
    write_cache,
)
from spoolgate.mbox.generate import GenerateOptions, generate_bytes


def measure_hit(
    mbox: Path, cache_dir: Path, runs: int, cold: bool
) -> dict[str, object]:
    open_index(mbox, cache_dir)
    times = []
    for _ in range(runs):
        if cold:
            drop_page_cache()
        started = time.perf_counter()
        index, report = open_index(mbox, cache_dir)
        times.append(time.perf_counter() - started)
        assert report.outcome is Refresh.HIT, report
    return {**summarize(times), "runs": runs, "messages": len(index)}


def measure_append(
    mbox: Path, cache_dir: Path, messages: int, runs: int
) -> dict[str, object]:
    """Append ``messages`` generated messages, refresh, then restore the mbox."""
    base_size = mbox.stat().st_size
    refresh_times, write_times, parsed, appended = [], [], [], []
    for run in range(runs + 1):
        # Rebuild the cache for the unchanged file, outside the timing.
        open_index(mbox, cache_dir)
        extra, _ = generate_bytes(
            GenerateOptions(messages=messages, seed=1000 + run, format="mboxo")
        )
        try:
            with open(mbox, "ab") as file:
                file.write(extra)
            started = time.perf_counter()
            index, report = open_index(mbox, cache_dir, write=False)
            refreshed = time.perf_counter()
            write_cache(index, cache_path_for(mbox, cache_dir))
            written = time.perf_counter()
        finally:
            os.truncate(mbox, base_size)
        assert report.outcome is Refresh.APPEND, report
        if run == 0:
            continue
        refresh_times.append(refreshed - started)
        write_times.append(written - refreshed)
        parsed.append(report.bytes_parsed)
        appended.append(len(extra))
    return {
        "appended_messages": messages,
        "appended_bytes": appended,
        "bytes_parsed": parsed,
        "refresh": summarize(refresh_times),
        "cache_write": summarize(write_times),
        "runs": runs,
    }


def measure_memory(mbox: Path, cache_dir: Path) -> dict[str, object]:
    """Return the bytes an index loaded from the cache keeps allocated."""
    path = cache_path_for(mbox, cache_dir)
    open_index(mbox, cache_dir)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    index = load_cache(path)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {
        "messages": len(index),
        "bytes_allocated": allocated,
        "bytes_per_message": allocated / len(index),
        "column_bytes_per_message": index.resident_bytes() / len(index),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbox", type=Path, default=DEFAULT_MBOX)
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="bytes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="drop the page cache")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ensure_mbox(args.mbox, args.messages, args.size)
    cold = args.cold and drop_page_cache()
    with tempfile.TemporaryDirectory(prefix="spoolgate-bench-cache-") as directory:
        cache_dir = Path(directory)
        results: dict[str, object] = {
            "mbox": str(args.mbox),
            "bytes": args.mbox.stat().st_size,
            "page_cache": "cold" if cold else "warm",
            "cold_requested_but_not_permitted": args.cold and not cold,
            "machine": machine(),
            "hit": measure_hit(args.mbox, cache_dir, max(args.runs, 10), cold),
            "append_1": measure_append(args.mbox, cache_dir, 1, args.runs),
            "append_100": measure_append(args.mbox, cache_dir, 100, args.runs),
            "memory": measure_memory(args.mbox, cache_dir),
        }
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
