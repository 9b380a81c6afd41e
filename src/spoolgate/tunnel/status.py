"""The bastion's status socket: a unix socket that returns one JSON object.

Each connection gets the current status and is closed; nothing is read
from the client. The socket is created with mode 0600 because it names
clients and their addresses.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from spoolgate.errors import TunnelError, TunnelUnreachableError

log = logging.getLogger(__name__)

MAX_STATUS = 16 * 1024 * 1024


Provider = Callable[[], dict[str, object] | Awaitable[dict[str, object]]]


async def serve_status(path: Path, provide: Provider) -> asyncio.AbstractServer:
    """Listen on the unix socket ``path``; each client gets ``provide()`` as JSON.

    ``provide`` may be a coroutine function; its result is awaited.
    """

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            found = provide()
            if inspect.isawaitable(found):
                found = await found
            writer.write(json.dumps(found).encode() + b"\n")
            await writer.drain()
        except ConnectionError as exc:
            log.info("status client went away: %s", exc)
        finally:
            writer.close()

    _remove_stale_socket(path)
    old_umask = os.umask(0o077)
    try:
        server = await asyncio.start_unix_server(handle, path)
    except OSError as exc:
        raise TunnelError(
            f"cannot listen on status socket {path}: {exc.strerror}"
        ) from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    log.info("status socket listening path=%s", path)
    return server


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise TunnelError(
            f"cannot create status socket {path}: a file that is not a socket "
            "is in the way; remove it or set bastion.status_socket"
        )
    path.unlink()


def remove_status_socket(path: Path) -> None:
    """Delete the status socket file if it is still there."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def query_status(path: Path, timeout: float = 5.0) -> dict[str, object]:
    """Connect to the status socket and return the decoded JSON object."""
    data = bytearray()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            while chunk := sock.recv(65536):
                data += chunk
                if len(data) > MAX_STATUS:
                    raise TunnelError(f"status from {path} exceeds {MAX_STATUS} bytes")
    except OSError as exc:
        raise TunnelUnreachableError(
            f"cannot read bastion status from {path}: {exc.strerror or exc}; "
            "is spoolgate bastion running with this status_socket?"
        ) from exc
    try:
        result = json.loads(data)
    except ValueError as exc:
        raise TunnelError(f"invalid status JSON from {path}: {exc}") from exc
    if not isinstance(result, dict):
        raise TunnelError(f"invalid status JSON from {path}: not an object")
    return result
