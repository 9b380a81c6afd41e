"""``spoolgate index build|show|check MBOX``: build, print and verify an index."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spoolgate.errors import ConfigError
from spoolgate.mbox.cache import (
    RefreshReport,
    default_cache_dir,
    open_index,
    scan_file,
)
from spoolgate.mbox.index import DEFAULT_DIGEST_BYTES, MboxIndex, Variant
from spoolgate.mbox.lock import DEFAULT_TIMEOUT_S, LockHints, LockSettings, lock_mbox

EXIT_OK = 0
EXIT_DIFFERENT = 1

EPILOG = """\
actions:
  build   refresh the index cache (new, hit, append or rebuild) and report it
  show    refresh like build, then print one line per message
  check   compare the cached index with a full rescan of the mbox

exit codes:
  0   success; for check, the cache matches a full rescan
  1   failed: check found a difference, or the mbox is missing, unreadable
      or not an mbox (the file does not start with "From ")
  2   usage error
  75  the mbox lock was busy for the whole --lock-timeout; try again

A cache file that is corrupt or of another version is rebuilt with a
warning. A cache directory that cannot be written is a warning too: the
index is then built in memory only.
"""

# How many differing messages `check` lists before it stops.
_MAX_LISTED_DIFFERENCES = 10

# The cache header stores the digest size as an unsigned 32-bit field. A
# large value costs little: the digest never covers more than the last
# message.
_MAX_DIGEST_BYTES = 2**32 - 1

# Lock errors name this command's options, not the pop3d config keys.
_LOCK_HINTS = LockHints(
    timeout="see --lock-timeout {timeout_s:g}",
    dotlock_stale=None,
    dotlock_denied="pass --no-lock to index it without locking, which is "
    "safe only while nothing delivers to the mbox",
    no_write_access="pass --no-lock to index it without locking, which is "
    "safe only while nothing delivers to the mbox",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``index`` subcommand."""
    parser = subparsers.add_parser(
        "index",
        help="build, show or check the index cache of an mbox",
        description="Build, show or check the index cache of one mbox file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("build", "show", "check"))
    parser.add_argument("mbox", type=Path, help="the mbox file")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"directory of index cache files (default: {default_cache_dir()})",
    )
    parser.add_argument(
        "--variant",
        choices=[variant.value for variant in Variant],
        default=Variant.MBOXO.value,
        help="mboxo serves >From lines as stored; mboxrd removes one '>' "
        "(default: mboxo)",
    )
    parser.add_argument(
        "--digest-bytes",
        type=int,
        default=DEFAULT_DIGEST_BYTES,
        help="bytes at the start of the last message whose digest detects "
        f"a rewrite, 1 to {_MAX_DIGEST_BYTES} (default: {DEFAULT_DIGEST_BYTES})",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for the mbox lock, 0 or more "
        f"(default: {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--no-lock",
        action="store_true",
        help="do not lock the mbox (only safe when nothing delivers to it)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run one ``index`` action and print its result."""
    check_options(args)
    variant = Variant(args.variant)
    with _locked(args.mbox, args.no_lock, args.lock_timeout):
        index, report = open_index(
            args.mbox,
            args.cache_dir,
            variant=variant,
            digest_bytes=args.digest_bytes,
            write=args.action != "check",
        )
        fresh = None
        if args.action == "check":
            fresh = scan_file(args.mbox, variant, args.digest_bytes)
    summary = _summary(args.mbox, index, report)
    if fresh is not None:
        differences = list_differences(index, fresh)
        summary["differences"] = differences
        _print(summary, args.json, records=None)
        return EXIT_DIFFERENT if differences else EXIT_OK
    records = None
    if args.action == "show":
        records = [_record_fields(index, n) for n in range(len(index))]
    _print(summary, args.json, records)
    return EXIT_OK


def check_options(args: argparse.Namespace) -> None:
    """Raise ConfigError for a numeric option outside its allowed range."""
    if not 1 <= args.digest_bytes <= _MAX_DIGEST_BYTES:
        raise ConfigError(
            f"--digest-bytes {args.digest_bytes}: must be 1 to {_MAX_DIGEST_BYTES}"
        )
    if not (math.isfinite(args.lock_timeout) and args.lock_timeout >= 0):
        raise ConfigError(
            f"--lock-timeout {args.lock_timeout}: must be a finite number >= 0 "
            "(seconds)"
        )


@contextlib.contextmanager
def _locked(mbox: Path, skip: bool, timeout_s: float) -> Iterator[None]:
    if skip:
        yield
        return
    with lock_mbox(mbox, LockSettings(timeout_s=timeout_s, hints=_LOCK_HINTS)):
        yield


def list_differences(cached: MboxIndex, fresh: MboxIndex) -> list[str]:
    """Return what differs between two indexes, as sentences (empty if equal)."""
    if cached.same_records(fresh):
        return []
    found = []
    if len(cached) != len(fresh):
        found.append(f"message count: cache {len(cached)}, rescan {len(fresh)}")
    for number in range(min(len(cached), len(fresh))):
        if cached[number] != fresh[number]:
            found.append(
                f"message {number + 1}: cache {cached[number]}, rescan {fresh[number]}"
            )
            if len(found) > _MAX_LISTED_DIFFERENCES:
                found.append("(more differences not listed)")
                break
    return found


def _summary(mbox: Path, index: MboxIndex, report: RefreshReport) -> dict[str, Any]:
    hidden = sum(index.is_hidden(n) for n in range(len(index)))
    return {
        "mbox": str(mbox),
        "cache": str(report.cache_path),
        "cache_written": report.cache_written,
        "refresh": report.outcome.value,
        "reason": report.reason,
        "messages": len(index),
        "hidden": hidden,
        "bytes_parsed": report.bytes_parsed,
        "seconds": round(report.seconds, 6),
        "variant": index.variant.value,
        "warnings": list(report.warnings),
    }


def _record_fields(index: MboxIndex, number: int) -> dict[str, Any]:
    record = index[number]
    return {
        "msgno": number + 1,
        "offset": record.offset,
        "length": record.length,
        "size": record.size,
        "uidl": record.uidl,
        "hidden": record.is_hidden,
    }


def _print(
    summary: dict[str, Any], as_json: bool, records: list[dict[str, Any]] | None
) -> None:
    if as_json:
        if records is not None:
            summary = {**summary, "records": records}
        print(json.dumps(summary))
        return
    reason = f" ({summary['reason']})" if summary["reason"] else ""
    written = "written" if summary["cache_written"] else "not written"
    print(f"mbox: {summary['mbox']}")
    print(f"cache: {summary['cache']} ({written})")
    print(f"refresh: {summary['refresh']}{reason}")
    print(f"messages: {summary['messages']} ({summary['hidden']} hidden)")
    print(f"bytes parsed: {summary['bytes_parsed']}")
    print(f"seconds: {summary['seconds']:.4f}")
    for difference in summary.get("differences", []):
        print(f"difference: {difference}")
    if "differences" in summary:
        print("check: " + ("DIFFERENT" if summary["differences"] else "ok"))
    if records is not None:
        print("msgno offset length size uidl hidden")
        for record in records:
            hidden = "yes" if record["hidden"] else "no"
            print(
                f"{record['msgno']} {record['offset']} {record['length']} "
                f"{record['size']} {record['uidl']} {hidden}"
            )
