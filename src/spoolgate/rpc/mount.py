"""MOUNT protocol version 3 (RFC 1813 appendix I), program 100005.

Covers what an export policy needs. It reads the directory path in MNT
and UMNT calls, the file handle and auth flavours in a MNT reply, and the
EXPORT and DUMP lists. It builds an MNT3ERR_ACCES reply for a rejected MNT
and an EXPORT reply cut down to the exports a client may see. Paths stay
bytes because the protocol does not fix a character set. Malformed
arguments or results raise XDRError.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from spoolgate.errors import RPCError, XDRError
from spoolgate.rpc.message import Call, build_success
from spoolgate.rpc.xdr import Decoder, Encoder, decode_all

__all__ = [
    "MOUNT_PROGRAM",
    "MOUNT_VERSION",
    "ExportEntry",
    "MntResult",
    "MountEntry",
    "MountProc",
    "MountStat",
    "build_mnt_error_reply",
    "encode_dirpath",
    "encode_export_reply",
    "encode_mnt_reply",
    "filter_export_reply",
    "parse_dirpath",
    "parse_dump_reply",
    "parse_export_reply",
    "parse_mnt_reply",
]

MOUNT_PROGRAM = 100005
MOUNT_VERSION = 3
MNTPATHLEN = 1024
MNTNAMLEN = 255
FHSIZE3 = 64
# Not fixed by RFC 1813; servers send one to three (AUTH_SYS, Kerberos).
MAX_AUTH_FLAVORS = 64


class MountProc(enum.IntEnum):
    NULL = 0
    MNT = 1
    DUMP = 2
    UMNT = 3
    UMNTALL = 4
    EXPORT = 5


class MountStat(enum.IntEnum):
    MNT3_OK = 0
    MNT3ERR_PERM = 1
    MNT3ERR_NOENT = 2
    MNT3ERR_IO = 5
    MNT3ERR_ACCES = 13
    MNT3ERR_NOTDIR = 20
    MNT3ERR_INVAL = 22
    MNT3ERR_NAMETOOLONG = 63
    MNT3ERR_NOTSUPP = 10004
    MNT3ERR_SERVERFAULT = 10006


@dataclass(frozen=True, slots=True)
class MntResult:
    """A decoded mountres3: the handle and flavours are set only for MNT3_OK."""

    status: MountStat
    fhandle: bytes = b""
    auth_flavors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One exportnode: a directory and the groups (hosts, netgroups) allowed."""

    directory: bytes
    groups: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One mountbody of a DUMP reply."""

    hostname: bytes
    directory: bytes


def parse_dirpath(args: bytes) -> bytes:
    """Return the directory of a MNT or UMNT call from its argument bytes."""
    return decode_all(args, lambda dec: dec.string(MNTPATHLEN), "MNT dirpath argument")


def encode_dirpath(path: bytes) -> bytes:
    enc = Encoder()
    enc.string(path, MNTPATHLEN)
    return enc.getvalue()


def _read_mnt(dec: Decoder) -> MntResult:
    raw_status = dec.uint32()
    try:
        status = MountStat(raw_status)
    except ValueError:
        raise XDRError(f"unknown mountstat3 {raw_status}") from None
    if status is not MountStat.MNT3_OK:
        return MntResult(status)
    fhandle = dec.opaque(FHSIZE3)
    flavors = dec.uint32_array(MAX_AUTH_FLAVORS)
    return MntResult(status, fhandle, flavors)


def parse_mnt_reply(results: bytes) -> MntResult:
    """Decode the mountres3 that follows a SUCCESS reply header."""
    return decode_all(results, _read_mnt, "MNT reply")


def encode_mnt_reply(result: MntResult) -> bytes:
    enc = Encoder()
    enc.uint32(result.status)
    if result.status is MountStat.MNT3_OK:
        enc.opaque(result.fhandle, FHSIZE3)
        enc.uint32_array(result.auth_flavors)
    return enc.getvalue()


def build_mnt_error_reply(
    call: Call, status: MountStat = MountStat.MNT3ERR_ACCES
) -> bytes:
    """Encode a whole RPC reply refusing a MNT call with ``status``."""
    if status is MountStat.MNT3_OK:
        raise RPCError("build MNT reply: MNT3_OK is not a refusal")
    return build_success(call, encode_mnt_reply(MntResult(status)))


def _read_groups(dec: Decoder) -> tuple[bytes, ...]:
    groups: list[bytes] = []
    while dec.bool():
        groups.append(dec.string(MNTNAMLEN))
    return tuple(groups)


def _read_exports(dec: Decoder) -> tuple[ExportEntry, ...]:
    # Each entry takes at least 12 bytes, so the record size bounds the loop.
    entries: list[ExportEntry] = []
    while dec.bool():
        directory = dec.string(MNTPATHLEN)
        entries.append(ExportEntry(directory, _read_groups(dec)))
    return tuple(entries)


def parse_export_reply(results: bytes) -> tuple[ExportEntry, ...]:
    """Decode the exports list that follows a SUCCESS reply header."""
    return decode_all(results, _read_exports, "EXPORT reply")


def encode_export_reply(entries: tuple[ExportEntry, ...] | list[ExportEntry]) -> bytes:
    enc = Encoder()
    for entry in entries:
        enc.bool(True)
        enc.string(entry.directory, MNTPATHLEN)
        for group in entry.groups:
            enc.bool(True)
            enc.string(group, MNTNAMLEN)
        enc.bool(False)
    enc.bool(False)
    return enc.getvalue()


def filter_export_reply(results: bytes, allowed: Callable[[bytes], bool]) -> bytes:
    """Re-encode an EXPORT reply keeping only directories ``allowed`` accepts."""
    entries = parse_export_reply(results)
    return encode_export_reply([entry for entry in entries if allowed(entry.directory)])


def _read_mount_list(dec: Decoder) -> tuple[MountEntry, ...]:
    entries: list[MountEntry] = []
    while dec.bool():
        hostname = dec.string(MNTNAMLEN)
        entries.append(MountEntry(hostname, dec.string(MNTPATHLEN)))
    return tuple(entries)


def parse_dump_reply(results: bytes) -> tuple[MountEntry, ...]:
    """Decode the mountlist that follows a SUCCESS reply to DUMP."""
    return decode_all(results, _read_mount_list, "DUMP reply")
