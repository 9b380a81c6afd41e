"""Ask an NFS server's portmapper which TCP port its MOUNT service uses.

One PMAPPROC_GETPORT call (RFC 1833 section 3.2, portmapper version 2)
over TCP with record marking (RFC 5531 section 11). The bastion does this
once at start when ``nfs.mount_port = 0``.
"""

from __future__ import annotations

import socket
import struct

from spoolgate.errors import TunnelError, TunnelUnreachableError

PMAP_PROGRAM = 100000
PMAP_VERSION = 2
PMAPPROC_GETPORT = 3
MOUNT_PROGRAM = 100005
MOUNT_VERSION = 3
IPPROTO_TCP = 6
LAST_FRAGMENT = 0x80000000
MAX_REPLY = 4096


def encode_getport_call(xid: int, program: int, version: int) -> bytes:
    """Return the record-marked GETPORT call for ``program``/``version`` over TCP."""
    body = struct.pack(
        ">IIIIII" + "IIII" + "IIII",
        xid, 0, 2, PMAP_PROGRAM, PMAP_VERSION, PMAPPROC_GETPORT,
        0, 0, 0, 0,  # AUTH_NONE credential and verifier
        program, version, IPPROTO_TCP, 0,
    )  # fmt: skip
    return struct.pack(">I", LAST_FRAGMENT | len(body)) + body


def decode_getport_reply(xid: int, record: bytes) -> int:
    """Return the port from a GETPORT reply body; raise TunnelError if invalid."""
    try:
        reply_xid, msg_type, reply_stat = struct.unpack_from(">III", record)
        if reply_xid != xid or msg_type != 1:
            raise TunnelError(f"portmapper reply has xid {reply_xid}, type {msg_type}")
        if reply_stat != 0:
            raise TunnelError(f"portmapper denied the call (reply_stat {reply_stat})")
        _flavor, verifier_len = struct.unpack_from(">II", record, 12)
        offset = 20 + (verifier_len + 3) // 4 * 4
        accept_stat, port = struct.unpack_from(">II", record, offset)
    except struct.error as exc:
        raise TunnelError(f"truncated portmapper reply ({len(record)} bytes)") from exc
    if accept_stat != 0:
        raise TunnelError(f"portmapper call failed (accept_stat {accept_stat})")
    return int(port)


def query_mount_port(host: str, port: int, timeout: float, xid: int) -> int:
    """Return the TCP port of MOUNT v3 registered at ``host``'s portmapper."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(encode_getport_call(xid, MOUNT_PROGRAM, MOUNT_VERSION))
            record = _read_record(sock)
    except OSError as exc:
        raise TunnelUnreachableError(
            f"cannot ask the portmapper at {host}:{port} for the MOUNT port: {exc}; "
            "set nfs.mount_port in the config to skip this"
        ) from exc
    found = decode_getport_reply(xid, record)
    if found == 0:
        raise TunnelError(
            f"portmapper at {host}:{port} has no MOUNT v3 over TCP; "
            "set nfs.mount_port in the config"
        )
    return found


def _read_record(sock: socket.socket) -> bytes:
    header = _read_exact(sock, 4)
    (mark,) = struct.unpack(">I", header)
    size = mark & ~LAST_FRAGMENT
    if not mark & LAST_FRAGMENT or size > MAX_REPLY:
        raise TunnelError(f"unexpected portmapper record mark {mark:#010x}")
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise TunnelError("portmapper closed the connection mid-reply")
        data += chunk
    return bytes(data)
