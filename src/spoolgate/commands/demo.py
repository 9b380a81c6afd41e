"""``spoolgate demo``: show the index cache at work, then serve it over POP3.

The demo keeps everything under one state directory: ``spool/demo`` is the
demo mbox and ``cache/demo/`` contains its index cache. Each run first
writes the demo mbox afresh, generated or copied from ``--mbox``, so every
run starts from the same mail whatever earlier runs appended or POP3
clients deleted. It builds the index twice (a new cache, then a hit),
appends one generated message as a delivery agent would, and builds again
(an append that parses only the new bytes). Then it serves the mbox over
POP3 and POP3S on 127.0.0.1 for the user ``demo`` (``spoolgate.demo``)
until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spoolgate.demo import (
    DEFAULT_POP3_PORT,
    DEFAULT_POP3S_PORT,
    DEMO_USER,
    check_ports,
    demo_file_error,
    prepare_site,
    serve_site,
)
from spoolgate.errors import ConfigError, MboxError
from spoolgate.mbox.cache import RefreshReport, cache_path_for, open_index
from spoolgate.mbox.generate import GenerateOptions, generate_bytes, generate_file
from spoolgate.mbox.index import Variant
from spoolgate.mbox.lock import LockHints, LockSettings, lock_mbox

DEFAULT_STATE_DIR = Path("demo-state")
DEFAULT_MESSAGES = 2000
# Each run generates the demo mbox again, so a mistyped count must not fill
# the disk. Bigger test mboxes come from `python -m spoolgate.mbox.generate`.
MAX_MESSAGES = 100_000
DEFAULT_SEED = 1
# The demo mbox is written as mboxo, the format procmail and Postfix write.
_DEMO_VARIANT = Variant.MBOXO
# The demo has no lock options, and its spool is its own state directory.
_LOCK_SETTINGS = LockSettings(
    hints=LockHints(
        timeout=None,
        dotlock_stale=None,
        dotlock_denied="pass another --state-dir",
        no_write_access="pass another --state-dir",
    )
)


@dataclass(frozen=True, slots=True)
class BuildStep:
    """One index build of the demo and what it did."""

    refresh: str
    messages: int
    bytes_parsed: int
    seconds: float


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="generate a demo mbox, show the index cache, serve it over POP3",
        description="Generate a realistic demo mbox (or copy yours), build its "
        "index (new, then hit), append one message and build again (append). "
        "Then serve it on 127.0.0.1 over POP3 (STLS) and POP3S for the user "
        "'demo' with a random password and a self-signed certificate, and "
        "print how to fetch it with curl, mpop and fetchmail. Every run "
        "writes the demo mbox afresh, so reruns start from the same mail; "
        "the password and certificate are kept.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"directory for the demo spool and cache (default: ./{DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--mbox",
        type=Path,
        default=None,
        help="copy this mbox into the state directory instead of generating one "
        "(the copy is made again on every run; the file itself is not changed)",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=DEFAULT_MESSAGES,
        help=f"messages in the generated mbox, 1 to {MAX_MESSAGES} "
        f"(default: {DEFAULT_MESSAGES})",
    )
    parser.add_argument(
        "--pop3-port",
        type=int,
        default=DEFAULT_POP3_PORT,
        help=f"POP3 (STLS) port, any free port if taken or 0 "
        f"(default: {DEFAULT_POP3_PORT})",
    )
    parser.add_argument(
        "--pop3s-port",
        type=int,
        default=DEFAULT_POP3S_PORT,
        help=f"POP3S port, any free port if taken or 0 (default: {DEFAULT_POP3S_PORT})",
    )
    parser.add_argument(
        "--no-serve",
        action="store_true",
        help="only show the index cache outcomes, do not start the server",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object; when serving, one line with the connection "
        "details (host, ports, user, password, mbox, state_dir) before serving",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the index steps, print the outcomes, then serve the demo mbox."""
    check_options(args)
    state_dir: Path = args.state_dir
    prepare_state_dir(state_dir)
    with _reported(state_dir):
        mbox, source = prepare_mbox(state_dir, args.mbox, args.messages)
        # The server's cache template is cache/{user}, so it finds this cache.
        cache_dir = state_dir / "cache" / DEMO_USER
        # Start from no cache, so the first build shows the "new" outcome.
        cache_path_for(mbox, cache_dir).unlink(missing_ok=True)
        steps = [build(mbox, cache_dir), build(mbox, cache_dir)]
        seed = DEFAULT_SEED + os.path.getsize(mbox)
        appended = append_generated_message(mbox, seed=seed)
        steps.append(build(mbox, cache_dir))
    if args.no_serve or not args.json:
        _print(args.json, state_dir, mbox, source, steps, appended, cache_dir)
    if args.no_serve:
        return 0
    site = prepare_site(state_dir, mbox, args.pop3_port, args.pop3s_port)
    extra = {"source": source, "builds": [asdict(step) for step in steps]}
    serve_site(site, as_json=args.json, messages=steps[-1].messages, extra=extra)
    return 0


