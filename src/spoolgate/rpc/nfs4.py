"""NFSv4 COMPOUND (RFC 7530 for 4.0, RFC 8881 for 4.1), program 100003.

A COMPOUND is a list of operations that share a "current filehandle" and a
"saved filehandle". An export policy must know which objects a COMPOUND
reaches, so :func:`parse_compound_call` walks the operations and follows
the current filehandle as a :class:`Position`. A position is a starting
point plus the names looked up from it. The starting point is the
pseudo-root (PUTROOTFS), the public handle (PUTPUBFH) or a handle (PUTFH).

What is followed:

* PUTROOTFS, PUTPUBFH and PUTFH set the current position.
* LOOKUP appends a name as sent, including "." or "..". LOOKUPP removes
  the last name, or appends ".." when there is none left to remove,
  because the parent of a handle is not known.
* OPEN with a name (CLAIM_NULL, CLAIM_DELEGATE_CUR, CLAIM_DELEGATE_PREV)
  and CREATE move to the named child, as the server does on success.
* SAVEFH and RESTOREFH copy between the current and saved position.
* SECINFO reaches the named child; SECINFO and SECINFO_NO_NAME consume the
  current filehandle (RFC 8881).
* RENAME reaches the old name under the saved position and the new name
  under the current one. LINK and REMOVE reach the name under the current
  one.
* GETFH records the position whose handle the reply returns, so a proxy
  can learn that handle from the reply's result at the same index.

What is not followed: OPENATTR (named attribute directories) keeps the
position of the file it was called on. Every other operation acts on the
current position without moving it. Parsing stops at the first operation
whose arguments this module cannot decode (NFSv4.2 operations other than
ALLOCATE, DEALLOCATE, READ_PLUS and SEEK, unknown opcodes, unknown union
arms); the result then has ``complete=False`` and a policy must treat the
rest of the COMPOUND as unknown. The server stops at the first failing
operation, so the positions are those reached if every operation succeeds,
which is the most a COMPOUND can reach.

Malformed arguments or results raise XDRError.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from spoolgate.errors import RPCError, XDRError
from spoolgate.rpc.message import Call, build_success
from spoolgate.rpc.xdr import Decoder, Encoder

__all__ = [
    "Base",
    "Compound",
    "CompoundReply",
    "Nfs4Op",
    "Op",
    "Position",
    "build_compound_error_reply",
    "encode_compound_error",
    "parse_compound_call",
    "parse_compound_reply",
]

NFS4_VERSION = 4
NFS4_PROC_COMPOUND = 1
NFS4_FHSIZE = 128
NFS4_OPAQUE_LIMIT = 1024
NFS4_VERIFIER_SIZE = 8
NFS4_SESSIONID_SIZE = 16
STATEID_SIZE = 16
# Limits of this parser, not of the protocol; each is far above what
# clients send.
MAX_TAG = 1024
MAX_OPS = 256
MAX_COMPONENT = 1024
MAX_BITMAP_WORDS = 8
MAX_ATTR_BYTES = 64 * 1024
MAX_ARRAY = 1024
MAX_LINKTEXT = 4096

NFS4_OK = 0
NFS4ERR_ACCESS = 13
NFS4ERR_STALE = 70
NFS4ERR_WRONGSEC = 10016


class Nfs4Op(enum.IntEnum):
    ACCESS = 3
    CLOSE = 4
    COMMIT = 5
    CREATE = 6
    DELEGPURGE = 7
    DELEGRETURN = 8
    GETATTR = 9
    GETFH = 10
    LINK = 11
    LOCK = 12
    LOCKT = 13
    LOCKU = 14
    LOOKUP = 15
    LOOKUPP = 16
    NVERIFY = 17
    OPEN = 18
    OPENATTR = 19
    OPEN_CONFIRM = 20
    OPEN_DOWNGRADE = 21
    PUTFH = 22
    PUTPUBFH = 23
    PUTROOTFS = 24
    READ = 25
    READDIR = 26
    READLINK = 27
    REMOVE = 28
    RENAME = 29
    RENEW = 30
    RESTOREFH = 31
    SAVEFH = 32
    SECINFO = 33
    SETATTR = 34
    SETCLIENTID = 35
    SETCLIENTID_CONFIRM = 36
    VERIFY = 37
    WRITE = 38
    RELEASE_LOCKOWNER = 39
    BACKCHANNEL_CTL = 40
    BIND_CONN_TO_SESSION = 41
    EXCHANGE_ID = 42
    CREATE_SESSION = 43
    DESTROY_SESSION = 44
    FREE_STATEID = 45
    GET_DIR_DELEGATION = 46
    GETDEVICEINFO = 47
    GETDEVICELIST = 48
    LAYOUTCOMMIT = 49
    LAYOUTGET = 50
    LAYOUTRETURN = 51
    SECINFO_NO_NAME = 52
    SEQUENCE = 53
    SET_SSV = 54
    TEST_STATEID = 55
    WANT_DELEGATION = 56
    DESTROY_CLIENTID = 57
    RECLAIM_COMPLETE = 58
    ALLOCATE = 59
    DEALLOCATE = 62
    READ_PLUS = 68
    SEEK = 69
    ILLEGAL = 10044


class Base(enum.Enum):
    """Starting point of a position."""

    ROOTFS = "rootfs"
    PUBLIC = "public"
    HANDLE = "handle"


PARENT = b".."


@dataclass(frozen=True, slots=True)
class Position:
    """A filehandle as a start point and the names looked up from it."""

    base: Base
    handle: bytes = b""
    components: tuple[bytes, ...] = ()

    def child(self, name: bytes) -> Position:
        return Position(self.base, self.handle, (*self.components, name))

    def parent(self) -> Position:
        if self.components and self.components[-1] != PARENT:
            return Position(self.base, self.handle, self.components[:-1])
        return self.child(PARENT)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: its opcode, the current position before it runs, the
    names it passes, and for PUTFH the handle it sets."""

    opcode: int
    position: Position | None
    names: tuple[bytes, ...] = ()
    handle: bytes | None = None


