"""ONC RPC version 2 call and reply messages (RFC 5531).

Parsing stops at the procedure arguments or results: ``Call.args_offset``
and ``AcceptedReply.results_offset`` tell the program-specific parsers
(mount, nfs3, nfs4, portmap) where to start. The builders make the replies
a proxy sends for a call it refuses without forwarding: AUTH_ERROR,
PROG_UNAVAIL, PROC_UNAVAIL, GARBAGE_ARGS, RPC_MISMATCH, or SUCCESS with
program-specific results.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TypeVar

from spoolgate.errors import RPCError, XDRError
from spoolgate.rpc.xdr import Decoder, Encoder

__all__ = [
    "AUTH_NONE",
    "AcceptStat",
    "AcceptedReply",
    "AuthFlavor",
    "AuthStat",
    "AuthSys",
    "Call",
    "DeniedReply",
    "MsgType",
    "OpaqueAuth",
    "RejectStat",
    "Reply",
    "ReplyStat",
    "build_accepted_reply",
    "build_auth_error",
    "build_garbage_args",
    "build_proc_unavail",
    "build_prog_unavail",
    "build_rpc_mismatch",
    "build_success",
    "decode_auth_sys",
    "encode_auth_sys",
    "encode_call",
    "parse_call",
    "parse_reply",
    "peek_header",
]

RPC_VERSION = 2
# RFC 5531: opaque_auth bodies are at most 400 bytes.
MAX_AUTH_BYTES = 400
# RFC 5531 appendix A: machinename<255>, gids<16>.
MAX_MACHINE_NAME = 255
MAX_AUTH_SYS_GIDS = 16


E = TypeVar("E", bound=enum.IntEnum)


class MsgType(enum.IntEnum):
    CALL = 0
    REPLY = 1


class ReplyStat(enum.IntEnum):
    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class AcceptStat(enum.IntEnum):
    SUCCESS = 0
    PROG_UNAVAIL = 1
    PROG_MISMATCH = 2
    PROC_UNAVAIL = 3
    GARBAGE_ARGS = 4
    SYSTEM_ERR = 5


class RejectStat(enum.IntEnum):
    RPC_MISMATCH = 0
    AUTH_ERROR = 1


class AuthStat(enum.IntEnum):
    """auth_stat values of RFC 5531, including the RPCSEC_GSS ones of RFC 2203."""

    AUTH_OK = 0
    AUTH_BADCRED = 1
    AUTH_REJECTEDCRED = 2
    AUTH_BADVERF = 3
    AUTH_REJECTEDVERF = 4
    AUTH_TOOWEAK = 5
    AUTH_INVALIDRESP = 6
    AUTH_FAILED = 7
    AUTH_KERB_GENERIC = 8
    AUTH_TIMEEXPIRE = 9
    AUTH_TKT_FILE = 10
    AUTH_DECODE = 11
    AUTH_NET_ADDR = 12
    RPCSEC_GSS_CREDPROBLEM = 13
    RPCSEC_GSS_CTXPROBLEM = 14


class AuthFlavor(enum.IntEnum):
    """Well-known authentication flavours; the wire value is any uint32."""

    AUTH_NONE = 0
    AUTH_SYS = 1
    AUTH_SHORT = 2
    AUTH_DH = 3
    RPCSEC_GSS = 6


@dataclass(frozen=True, slots=True)
class OpaqueAuth:
    """A credential or verifier: a flavour number and its opaque body."""

    flavor: int
    body: bytes = b""


AUTH_NONE = OpaqueAuth(AuthFlavor.AUTH_NONE, b"")


@dataclass(frozen=True, slots=True)
class AuthSys:
    """An AUTH_SYS credential body (RFC 5531 appendix A)."""

    stamp: int
    machine_name: bytes
    uid: int
    gid: int
    gids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Call:
    """An RPC call header; the arguments start at ``args_offset`` in the record."""

    xid: int
    rpcvers: int
    prog: int
    vers: int
    proc: int
    cred: OpaqueAuth
    verf: OpaqueAuth
    args_offset: int

    def auth_sys(self) -> AuthSys | None:
        """Return the decoded AUTH_SYS credential, or None for other flavours."""
        if self.cred.flavor != AuthFlavor.AUTH_SYS:
            return None
        return decode_auth_sys(self.cred.body)


@dataclass(frozen=True, slots=True)
class AcceptedReply:
    """MSG_ACCEPTED; for SUCCESS the results start at ``results_offset``."""

    xid: int
    verf: OpaqueAuth
    accept_stat: AcceptStat
    results_offset: int
    mismatch: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class DeniedReply:
    """MSG_DENIED: an RPC version mismatch or an authentication error."""

    xid: int
    reject_stat: RejectStat
    auth_stat: AuthStat | None = None
    mismatch: tuple[int, int] | None = None


Reply = AcceptedReply | DeniedReply


def peek_header(payload: bytes) -> tuple[int, MsgType]:
    """Return the xid and message type without parsing further."""
    if len(payload) < 8:
        raise RPCError(f"rpc message: {len(payload)} bytes, shorter than a header")
    xid, msg_type = struct.unpack_from(">II", payload)
    return xid, _enum(MsgType, msg_type, "msg_type")


def _enum(kind: type[E], value: int, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise RPCError(f"rpc message: unknown {what} {value}") from None


def _read_auth(dec: Decoder) -> OpaqueAuth:
    flavor = dec.uint32()
    return OpaqueAuth(flavor, dec.opaque(MAX_AUTH_BYTES))


def parse_call(payload: bytes) -> Call:
    """Parse an RPC call header; raise RPCError if ``payload`` is not one.

    ``rpcvers`` is returned as sent, so the caller can reply RPC_MISMATCH
    to anything other than 2 (see :func:`build_rpc_mismatch`).
    """
    try:
        dec = Decoder(payload)
        xid = dec.uint32()
        msg_type = dec.uint32()
        if msg_type != MsgType.CALL:
            raise RPCError(f"rpc call xid={xid:#010x}: msg_type {msg_type} is not CALL")
        rpcvers, prog, vers, proc = (
            dec.uint32(),
            dec.uint32(),
            dec.uint32(),
            dec.uint32(),
        )
        cred = _read_auth(dec)
        verf = _read_auth(dec)
    except XDRError as exc:
        raise RPCError(f"rpc call: truncated or malformed header: {exc}") from exc
    return Call(xid, rpcvers, prog, vers, proc, cred, verf, dec.offset)


def parse_reply(payload: bytes) -> Reply:
    """Parse an RPC reply header; raise RPCError if ``payload`` is not one."""
    try:
        dec = Decoder(payload)
        xid = dec.uint32()
        msg_type = dec.uint32()
        if msg_type != MsgType.REPLY:
            raise RPCError(
                f"rpc reply xid={xid:#010x}: msg_type {msg_type} is not REPLY"
            )
        stat = _enum(ReplyStat, dec.uint32(), "reply_stat")
        if stat is ReplyStat.MSG_ACCEPTED:
            return _parse_accepted(xid, dec)
        return _parse_denied(xid, dec)
    except XDRError as exc:
        raise RPCError(f"rpc reply: truncated or malformed header: {exc}") from exc


def _parse_accepted(xid: int, dec: Decoder) -> AcceptedReply:
    verf = _read_auth(dec)
    accept_stat = _enum(AcceptStat, dec.uint32(), "accept_stat")
    mismatch = None
    if accept_stat is AcceptStat.PROG_MISMATCH:
        mismatch = (dec.uint32(), dec.uint32())
    return AcceptedReply(xid, verf, accept_stat, dec.offset, mismatch)


def _parse_denied(xid: int, dec: Decoder) -> DeniedReply:
    reject_stat = _enum(RejectStat, dec.uint32(), "reject_stat")
    if reject_stat is RejectStat.RPC_MISMATCH:
        return DeniedReply(xid, reject_stat, mismatch=(dec.uint32(), dec.uint32()))
    auth_stat = _enum(AuthStat, dec.uint32(), "auth_stat")
    return DeniedReply(xid, reject_stat, auth_stat=auth_stat)


def decode_auth_sys(body: bytes) -> AuthSys:
    """Decode an AUTH_SYS credential body; raise RPCError if malformed."""
    try:
        dec = Decoder(body)
        stamp = dec.uint32()
        machine_name = dec.string(MAX_MACHINE_NAME)
        uid, gid = dec.uint32(), dec.uint32()
        gids = dec.uint32_array(MAX_AUTH_SYS_GIDS)
        dec.done("auth_sys credential")
    except XDRError as exc:
        raise RPCError(f"auth_sys credential: malformed: {exc}") from exc
    return AuthSys(stamp, machine_name, uid, gid, gids)


def encode_auth_sys(cred: AuthSys) -> OpaqueAuth:
    enc = Encoder()
    enc.uint32(cred.stamp)
    enc.string(cred.machine_name, MAX_MACHINE_NAME)
    enc.uint32(cred.uid)
    enc.uint32(cred.gid)
    if len(cred.gids) > MAX_AUTH_SYS_GIDS:
        raise XDRError(f"encode auth_sys: {len(cred.gids)} gids, at most 16 allowed")
    enc.uint32_array(cred.gids)
    return OpaqueAuth(AuthFlavor.AUTH_SYS, enc.getvalue())


def _write_auth(enc: Encoder, auth: OpaqueAuth) -> None:
    enc.uint32(auth.flavor)
    enc.opaque(auth.body, MAX_AUTH_BYTES)


def encode_call(
    xid: int,
    prog: int,
    vers: int,
    proc: int,
    args: bytes = b"",
    cred: OpaqueAuth = AUTH_NONE,
    verf: OpaqueAuth = AUTH_NONE,
) -> bytes:
    """Encode an RPC version 2 call message (no record marker)."""
    enc = Encoder()
    for value in (xid, MsgType.CALL, RPC_VERSION, prog, vers, proc):
        enc.uint32(value)
    _write_auth(enc, cred)
    _write_auth(enc, verf)
    enc.raw(args)
    return enc.getvalue()


def build_accepted_reply(
    xid: int,
    accept_stat: AcceptStat,
    results: bytes = b"",
    mismatch: tuple[int, int] | None = None,
    verf: OpaqueAuth = AUTH_NONE,
) -> bytes:
    """Encode a MSG_ACCEPTED reply; ``mismatch`` is required for PROG_MISMATCH."""
    enc = Encoder()
    enc.uint32(xid)
    enc.uint32(MsgType.REPLY)
    enc.uint32(ReplyStat.MSG_ACCEPTED)
    _write_auth(enc, verf)
    enc.uint32(accept_stat)
    if accept_stat is AcceptStat.PROG_MISMATCH:
        if mismatch is None:
            raise RPCError("build reply: PROG_MISMATCH needs the supported range")
        enc.uint32(mismatch[0])
        enc.uint32(mismatch[1])
    enc.raw(results)
    return enc.getvalue()


def build_success(call: Call, results: bytes) -> bytes:
    """Encode a SUCCESS reply to ``call`` carrying program-specific results."""
    return build_accepted_reply(call.xid, AcceptStat.SUCCESS, results)


def build_prog_unavail(call: Call) -> bytes:
    return build_accepted_reply(call.xid, AcceptStat.PROG_UNAVAIL)


def build_proc_unavail(call: Call) -> bytes:
    return build_accepted_reply(call.xid, AcceptStat.PROC_UNAVAIL)


def build_garbage_args(call: Call) -> bytes:
    return build_accepted_reply(call.xid, AcceptStat.GARBAGE_ARGS)


def build_auth_error(call: Call, auth_stat: AuthStat) -> bytes:
    """Encode MSG_DENIED/AUTH_ERROR, e.g. AUTH_BADCRED or AUTH_TOOWEAK."""
    if auth_stat is AuthStat.AUTH_OK:
        raise RPCError("build reply: AUTH_ERROR with AUTH_OK is not a rejection")
    enc = Encoder()
    for value in (call.xid, MsgType.REPLY, ReplyStat.MSG_DENIED, RejectStat.AUTH_ERROR):
        enc.uint32(value)
    enc.uint32(auth_stat)
    return enc.getvalue()


def build_rpc_mismatch(call: Call) -> bytes:
    """Encode MSG_DENIED/RPC_MISMATCH for a call whose rpcvers is not 2."""
    enc = Encoder()
    for value in (
        call.xid,
        MsgType.REPLY,
        ReplyStat.MSG_DENIED,
        RejectStat.RPC_MISMATCH,
    ):
        enc.uint32(value)
    enc.uint32(RPC_VERSION)
    enc.uint32(RPC_VERSION)
    return enc.getvalue()