def check_options(args: argparse.Namespace) -> None:
    """Raise ConfigError for a numeric option outside its allowed range."""
    if not 1 <= args.messages <= MAX_MESSAGES:
        raise ConfigError(f"--messages {args.messages}: must be 1 to {MAX_MESSAGES}")
    check_ports(args.pop3_port, args.pop3s_port)


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory; raise ConfigError if it cannot be used."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        in_the_way = next(
            (path for path in (state_dir, *state_dir.parents) if path.is_file()),
            state_dir,
        )
        raise ConfigError(
            f"--state-dir {state_dir}: {in_the_way} is a file, not a directory; "
            "pass the path of a directory, new or existing"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"--state-dir {state_dir}: cannot create the directory "
            f"{state_dir.absolute()}: {exc.strerror}; run the demo in a "
            "directory you can write, or pass --state-dir with one"
        ) from exc
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--state-dir {state_dir}: this user cannot write to it; pass a "
            "directory of your own"
        )


@contextmanager
def _reported(state_dir: Path) -> Iterator[None]:
    """Turn an OSError of the demo's own files into one DemoError line."""
    try:
        yield
    except OSError as exc:
        raise demo_file_error(exc, state_dir) from exc


def prepare_mbox(
    state_dir: Path, copy_from: Path | None, messages: int
) -> tuple[Path, str]:
    """Write the demo mbox afresh, a copy or generated; return it and its source.

    Writing it on every run, rather than keeping the last run's file,
    means a rerun starts from the same mail.
    """
    spool = state_dir / "spool"
    spool.mkdir(exist_ok=True)
    # The demo user's maildrop is spool/demo, whatever the copy's name.
    mbox = spool / DEMO_USER
    if copy_from is not None:
        _copy_mbox(copy_from, mbox)
        return mbox, f"copy of {copy_from}"
    options = GenerateOptions(messages=messages, seed=DEFAULT_SEED, format="mboxo")
    generate_file(mbox, options)
    return mbox, f"generated, {messages} messages, seed {DEFAULT_SEED}"


def _copy_mbox(source: Path, mbox: Path) -> None:
    """Copy the ``--mbox`` file to the demo's maildrop; the source is unchanged."""
    if source.exists() and mbox.exists() and os.path.samefile(source, mbox):
        raise ConfigError(
            f"--mbox {source}: this is the demo's own mbox; pass the mbox it "
            "was copied from"
        )
    try:
        reader = source.open("rb")
    except OSError as exc:
        raise MboxError(
            f"cannot read --mbox {source}: {exc.strerror}; pass an mbox file "
            "you can read"
        ) from exc
    with reader, mbox.open("wb") as writer:
        shutil.copyfileobj(reader, writer)


def build(mbox: Path, cache_dir: Path) -> BuildStep:
    """Open the index under the mbox lock, as the POP3 server will."""
    with lock_mbox(mbox, _LOCK_SETTINGS):
        _, report = open_index(mbox, cache_dir, variant=_DEMO_VARIANT)
    return _step(report)


def append_generated_message(mbox: Path, seed: int) -> int:
    """Append one generated message under the lock; return the bytes written.

    Like a delivery agent, it first ends the mbox with an empty line so the
    new From_ line starts a line of its own.
    """
    data, _ = generate_bytes(GenerateOptions(messages=1, seed=seed, format="mboxo"))
    with lock_mbox(mbox, _LOCK_SETTINGS) as lock:
        size = os.fstat(lock.fd).st_size
        tail = os.pread(lock.fd, 2, max(size - 2, 0))
        if size == 0 or tail.endswith(b"\n\n"):
            prefix = b""
        elif tail.endswith(b"\n"):
            prefix = b"\n"
        else:
            prefix = b"\n\n"
        payload = prefix + data
        written = 0
        while written < len(payload):
            written += os.pwrite(lock.fd, payload[written:], size + written)
        os.fsync(lock.fd)
    return len(payload)


def _step(report: RefreshReport) -> BuildStep:
    return BuildStep(
        refresh=report.outcome.value,
        messages=report.messages,
        bytes_parsed=report.bytes_parsed,
        seconds=report.seconds,
    )


def _print(
    as_json: bool,
    state_dir: Path,
    mbox: Path,
    source: str,
    steps: list[BuildStep],
    appended: int,
    cache_dir: Path,
) -> None:
    if as_json:
        result: dict[str, Any] = {
            "state_dir": str(state_dir),
            "mbox": str(mbox),
            "source": source,
            "cache_dir": str(cache_dir),
            "builds": [asdict(step) for step in steps],
            "appended_bytes": appended,
        }
        print(json.dumps(result))
        return
    print(f"demo mbox: {mbox} ({source})")
    for number, step in enumerate(steps, start=1):
        if number == 3:
            print(f"appended one message: {appended} bytes")
        print(
            f"build {number}: {step.refresh:<7} {step.messages} messages, "
            f"{step.bytes_parsed} bytes parsed, {step.seconds * 1000:.1f} ms"
        )
    command = f"{spoolgate_command()} index show {shlex.quote(str(mbox))}"
    print(f"next: {command} --cache-dir {shlex.quote(str(cache_dir))}")


def spoolgate_command() -> str:
    """Return a shell command that runs this spoolgate from the current directory.

    ``make demo`` installs the script only into ``.venv/bin``, which is not
    on PATH unless the environment was activated, so a bare ``spoolgate``
    would not be found there.
    """
    if not sys.executable:
        return "spoolgate"
    script = Path(sys.executable).parent / "spoolgate"
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m spoolgate"
    found = shutil.which("spoolgate")
    if found is not None and os.path.samefile(found, script):
        return "spoolgate"
    relative = os.path.relpath(script)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return shlex.quote(str(script))
    # Without a slash the shell would search PATH instead.
    if os.sep not in relative:
        relative = os.path.join(os.curdir, relative)
    return shlex.quote(relative)
