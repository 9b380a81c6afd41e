"""NFS version 3 (RFC 1813), program 100003: only what a handle policy needs.

For a call: which file handles it carries (every procedure but NULL starts
with one; RENAME and LINK carry two) and the names it looks up or creates.
For a reply: the handles the server issues (LOOKUP, CREATE, MKDIR, SYMLINK,
MKNOD, READDIRPLUS). For a refused call: an error reply with the failure
arm of that procedure's result, all optional attributes absent.
Malformed arguments or results raise XDRError.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from spoolgate.errors import RPCError, XDRError
from spoolgate.rpc.message import Call, build_success
from spoolgate.rpc.xdr import Decoder, Encoder

__all__ = [
    "NFS_PROGRAM",
    "Nfs3Call",
    "Nfs3Proc",
    "Nfs3Stat",
    "build_error_reply",
    "encode_error_results",
    "issued_handles",
    "parse_call_args",
    "reply_status",
]

NFS_PROGRAM = 100003
NFS3_VERSION = 3
NFS3_FHSIZE = 64
# filename3 and nfspath3 are unbounded strings in RFC 1813; Linux caps names
# at 255 bytes and paths at 4096 (NAME_MAX, PATH_MAX).
MAX_NAME = 255
MAX_PATH = 4096
# fattr3 is a fixed 84 bytes: five uint32, then size, used, rdev, fsid,
# fileid (uint64 or two uint32 each) and three nfstime3.
FATTR3_SIZE = 84
WCC_ATTR_SIZE = 24


class Nfs3Proc(enum.IntEnum):
    NULL = 0
    GETATTR = 1
    SETATTR = 2
    LOOKUP = 3
    ACCESS = 4
    READLINK = 5
    READ = 6
    WRITE = 7
    CREATE = 8
    MKDIR = 9
    SYMLINK = 10
    MKNOD = 11
    REMOVE = 12
    RMDIR = 13
    RENAME = 14
    LINK = 15
    READDIR = 16
    READDIRPLUS = 17
    FSSTAT = 18
    FSINFO = 19
    PATHCONF = 20
    COMMIT = 21


class Nfs3Stat(enum.IntEnum):
    NFS3_OK = 0
    NFS3ERR_PERM = 1
    NFS3ERR_NOENT = 2
    NFS3ERR_IO = 5
    NFS3ERR_NXIO = 6
    NFS3ERR_ACCES = 13
    NFS3ERR_EXIST = 17
    NFS3ERR_XDEV = 18
    NFS3ERR_NODEV = 19
    NFS3ERR_NOTDIR = 20
    NFS3ERR_ISDIR = 21
    NFS3ERR_INVAL = 22
    NFS3ERR_FBIG = 27
    NFS3ERR_NOSPC = 28
    NFS3ERR_ROFS = 30
    NFS3ERR_MLINK = 31
    NFS3ERR_NAMETOOLONG = 63
    NFS3ERR_NOTEMPTY = 66
    NFS3ERR_DQUOT = 69
    NFS3ERR_STALE = 70
    NFS3ERR_REMOTE = 71
    NFS3ERR_BADHANDLE = 10001
    NFS3ERR_NOT_SYNC = 10002
    NFS3ERR_BAD_COOKIE = 10003
    NFS3ERR_NOTSUPP = 10004
    NFS3ERR_TOOSMALL = 10005
    NFS3ERR_SERVERFAULT = 10006
    NFS3ERR_BADTYPE = 10007
    NFS3ERR_JUKEBOX = 10008


@dataclass(frozen=True, slots=True)
class Nfs3Call:
    """The handles a call operates on and the names it passes with them."""

    proc: Nfs3Proc
    handles: tuple[bytes, ...]
    names: tuple[bytes, ...] = ()


# Procedures whose arguments start with diropargs3 (a handle and a name).
_DIROP_PROCS = frozenset(
    {
        Nfs3Proc.LOOKUP,
        Nfs3Proc.CREATE,
        Nfs3Proc.MKDIR,
        Nfs3Proc.SYMLINK,
        Nfs3Proc.MKNOD,
        Nfs3Proc.REMOVE,
        Nfs3Proc.RMDIR,
    }
)


def _proc(proc: int) -> Nfs3Proc:
    try:
        return Nfs3Proc(proc)
    except ValueError:
        raise RPCError(f"nfs3: unknown procedure {proc}") from None


def _read_call(proc: Nfs3Proc, dec: Decoder) -> Nfs3Call:
    if proc is Nfs3Proc.NULL:
        return Nfs3Call(proc, ())
    first = dec.opaque(NFS3_FHSIZE)
    if proc in _DIROP_PROCS:
        return Nfs3Call(proc, (first,), (dec.string(MAX_NAME),))
    if proc is Nfs3Proc.RENAME:
        from_name = dec.string(MAX_NAME)
        to_dir = dec.opaque(NFS3_FHSIZE)
        return Nfs3Call(proc, (first, to_dir), (from_name, dec.string(MAX_NAME)))
    if proc is Nfs3Proc.LINK:
        link_dir = dec.opaque(NFS3_FHSIZE)
        return Nfs3Call(proc, (first, link_dir), (dec.string(MAX_NAME),))
    return Nfs3Call(proc, (first,))


def parse_call_args(proc: int, args: bytes) -> Nfs3Call:
    """Read the handles and names at the start of an NFSv3 call's arguments.

    Only the leading fields are decoded. The server checks the rest of the
    arguments (the data of a WRITE, the attributes of a SETATTR).
    """
    nfs_proc = _proc(proc)
    try:
        return _read_call(nfs_proc, Decoder(args))
    except XDRError as exc:
        raise XDRError(f"nfs3 {nfs_proc.name} arguments: {exc}") from exc


def _skip_post_op_attr(dec: Decoder) -> None:
    if dec.bool():
        dec.skip(FATTR3_SIZE)


def _skip_wcc_data(dec: Decoder) -> None:
    if dec.bool():
        dec.skip(WCC_ATTR_SIZE)
    _skip_post_op_attr(dec)


def _read_post_op_fh(dec: Decoder) -> bytes | None:
    if dec.bool():
        return dec.opaque(NFS3_FHSIZE)
    return None


def _read_status(dec: Decoder) -> Nfs3Stat:
    raw = dec.uint32()
    try:
        return Nfs3Stat(raw)
    except ValueError:
        raise XDRError(f"unknown nfsstat3 {raw}") from None


def reply_status(proc: int, results: bytes) -> Nfs3Stat:
    """Return the nfsstat3 that opens the results of every procedure but NULL."""
    if _proc(proc) is Nfs3Proc.NULL:
        raise RPCError("nfs3 NULL reply: has no status")
    return _read_status(Decoder(results))


def _lookup_handles(dec: Decoder, skip_names: frozenset[bytes]) -> list[bytes]:
    return [dec.opaque(NFS3_FHSIZE)]


def _diropres_handles(dec: Decoder, skip_names: frozenset[bytes]) -> list[bytes]:
    handle = _read_post_op_fh(dec)
    return [] if handle is None else [handle]


def _readdirplus_handles(dec: Decoder, skip_names: frozenset[bytes]) -> list[bytes]:
    _skip_post_op_attr(dec)
    dec.skip(8)  # cookieverf3
    handles: list[bytes] = []
    # Each entry is at least 32 bytes, so the record size bounds the loop.
    while dec.bool():
        dec.uint64()  # fileid
        name = dec.string(MAX_NAME)
        dec.uint64()  # cookie
        _skip_post_op_attr(dec)
        handle = _read_post_op_fh(dec)
        if handle is not None and name not in skip_names:
            handles.append(handle)
    dec.bool()  # eof
    return handles


_HANDLE_READERS = {
    Nfs3Proc.LOOKUP: _lookup_handles,
    Nfs3Proc.CREATE: _diropres_handles,
    Nfs3Proc.MKDIR: _diropres_handles,
    Nfs3Proc.SYMLINK: _diropres_handles,
    Nfs3Proc.MKNOD: _diropres_handles,
    Nfs3Proc.READDIRPLUS: _readdirplus_handles,
}


def issued_handles(
    proc: int, results: bytes, *, skip_names: frozenset[bytes] = frozenset()
) -> tuple[bytes, ...]:
    """Return the file handles a successful reply hands to the client.

    Replies of other procedures, and failed replies, issue none. For
    READDIRPLUS the entries list is decoded to its end; trailing bytes after
    the fields read are not checked, and the handles of entries named in
    ``skip_names`` are left out (a proxy skips ``..``, whose handle can lie
    outside the directory tree a client mounted).
    """
    reader = _HANDLE_READERS.get(_proc(proc))
    if reader is None:
        return ()
    dec = Decoder(results)
    try:
        if _read_status(dec) is not Nfs3Stat.NFS3_OK:
            return ()
        return tuple(reader(dec, skip_names))
    except XDRError as exc:
        raise XDRError(f"nfs3 {Nfs3Proc(proc).name} reply: {exc}") from exc


# Number of absent optional fields (each one XDR bool FALSE) in the failure
# arm of each procedure's result: post_op_attr is one, wcc_data is two
# (pre_op_attr and post_op_attr), RENAME has two wcc_data, LINK has a
# post_op_attr and a wcc_data.
_FAILURE_WORDS = {
    Nfs3Proc.GETATTR: 0,
    Nfs3Proc.SETATTR: 2,
    Nfs3Proc.LOOKUP: 1,
    Nfs3Proc.ACCESS: 1,
    Nfs3Proc.READLINK: 1,
    Nfs3Proc.READ: 1,
    Nfs3Proc.WRITE: 2,
    Nfs3Proc.CREATE: 2,
    Nfs3Proc.MKDIR: 2,
    Nfs3Proc.SYMLINK: 2,
    Nfs3Proc.MKNOD: 2,
    Nfs3Proc.REMOVE: 2,
    Nfs3Proc.RMDIR: 2,
    Nfs3Proc.RENAME: 4,
    Nfs3Proc.LINK: 3,
    Nfs3Proc.READDIR: 1,
    Nfs3Proc.READDIRPLUS: 1,
    Nfs3Proc.FSSTAT: 1,
    Nfs3Proc.FSINFO: 1,
    Nfs3Proc.PATHCONF: 1,
    Nfs3Proc.COMMIT: 2,
}


def encode_error_results(proc: int, status: Nfs3Stat) -> bytes:
    """Encode the results of ``proc`` failing with ``status``."""
    nfs_proc = _proc(proc)
    if nfs_proc is Nfs3Proc.NULL:
        raise RPCError("nfs3 NULL: has no error result; reply PROC_UNAVAIL instead")
    if status is Nfs3Stat.NFS3_OK:
        raise RPCError("nfs3 error reply: NFS3_OK is not an error")
    enc = Encoder()
    enc.uint32(status)
    for _ in range(_FAILURE_WORDS[nfs_proc]):
        enc.bool(False)
    return enc.getvalue()


def build_error_reply(call: Call, status: Nfs3Stat = Nfs3Stat.NFS3ERR_STALE) -> bytes:
    """Encode a whole RPC reply refusing an NFSv3 ``call`` with ``status``."""
    return build_success(call, encode_error_results(call.proc, status))