@dataclass(frozen=True, slots=True)
class Compound:
    """A parsed COMPOUND call.

    ``reached`` lists every position the COMPOUND can touch, in order and
    without repeats. ``getfh`` pairs the index of each GETFH with the
    position whose handle it returns. ``complete`` is False when parsing
    stopped early; ``ops`` then ends with the operation that stopped it.
    """

    tag: bytes
    minorversion: int
    op_count: int
    ops: tuple[Op, ...]
    reached: tuple[Position, ...]
    getfh: tuple[tuple[int, Position], ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class CompoundReply:
    """A parsed COMPOUND reply: status, per-op statuses, handles from GETFH."""

    status: int
    tag: bytes
    results: tuple[tuple[int, int], ...]
    handles: tuple[tuple[int, bytes], ...]
    complete: bool


class _UnsupportedArgsError(Exception):
    """Arguments this module cannot decode: parsing stops, nothing is wrong."""


# -- argument readers: each consumes one operation's arguments and returns
# -- the names (or, for PUTFH, the handle) the walk needs.

Names = tuple[bytes, ...]


def _stateid(dec: Decoder) -> None:
    dec.skip(STATEID_SIZE)


def _bitmap(dec: Decoder) -> None:
    dec.uint32_array(MAX_BITMAP_WORDS)


def _fattr(dec: Decoder) -> None:
    _bitmap(dec)
    dec.opaque(MAX_ATTR_BYTES)


def _component(dec: Decoder) -> bytes:
    return dec.string(MAX_COMPONENT)


def _lock_owner(dec: Decoder) -> None:
    dec.uint64()
    dec.opaque(NFS4_OPAQUE_LIMIT)


def _nfstime(dec: Decoder) -> None:
    dec.skip(12)


def _fixed(size: int) -> Callable[[Decoder], Names]:
    def read(dec: Decoder) -> Names:
        dec.skip(size)
        return ()

    return read


def _one_component(dec: Decoder) -> Names:
    return (_component(dec),)


def _putfh(dec: Decoder) -> Names:
    return (dec.opaque(NFS4_FHSIZE),)


def _create(dec: Decoder) -> Names:
    objtype = dec.uint32()
    if objtype == 5:  # NF4LNK: linktext4
        dec.opaque(MAX_LINKTEXT)
    elif objtype in (3, 4):  # NF4BLK, NF4CHR: specdata4
        dec.skip(8)
    name = _component(dec)
    _fattr(dec)
    return (name,)


def _open(dec: Decoder) -> Names:
    dec.skip(12)  # seqid, share_access, share_deny
    _lock_owner(dec)
    if dec.uint32() == 1:  # OPEN4_CREATE: createhow4
        mode = dec.uint32()
        if mode in (0, 1):  # UNCHECKED4, GUARDED4
            _fattr(dec)
        elif mode == 2:  # EXCLUSIVE4
            dec.skip(NFS4_VERIFIER_SIZE)
        elif mode == 3:  # EXCLUSIVE4_1
            dec.skip(NFS4_VERIFIER_SIZE)
            _fattr(dec)
        else:
            raise _UnsupportedArgsError(f"OPEN createmode {mode}")
    return _open_claim(dec)


def _open_claim(dec: Decoder) -> Names:
    claim = dec.uint32()
    if claim in (0, 3):  # CLAIM_NULL, CLAIM_DELEGATE_PREV
        return (_component(dec),)
    if claim == 2:  # CLAIM_DELEGATE_CUR
        _stateid(dec)
        return (_component(dec),)
    if claim == 1:  # CLAIM_PREVIOUS: delegation type
        dec.uint32()
    elif claim == 5:  # CLAIM_DELEG_CUR_FH
        _stateid(dec)
    elif claim not in (4, 6):  # CLAIM_FH, CLAIM_DELEG_PREV_FH: void
        raise _UnsupportedArgsError(f"OPEN claim {claim}")
    return ()


def _lock(dec: Decoder) -> Names:
    dec.skip(4 + 4 + 8 + 8)  # locktype, reclaim, offset, length
    if dec.bool():  # open_to_lock_owner4
        dec.uint32()
        _stateid(dec)
        dec.uint32()
        _lock_owner(dec)
    else:  # exist_lock_owner4
        _stateid(dec)
        dec.uint32()
    return ()


def _lockt(dec: Decoder) -> Names:
    dec.skip(4 + 8 + 8)
    _lock_owner(dec)
    return ()


def _lock_owner_only(dec: Decoder) -> Names:
    _lock_owner(dec)
    return ()


def _stateid_fattr(dec: Decoder) -> Names:
    _stateid(dec)
    _fattr(dec)
    return ()


def _fattr_only(dec: Decoder) -> Names:
    _fattr(dec)
    return ()


def _bitmap_only(dec: Decoder) -> Names:
    _bitmap(dec)
    return ()


def _readdir(dec: Decoder) -> Names:
    dec.skip(8 + NFS4_VERIFIER_SIZE + 4 + 4)
    _bitmap(dec)
    return ()


def _rename(dec: Decoder) -> Names:
    return (_component(dec), _component(dec))


def _write(dec: Decoder) -> Names:
    dec.skip(STATEID_SIZE + 8 + 4)
    dec.opaque(0xFFFFFFFF)
    return ()


def _setclientid(dec: Decoder) -> Names:
    dec.skip(NFS4_VERIFIER_SIZE)  # nfs_client_id4.verifier
    dec.opaque(NFS4_OPAQUE_LIMIT)  # nfs_client_id4.id
    dec.uint32()  # cb_program
    dec.string(MAX_COMPONENT)  # r_netid
    dec.string(MAX_COMPONENT)  # r_addr
    dec.uint32()  # callback_ident
    return ()


def _callback_sec_parms(dec: Decoder) -> None:
    for _ in range(dec.length(MAX_ARRAY, "callback_sec_parms4 count")):
        flavor = dec.uint32()
        if flavor == 1:  # AUTH_SYS: authsys_parms
            dec.uint32()
            dec.string(255)
            dec.skip(8)
            dec.uint32_array(16)
        elif flavor == 6:  # RPCSEC_GSS: gss_cb_handles4
            dec.uint32()
            dec.opaque(NFS4_OPAQUE_LIMIT)
            dec.opaque(NFS4_OPAQUE_LIMIT)
        elif flavor != 0:
            raise _UnsupportedArgsError(f"callback security flavour {flavor}")


def _backchannel_ctl(dec: Decoder) -> Names:
    dec.uint32()
    _callback_sec_parms(dec)
    return ()


def _state_protect_ops(dec: Decoder) -> None:
    _bitmap(dec)
    _bitmap(dec)


def _exchange_id(dec: Decoder) -> Names:
    dec.skip(NFS4_VERIFIER_SIZE)
    dec.opaque(NFS4_OPAQUE_LIMIT)  # co_ownerid
    dec.uint32()  # flags
    how = dec.uint32()
    if how == 1:  # SP4_MACH_CRED
        _state_protect_ops(dec)
    elif how == 2:  # SP4_SSV
        _state_protect_ops(dec)
        for _ in range(2):  # hash and encryption algorithm OIDs
            for _ in range(dec.length(MAX_ARRAY, "sec_oid4 count")):
                dec.opaque(NFS4_OPAQUE_LIMIT)
        dec.skip(8)  # window, num_gss_handles
    elif how != 0:
        raise _UnsupportedArgsError(f"EXCHANGE_ID state protection {how}")
    if dec.length(1, "client_impl_id count"):
        dec.string(NFS4_OPAQUE_LIMIT)
        dec.string(NFS4_OPAQUE_LIMIT)
        _nfstime(dec)
    return ()


def _channel_attrs(dec: Decoder) -> None:
    dec.skip(6 * 4)
    dec.uint32_array(1)  # ca_rdma_ird<1>


def _create_session(dec: Decoder) -> Names:
    dec.skip(8 + 4 + 4)  # clientid, sequence, flags
    _channel_attrs(dec)
    _channel_attrs(dec)
    dec.uint32()  # cb_program
    _callback_sec_parms(dec)
    return ()


def _get_dir_delegation(dec: Decoder) -> Names:
    dec.bool()
    _bitmap(dec)
    _nfstime(dec)
    _nfstime(dec)
    _bitmap(dec)
    _bitmap(dec)
    return ()


def _getdeviceinfo(dec: Decoder) -> Names:
    dec.skip(16 + 4 + 4)
    _bitmap(dec)
    return ()


def _layoutcommit(dec: Decoder) -> Names:
    dec.skip(8 + 8 + 4 + STATEID_SIZE)
    if dec.bool():
        dec.uint64()
    if dec.bool():
        _nfstime(dec)
    dec.uint32()
    dec.opaque(MAX_ATTR_BYTES)
    return ()


def _layoutreturn(dec: Decoder) -> Names:
    dec.skip(4 + 4 + 4)
    kind = dec.uint32()
    if kind == 1:  # LAYOUTRETURN4_FILE
        dec.skip(8 + 8 + STATEID_SIZE)
        dec.opaque(MAX_ATTR_BYTES)
    elif kind not in (2, 3):
        raise _UnsupportedArgsError(f"LAYOUTRETURN type {kind}")
    return ()


def _set_ssv(dec: Decoder) -> Names:
    dec.opaque(NFS4_OPAQUE_LIMIT)
    dec.opaque(NFS4_OPAQUE_LIMIT)
    return ()


def _test_stateid(dec: Decoder) -> Names:
    dec.skip(STATEID_SIZE * dec.length(MAX_ARRAY, "stateid count"))
    return ()


def _want_delegation(dec: Decoder) -> Names:
    dec.uint32()
    claim = dec.uint32()
    if claim == 1:
        dec.uint32()
    elif claim not in (4, 6):
        raise _UnsupportedArgsError(f"WANT_DELEGATION claim {claim}")
    return ()


_NONE = _fixed(0)
_ARG_READERS: dict[int, Callable[[Decoder], Names]] = {
    Nfs4Op.ACCESS: _fixed(4),
    Nfs4Op.CLOSE: _fixed(4 + STATEID_SIZE),
    Nfs4Op.COMMIT: _fixed(8 + 4),
    Nfs4Op.CREATE: _create,
    Nfs4Op.DELEGPURGE: _fixed(8),
    Nfs4Op.DELEGRETURN: _fixed(STATEID_SIZE),
    Nfs4Op.GETATTR: _bitmap_only,
    Nfs4Op.GETFH: _NONE,
    Nfs4Op.LINK: _one_component,
    Nfs4Op.LOCK: _lock,
    Nfs4Op.LOCKT: _lockt,
    Nfs4Op.LOCKU: _fixed(4 + 4 + STATEID_SIZE + 8 + 8),
    Nfs4Op.LOOKUP: _one_component,
    Nfs4Op.LOOKUPP: _NONE,
    Nfs4Op.NVERIFY: _fattr_only,
    Nfs4Op.OPEN: _open,
    Nfs4Op.OPENATTR: _fixed(4),
    Nfs4Op.OPEN_CONFIRM: _fixed(STATEID_SIZE + 4),
    Nfs4Op.OPEN_DOWNGRADE: _fixed(STATEID_SIZE + 12),
    Nfs4Op.PUTFH: _putfh,
    Nfs4Op.PUTPUBFH: _NONE,
    Nfs4Op.PUTROOTFS: _NONE,
    Nfs4Op.READ: _fixed(STATEID_SIZE + 8 + 4),
    Nfs4Op.READDIR: _readdir,
    Nfs4Op.READLINK: _NONE,
    Nfs4Op.REMOVE: _one_component,
    Nfs4Op.RENAME: _rename,
    Nfs4Op.RENEW: _fixed(8),
    Nfs4Op.RESTOREFH: _NONE,
    Nfs4Op.SAVEFH: _NONE,
    Nfs4Op.SECINFO: _one_component,
    Nfs4Op.SETATTR: _stateid_fattr,
    Nfs4Op.SETCLIENTID: _setclientid,
    Nfs4Op.SETCLIENTID_CONFIRM: _fixed(8 + NFS4_VERIFIER_SIZE),
    Nfs4Op.VERIFY: _fattr_only,
    Nfs4Op.WRITE: _write,
    Nfs4Op.RELEASE_LOCKOWNER: _lock_owner_only,
    Nfs4Op.BACKCHANNEL_CTL: _backchannel_ctl,
    Nfs4Op.BIND_CONN_TO_SESSION: _fixed(NFS4_SESSIONID_SIZE + 4 + 4),
    Nfs4Op.EXCHANGE_ID: _exchange_id,
    Nfs4Op.CREATE_SESSION: _create_session,
    Nfs4Op.DESTROY_SESSION: _fixed(NFS4_SESSIONID_SIZE),
    Nfs4Op.FREE_STATEID: _fixed(STATEID_SIZE),
    Nfs4Op.GET_DIR_DELEGATION: _get_dir_delegation,
    Nfs4Op.GETDEVICEINFO: _getdeviceinfo,
    Nfs4Op.GETDEVICELIST: _fixed(4 + 4 + 8 + NFS4_VERIFIER_SIZE),
    Nfs4Op.LAYOUTCOMMIT: _layoutcommit,
    Nfs4Op.LAYOUTGET: _fixed(4 + 4 + 4 + 8 + 8 + 8 + STATEID_SIZE + 4),
    Nfs4Op.LAYOUTRETURN: _layoutreturn,
    Nfs4Op.SECINFO_NO_NAME: _fixed(4),
    Nfs4Op.SEQUENCE: _fixed(NFS4_SESSIONID_SIZE + 4 + 4 + 4 + 4),
    Nfs4Op.SET_SSV: _set_ssv,
    Nfs4Op.TEST_STATEID: _test_stateid,
    Nfs4Op.WANT_DELEGATION: _want_delegation,
    Nfs4Op.DESTROY_CLIENTID: _fixed(8),
    Nfs4Op.RECLAIM_COMPLETE: _fixed(4),
    Nfs4Op.ALLOCATE: _fixed(STATEID_SIZE + 8 + 8),
    Nfs4Op.DEALLOCATE: _fixed(STATEID_SIZE + 8 + 8),
    Nfs4Op.READ_PLUS: _fixed(STATEID_SIZE + 8 + 4),
    Nfs4Op.SEEK: _fixed(STATEID_SIZE + 8 + 4),
}


class _Walk:
    """The current and saved positions while walking a COMPOUND."""

    __slots__ = ("current", "getfh", "ops", "reached", "saved")

    def __init__(self) -> None:
        self.current: Position | None = None
        self.saved: Position | None = None
        self.ops: list[Op] = []
        self.reached: dict[Position, None] = {}
        self.getfh: list[tuple[int, Position]] = []

    def reach(self, position: Position | None) -> None:
        if position is not None:
            self.reached[position] = None

    def move(self, position: Position | None) -> None:
        self.current = position
        self.reach(position)

    def step(self, opcode: int, names: Names) -> None:
        before = self.current
        if opcode == Nfs4Op.PUTFH:
            self.ops.append(Op(opcode, before, handle=names[0]))
        else:
            self.ops.append(Op(opcode, before, names))
        self._apply(opcode, names, before)

    def _apply(self, opcode: int, names: Names, here: Position | None) -> None:
        if opcode == Nfs4Op.PUTROOTFS:
            self.move(Position(Base.ROOTFS))
        elif opcode == Nfs4Op.PUTPUBFH:
            self.move(Position(Base.PUBLIC))
        elif opcode == Nfs4Op.PUTFH:
            self.move(Position(Base.HANDLE, names[0]))
        elif here is None:
            self._apply_saved_only(opcode)
        elif opcode == Nfs4Op.LOOKUPP:
            self.move(here.parent())
        elif opcode in (Nfs4Op.LOOKUP, Nfs4Op.CREATE) or (
            opcode == Nfs4Op.OPEN and names
        ):
            self.move(here.child(names[0]))
        elif opcode in (Nfs4Op.SECINFO, Nfs4Op.SECINFO_NO_NAME):
            if names:
                self.reach(here.child(names[0]))
            self.current = None
        elif opcode == Nfs4Op.SAVEFH:
            self.saved = here
        elif opcode == Nfs4Op.GETFH:
            self.getfh.append((len(self.ops) - 1, here))
        else:
            self._apply_two_handle(opcode, names, here)

    def _apply_saved_only(self, opcode: int) -> None:
        if opcode == Nfs4Op.RESTOREFH:
            self.move(self.saved)

    def _apply_two_handle(self, opcode: int, names: Names, here: Position) -> None:
        if opcode == Nfs4Op.RESTOREFH:
            self.move(self.saved)
        elif opcode == Nfs4Op.RENAME and self.saved is not None:
            self.reach(self.saved.child(names[0]))
            self.reach(here.child(names[1]))
        elif opcode in (Nfs4Op.LINK, Nfs4Op.REMOVE):
            self.reach(here.child(names[0]))


def _read_op(dec: Decoder, walk: _Walk) -> bool:
    """Read one operation into ``walk``; return False if parsing must stop."""
    opcode = dec.uint32()
    reader = _ARG_READERS.get(opcode)
    if reader is None:
        walk.ops.append(Op(opcode, walk.current))
        return False
    try:
        names = reader(dec)
    except _UnsupportedArgsError:
        walk.ops.append(Op(opcode, walk.current))
        return False
    walk.step(opcode, names)
    return True


def parse_compound_call(args: bytes) -> Compound:
    """Walk the operations of a COMPOUND call's arguments (see the module doc)."""
    dec = Decoder(args)
    try:
        tag = dec.opaque(MAX_TAG)
        minorversion = dec.uint32()
        op_count = dec.length(MAX_OPS, "COMPOUND operation count")
        walk = _Walk()
        complete = all(_read_op(dec, walk) for _ in range(op_count))
        if complete:
            dec.done("COMPOUND arguments")
    except XDRError as exc:
        raise XDRError(f"nfs4 COMPOUND arguments: {exc}") from exc
    return Compound(
        tag=tag,
        minorversion=minorversion,
        op_count=op_count,
        ops=tuple(walk.ops),
        reached=tuple(walk.reached),
        getfh=tuple(walk.getfh),
        complete=complete,
    )


# -- reply results: only operations whose success result is easy to skip;
# -- the walk stops at any other, so handles after it are not learned.


def _secinfo_result(dec: Decoder) -> None:
    for _ in range(dec.length(MAX_ARRAY, "secinfo4 count")):
        if dec.uint32() == 6:  # RPCSEC_GSS: oid, qop, service
            dec.opaque(NFS4_OPAQUE_LIMIT)
            dec.skip(8)


def _change_info(dec: Decoder) -> None:
    dec.skip(4 + 8 + 8)


def _create_result(dec: Decoder) -> None:
    _change_info(dec)
    _bitmap(dec)


def _opaque_result(dec: Decoder) -> None:
    dec.opaque(MAX_LINKTEXT)


def _rename_result(dec: Decoder) -> None:
    _change_info(dec)
    _change_info(dec)


def _read_result_data(dec: Decoder) -> None:
    dec.bool()  # eof
    dec.opaque(0xFFFFFFFF)


def _nfsace(dec: Decoder) -> None:
    dec.skip(12)  # type, flag, access mask
    dec.string(MAX_COMPONENT)


def _open_delegation(dec: Decoder) -> None:
    kind = dec.uint32()
    if kind in (1, 2):  # OPEN_DELEGATE_READ, OPEN_DELEGATE_WRITE
        dec.skip(STATEID_SIZE + 4)  # stateid, recall
        if kind == 2:
            limit_by = dec.uint32()
            dec.skip(8)  # NFS_LIMIT_SIZE: uint64; NFS_LIMIT_BLOCKS: two uint32
            if limit_by not in (1, 2):
                raise _UnsupportedArgsError(f"space limit {limit_by}")
        _nfsace(dec)
    elif kind == 3:  # OPEN_DELEGATE_NONE_EXT
        if dec.uint32() in (1, 2):  # WND4_CONTENTION, WND4_RESOURCE
            dec.bool()
    elif kind != 0:
        raise _UnsupportedArgsError(f"delegation type {kind}")


def _open_result(dec: Decoder) -> None:
    dec.skip(STATEID_SIZE)
    _change_info(dec)
    dec.uint32()  # rflags
    _bitmap(dec)
    _open_delegation(dec)


def _readdir_result(dec: Decoder) -> None:
    dec.skip(NFS4_VERIFIER_SIZE)
    while dec.bool():
        dec.uint64()
        _component(dec)
        _fattr(dec)
    dec.bool()  # eof


def _exchange_id_result(dec: Decoder) -> None:
    dec.skip(8 + 4 + 4)  # clientid, sequenceid, flags
    how = dec.uint32()
    if how == 1:  # SP4_MACH_CRED
        _state_protect_ops(dec)
    elif how == 2:  # SP4_SSV: ssv_prot_info4
        _state_protect_ops(dec)
        dec.skip(4 * 4)  # hash_alg, encr_alg, ssv_len, window
        for _ in range(dec.length(MAX_ARRAY, "ssv handle count")):
            dec.opaque(NFS4_OPAQUE_LIMIT)
    elif how != 0:
        raise _UnsupportedArgsError(f"EXCHANGE_ID state protection {how}")
    dec.uint64()  # server_owner4.so_minor_id
    dec.opaque(NFS4_OPAQUE_LIMIT)  # so_major_id
    dec.opaque(NFS4_OPAQUE_LIMIT)  # server scope
    if dec.length(1, "server_impl_id count"):
        dec.string(NFS4_OPAQUE_LIMIT)
        dec.string(NFS4_OPAQUE_LIMIT)
        _nfstime(dec)


def _create_session_result(dec: Decoder) -> None:
    dec.skip(NFS4_SESSIONID_SIZE + 4 + 4)
    _channel_attrs(dec)
    _channel_attrs(dec)


def _test_stateid_result(dec: Decoder) -> None:
    dec.uint32_array(MAX_ARRAY)


def _skip_result(size: int) -> Callable[[Decoder], None]:
    return lambda dec: dec.skip(size)


_RESULT_SKIPPERS: dict[int, Callable[[Decoder], None]] = {
    Nfs4Op.ACCESS: _skip_result(8),
    Nfs4Op.CLOSE: _skip_result(STATEID_SIZE),
    Nfs4Op.COMMIT: _skip_result(NFS4_VERIFIER_SIZE),
    Nfs4Op.CREATE: _create_result,
    Nfs4Op.GETATTR: _fattr,
    Nfs4Op.LINK: _change_info,
    Nfs4Op.LOOKUP: _skip_result(0),
    Nfs4Op.LOOKUPP: _skip_result(0),
    Nfs4Op.PUTFH: _skip_result(0),
    Nfs4Op.PUTPUBFH: _skip_result(0),
    Nfs4Op.PUTROOTFS: _skip_result(0),
    Nfs4Op.READLINK: _opaque_result,
    Nfs4Op.REMOVE: _change_info,
    Nfs4Op.RENAME: _rename_result,
    Nfs4Op.RENEW: _skip_result(0),
    Nfs4Op.RESTOREFH: _skip_result(0),
    Nfs4Op.SAVEFH: _skip_result(0),
    Nfs4Op.SECINFO: _secinfo_result,
    Nfs4Op.SECINFO_NO_NAME: _secinfo_result,
    Nfs4Op.SEQUENCE: _skip_result(NFS4_SESSIONID_SIZE + 5 * 4),
    Nfs4Op.SETATTR: _bitmap,
    Nfs4Op.SETCLIENTID: _skip_result(8 + NFS4_VERIFIER_SIZE),
    Nfs4Op.SETCLIENTID_CONFIRM: _skip_result(0),
    Nfs4Op.OPEN: _open_result,
    Nfs4Op.OPEN_CONFIRM: _skip_result(STATEID_SIZE),
    Nfs4Op.OPEN_DOWNGRADE: _skip_result(STATEID_SIZE),
    Nfs4Op.READ: _read_result_data,
    Nfs4Op.READDIR: _readdir_result,
    Nfs4Op.WRITE: _skip_result(4 + 4 + NFS4_VERIFIER_SIZE),
    Nfs4Op.LOCK: _skip_result(STATEID_SIZE),
    Nfs4Op.LOCKT: _skip_result(0),
    Nfs4Op.LOCKU: _skip_result(STATEID_SIZE),
    Nfs4Op.DELEGRETURN: _skip_result(0),
    Nfs4Op.RELEASE_LOCKOWNER: _skip_result(0),
    Nfs4Op.RECLAIM_COMPLETE: _skip_result(0),
    Nfs4Op.DESTROY_SESSION: _skip_result(0),
    Nfs4Op.DELEGPURGE: _skip_result(0),
    Nfs4Op.OPENATTR: _skip_result(0),
    Nfs4Op.EXCHANGE_ID: _exchange_id_result,
    Nfs4Op.CREATE_SESSION: _create_session_result,
    Nfs4Op.BIND_CONN_TO_SESSION: _skip_result(NFS4_SESSIONID_SIZE + 4 + 4),
    Nfs4Op.BACKCHANNEL_CTL: _skip_result(0),
    Nfs4Op.FREE_STATEID: _skip_result(0),
    Nfs4Op.TEST_STATEID: _test_stateid_result,
    Nfs4Op.DESTROY_CLIENTID: _skip_result(0),
    Nfs4Op.SET_SSV: _opaque_result,
    Nfs4Op.ALLOCATE: _skip_result(0),
    Nfs4Op.DEALLOCATE: _skip_result(0),
    Nfs4Op.SEEK: _skip_result(4 + 8),
    Nfs4Op.VERIFY: _skip_result(0),
    Nfs4Op.NVERIFY: _skip_result(0),
}


class _Next(enum.Enum):
    CONTINUE = 1
    FAILED = 2
    UNKNOWN = 3


def _read_result(
    dec: Decoder,
    index: int,
    results: list[tuple[int, int]],
    handles: list[tuple[int, bytes]],
) -> _Next:
    opcode, status = dec.uint32(), dec.uint32()
    results.append((opcode, status))
    if status != NFS4_OK:
        return _Next.FAILED
    if opcode == Nfs4Op.GETFH:
        handles.append((index, dec.opaque(NFS4_FHSIZE)))
        return _Next.CONTINUE
    skipper = _RESULT_SKIPPERS.get(opcode)
    if skipper is None:
        return _Next.UNKNOWN
    try:
        skipper(dec)
    except _UnsupportedArgsError:
        return _Next.UNKNOWN
    return _Next.CONTINUE


def parse_compound_reply(results: bytes) -> CompoundReply:
    """Read a COMPOUND reply's per-op statuses and the handles GETFH returned.

    Reading stops at the first failed operation, where the server stops
    too. It also stops at the first operation whose result this module
    does not decode, and then ``complete`` is False.
    """
    dec = Decoder(results)
    results_read: list[tuple[int, int]] = []
    handles: list[tuple[int, bytes]] = []
    try:
        status = dec.uint32()
        tag = dec.opaque(MAX_TAG)
        count = dec.length(MAX_OPS, "COMPOUND result count")
        outcome = _Next.CONTINUE
        for index in range(count):
            outcome = _read_result(dec, index, results_read, handles)
            if outcome is not _Next.CONTINUE:
                break
    except XDRError as exc:
        raise XDRError(f"nfs4 COMPOUND reply: {exc}") from exc
    complete = outcome is not _Next.UNKNOWN
    return CompoundReply(status, tag, tuple(results_read), tuple(handles), complete)


def encode_compound_error(tag: bytes, opcode: int, status: int) -> bytes:
    """Encode COMPOUND4res failing at its first operation with ``status``.

    The error result of every operation is its status alone, except
    SETATTR, which also carries the (empty) bitmap of attributes set.
    """
    if status == NFS4_OK:
        raise RPCError("nfs4 error reply: NFS4_OK is not an error")
    enc = Encoder()
    enc.uint32(status)
    enc.opaque(tag, MAX_TAG)
    enc.uint32(1)
    enc.uint32(opcode)
    enc.uint32(status)
    if opcode == Nfs4Op.SETATTR:
        enc.uint32_array(())
    return enc.getvalue()


def build_compound_error_reply(
    call: Call, compound: Compound, status: int = NFS4ERR_ACCESS
) -> bytes:
    """Encode a whole RPC reply rejecting ``compound`` at its first operation.

    A COMPOUND with no operations gets an empty result list.
    """
    if not compound.ops:
        enc = Encoder()
        enc.uint32(status)
        enc.opaque(compound.tag, MAX_TAG)
        enc.uint32(0)
        return build_success(call, enc.getvalue())
    first = compound.ops[0].opcode
    return build_success(call, encode_compound_error(compound.tag, first, status))
