"""Tests for spoolgate.tunnel.rpcpolicy: every rule the bastion's proxy applies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import LoginFailedError, RPCError
from spoolgate.rpc import message, mount, nfs3, nfs4, portmap
from spoolgate.rpc.message import (
    AcceptedReply,
    AcceptStat,
    AuthFlavor,
    AuthStat,
    AuthSys,
    DeniedReply,
    OpaqueAuth,
    encode_auth_sys,
    encode_call,
    parse_call,
    parse_reply,
)
from spoolgate.rpc.xdr import Encoder
from spoolgate.tunnel.rpcpolicy import (
    MAX_PINNED_HANDLES,
    Answer,
    ClientRule,
    Forward,
    HandleTable,
    NFS4Mode,
    PolicySettings,
    Refusal,
    RPCPolicy,
    UserIdentity,
    address_key,
    split_path,
)

ANN = UserIdentity("ann", 1000, frozenset({1000, 100}))
BOB = UserIdentity("bob", 1001, frozenset({1001}))
ROOT = UserIdentity("root", 0, frozenset({0}))
ROOT_HANDLE = bytes.fromhex("43000001124411e90b4c829e6f8f0129c120004690f85e00")
FILE_HANDLE = bytes.fromhex("43000001124411e90b4c829e6f8f0191c1200048563e2400")
OTHER_HANDLE = bytes.fromhex("43000002124411e90b4c829e6f8f0191c1200048563e2400")
TTL = 100.0


def settings(**changes: object) -> PolicySettings:
    clients = (
        ClientRule(
            "alice",
            (split_path(b"/export"),),
            users=frozenset({"ann", "bob", "root"}),
        ),
        ClientRule("eve", (split_path(b"/other"),)),
        ClientRule(
            "rooty",
            (split_path(b"/export"),),
            allow_root=True,
            flavors=frozenset({AuthFlavor.AUTH_SYS, AuthFlavor.AUTH_NONE}),
        ),
    )
    base = PolicySettings(
        clients=clients,
        user_exports={"bob": (split_path(b"/export/bob"),)},
    )
    values = {
        "clients": base.clients,
        "user_exports": base.user_exports,
        "nfs4": base.nfs4,
        "handle_table_size": base.handle_table_size,
    }
    values.update(changes)
    return PolicySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def policy() -> RPCPolicy:
    p = RPCPolicy(settings())
    p.bind("alice", ANN, 0.0, TTL)
    return p


def sys_cred(
    uid: int, gid: int | None = None, gids: tuple[int, ...] = ()
) -> OpaqueAuth:
    return encode_auth_sys(
        AuthSys(1, b"client", uid, uid if gid is None else gid, gids)
    )


XID = 0x1234


def rpc_call(
    prog: int,
    vers: int,
    proc: int,
    args: bytes = b"",
    cred: OpaqueAuth | None = None,
    uid: int = 1000,
) -> bytes:
    return encode_call(XID, prog, vers, proc, args, cred or sys_cred(uid))


def mnt_call(path: bytes, uid: int = 1000) -> bytes:
    return rpc_call(100005, 3, mount.MountProc.MNT, mount.encode_dirpath(path), uid=uid)


def handle_args(handle: bytes, name: bytes | None = None) -> bytes:
    enc = Encoder()
    enc.opaque(handle, 64)
    if name is not None:
        enc.string(name, 255)
    return enc.getvalue()


def nfs3_call(
    proc: int, handle: bytes, name: bytes | None = None, uid: int = 1000
) -> bytes:
    return rpc_call(100003, 3, proc, handle_args(handle, name), uid=uid)


def success(results: bytes) -> bytes:
    return message.build_accepted_reply(XID, AcceptStat.SUCCESS, results)


def mnt_reply(handle: bytes) -> bytes:
    return success(
        mount.encode_mnt_reply(mount.MntResult(mount.MountStat.MNT3_OK, handle, (1,)))
    )


def lookup_reply(handle: bytes) -> bytes:
    enc = Encoder()
    enc.uint32(0)
    enc.opaque(handle, 64)
    enc.bool(False)
    enc.bool(False)
    return success(enc.getvalue())


def readdirplus_reply(entries: list[tuple[bytes, bytes]]) -> bytes:
    enc = Encoder()
    enc.uint32(0)
    enc.bool(False)  # dir attributes
    enc.fixed_opaque(b"\0" * 8)
    for cookie, (name, handle) in enumerate(entries, start=1):
        enc.bool(True)
        enc.uint64(cookie)
        enc.string(name, 255)
        enc.uint64(cookie)
        enc.bool(False)
        enc.bool(True)
        enc.opaque(handle, 64)
    enc.bool(False)
    enc.bool(True)
    return success(enc.getvalue())


def decide(policy: RPCPolicy, payload: bytes, client: str = "alice", now: float = 1.0):  # type: ignore[no-untyped-def]
    return policy.check_call(client, payload, now)


def forward_and_reply(
    policy: RPCPolicy, call: bytes, reply: bytes, client: str = "alice"
) -> bytes:
    decision = decide(policy, call, client)
    assert isinstance(decision, Forward), decision
    return policy.check_reply(client, decision.pending, reply)


def mount_export(policy: RPCPolicy, path: bytes = b"/export", uid: int = 1000) -> None:
    forward_and_reply(policy, mnt_call(path, uid), mnt_reply(ROOT_HANDLE))


def auth_stat(answer: Answer) -> AuthStat | None:
    reply = parse_reply(answer.reply)
    assert isinstance(reply, DeniedReply)
    return reply.auth_stat


def refused(decision: object, reason: Refusal) -> Answer:
    assert isinstance(decision, Answer), decision
    assert decision.refusal is reason, decision
    assert decision.xid == XID
    return decision


# -- MOUNT --------------------------------------------------------------------


def test_mnt_allowed_export_forwarded(policy: RPCPolicy) -> None:
    decision = decide(policy, mnt_call(b"/export"))
    assert isinstance(decision, Forward)
    assert decision.pending.root == (b"export",)


def test_mnt_subdirectory_of_allowed_export_forwarded(policy: RPCPolicy) -> None:
    assert isinstance(decide(policy, mnt_call(b"/export/sub/")), Forward)


@pytest.mark.parametrize("path", [b"/other", b"/exportfoo", b"/", b"/exp"])
def test_mnt_forbidden_export_gets_mnt3err_acces(
    policy: RPCPolicy, path: bytes
) -> None:
    call = mnt_call(path)
    answer = refused(decide(policy, call), Refusal.EXPORT)
    assert answer.reply == mount.build_mnt_error_reply(parse_call(call))
    assert policy.refused[Refusal.EXPORT] == 1


@pytest.mark.parametrize("path", [b"/export/../other", b"/export/./x", b"/.."])
def test_mnt_dot_components_refused(policy: RPCPolicy, path: bytes) -> None:
    refused(decide(policy, mnt_call(path)), Refusal.NAME)


def test_mnt_reply_teaches_pinned_handle(policy: RPCPolicy) -> None:
    reply = mnt_reply(ROOT_HANDLE)
    out = forward_and_reply(policy, mnt_call(b"/export"), reply)
    assert out == reply
    assert isinstance(decide(policy, nfs3_call(1, ROOT_HANDLE)), Forward)
    assert policy.snapshot(1.0)["clients"]["alice"]["handles_pinned"] == 1  # type: ignore[index]


def test_mnt_failed_reply_teaches_nothing(policy: RPCPolicy) -> None:
    reply = success(
        mount.encode_mnt_reply(mount.MntResult(mount.MountStat.MNT3ERR_ACCES))
    )
    forward_and_reply(policy, mnt_call(b"/export"), reply)
    refused(decide(policy, nfs3_call(1, ROOT_HANDLE)), Refusal.HANDLE)


def test_export_reply_lists_only_allowed_exports(policy: RPCPolicy) -> None:
    entries = [
        mount.ExportEntry(b"/export", (b"10.0.0.0/8",)),
        mount.ExportEntry(b"/other"),
        mount.ExportEntry(b"/export/deep"),
    ]
    reply = success(mount.encode_export_reply(entries))
    out = forward_and_reply(policy, rpc_call(100005, 3, mount.MountProc.EXPORT), reply)
    parsed = parse_reply(out)
    assert isinstance(parsed, AcceptedReply)
    listed = mount.parse_export_reply(out[parsed.results_offset :])
    assert [e.directory for e in listed] == [b"/export", b"/export/deep"]


def test_export_reply_for_user_list_uses_user_exports(policy: RPCPolicy) -> None:
    policy.bind("alice", BOB, 0.0, TTL)
    entries = [mount.ExportEntry(b"/export"), mount.ExportEntry(b"/export/bob")]
    reply = success(mount.encode_export_reply(entries))
    call = rpc_call(100005, 3, mount.MountProc.EXPORT, uid=BOB.uid)
    out = forward_and_reply(policy, call, reply)
    parsed = parse_reply(out)
    assert isinstance(parsed, AcceptedReply)
    listed = mount.parse_export_reply(out[parsed.results_offset :])
    assert [e.directory for e in listed] == [b"/export/bob"]


def test_export_reply_undecodable_becomes_empty(policy: RPCPolicy) -> None:
    reply = success(b"\0\0\0\1\0\0\0\xff")
    out = forward_and_reply(policy, rpc_call(100005, 3, mount.MountProc.EXPORT), reply)
    parsed = parse_reply(out)
    assert isinstance(parsed, AcceptedReply)
    assert mount.parse_export_reply(out[parsed.results_offset :]) == ()
    assert policy.replies_unparsed == 1


def test_export_without_login_forwarded(policy: RPCPolicy) -> None:
    call = rpc_call(100005, 3, mount.MountProc.EXPORT, uid=4242)
    assert isinstance(decide(policy, call), Forward)


@pytest.mark.parametrize(
    ("proc", "results"),
    [(mount.MountProc.DUMP, b"\0\0\0\0"), (mount.MountProc.UMNT, b"")],
)
def test_dump_and_umnt_answered_locally(
    policy: RPCPolicy, proc: int, results: bytes
) -> None:
    args = mount.encode_dirpath(b"/export") if proc == mount.MountProc.UMNT else b""
    decision = decide(policy, rpc_call(100005, 3, proc, args))
    assert isinstance(decision, Answer)
    assert decision.refusal is None
    assert decision.reply == success(results)
    assert sum(policy.refused.values()) == 0


def test_mount_version_1_gets_prog_mismatch(policy: RPCPolicy) -> None:
    answer = refused(decide(policy, rpc_call(100005, 1, 1)), Refusal.VERSION)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    assert reply.accept_stat is AcceptStat.PROG_MISMATCH
    assert reply.mismatch == (3, 3)


def test_mount_unknown_procedure_unavailable(policy: RPCPolicy) -> None:
    refused(decide(policy, rpc_call(100005, 3, 9)), Refusal.PROCEDURE)


# -- credentials and bindings ---------------------------------------------------


def test_unbound_uid_gets_auth_badcred(policy: RPCPolicy) -> None:
    answer = refused(
        decide(policy, mnt_call(b"/export", uid=4242)), Refusal.UID_NOT_BOUND
    )
    assert auth_stat(answer) is AuthStat.AUTH_BADCRED


def test_uid_0_refused_even_when_bound(policy: RPCPolicy) -> None:
    policy.bind("alice", ROOT, 0.0, TTL)
    answer = refused(decide(policy, mnt_call(b"/export", uid=0)), Refusal.ROOT)
    assert auth_stat(answer) is AuthStat.AUTH_TOOWEAK


def test_uid_0_allowed_for_allow_root_client_when_bound() -> None:
    policy = RPCPolicy(settings())
    refused(decide(policy, mnt_call(b"/export", uid=0), "rooty"), Refusal.UID_NOT_BOUND)
    policy.bind("rooty", ROOT, 0.0, TTL)
    assert isinstance(decide(policy, mnt_call(b"/export", uid=0), "rooty"), Forward)


def test_gids_outside_user_groups_refused(policy: RPCPolicy) -> None:
    call = rpc_call(100005, 3, 1, mount.encode_dirpath(b"/export"), sys_cred(1000, 0))
    answer = refused(decide(policy, call), Refusal.GIDS_NOT_BOUND)
    assert auth_stat(answer) is AuthStat.AUTH_BADCRED


def test_supplementary_gids_of_user_accepted(policy: RPCPolicy) -> None:
    cred = sys_cred(1000, 100, (1000, 100))
    call = rpc_call(100005, 3, 1, mount.encode_dirpath(b"/export"), cred)
    assert isinstance(decide(policy, call), Forward)


def test_binding_expires_at_ttl(policy: RPCPolicy) -> None:
    assert isinstance(decide(policy, mnt_call(b"/export"), now=TTL - 0.1), Forward)
    refused(decide(policy, mnt_call(b"/export"), now=TTL), Refusal.UID_NOT_BOUND)
    assert policy.bindings("alice", TTL) == ()


def test_unbind_refuses_later_calls(policy: RPCPolicy) -> None:
    assert policy.unbind("alice", "ann")
    assert not policy.unbind("alice", "ann")
    refused(decide(policy, mnt_call(b"/export")), Refusal.UID_NOT_BOUND)


def test_binding_is_per_client(policy: RPCPolicy) -> None:
    refused(decide(policy, mnt_call(b"/other"), "eve"), Refusal.UID_NOT_BOUND)


def test_rebind_extends_expiry(policy: RPCPolicy) -> None:
    policy.bind("alice", ANN, 50.0, TTL)
    assert isinstance(decide(policy, mnt_call(b"/export"), now=TTL + 10), Forward)


def test_bind_user_not_listed_for_client_raises(policy: RPCPolicy) -> None:
    with pytest.raises(LoginFailedError, match="may not log in"):
        policy.bind("alice", UserIdentity("mallory", 2000, frozenset()), 0.0, TTL)


def test_bind_unknown_client_raises(policy: RPCPolicy) -> None:
    with pytest.raises(LoginFailedError, match="no policy entry"):
        policy.bind("nobody", ANN, 0.0, TTL)


def test_client_without_user_list_accepts_any_user() -> None:
    policy = RPCPolicy(settings())
    binding = policy.bind("eve", ANN, 5.0, TTL)
    assert binding.expires_at == 5.0 + TTL


def test_auth_none_refused_as_too_weak(policy: RPCPolicy) -> None:
    call = rpc_call(100005, 3, 1, mount.encode_dirpath(b"/export"), message.AUTH_NONE)
    answer = refused(decide(policy, call), Refusal.FLAVOR)
    assert auth_stat(answer) is AuthStat.AUTH_TOOWEAK


def test_auth_none_forwarded_when_flavour_allowed() -> None:
    policy = RPCPolicy(settings())
    call = rpc_call(100005, 3, 1, mount.encode_dirpath(b"/export"), message.AUTH_NONE)
    assert isinstance(decide(policy, call, "rooty"), Forward)


def test_malformed_auth_sys_body_refused(policy: RPCPolicy) -> None:
    call = rpc_call(100005, 3, 1, b"", OpaqueAuth(AuthFlavor.AUTH_SYS, b"\0\0"))
    answer = refused(decide(policy, call), Refusal.GARBAGE)
    assert auth_stat(answer) is AuthStat.AUTH_BADCRED


def test_unknown_client_refused(policy: RPCPolicy) -> None:
    answer = refused(
        decide(policy, mnt_call(b"/export"), "stranger"), Refusal.UNKNOWN_CLIENT
    )
    assert auth_stat(answer) is AuthStat.AUTH_TOOWEAK


# -- NFSv3 handles ----------------------------------------------------------------


def test_nfs3_unknown_handle_gets_stale(policy: RPCPolicy) -> None:
    call = nfs3_call(nfs3.Nfs3Proc.GETATTR, OTHER_HANDLE)
    answer = refused(decide(policy, call), Refusal.HANDLE)
    assert answer.reply == nfs3.build_error_reply(parse_call(call))


def test_nfs3_unknown_handle_detail_names_whole_handle(policy: RPCPolicy) -> None:
    # Same first 8 bytes (one export), different tails: the details must differ.
    twin = OTHER_HANDLE[:-1] + bytes([OTHER_HANDLE[-1] ^ 1])
    first = refused(
        decide(policy, nfs3_call(nfs3.Nfs3Proc.GETATTR, OTHER_HANDLE)), Refusal.HANDLE
    )
    second = refused(
        decide(policy, nfs3_call(nfs3.Nfs3Proc.GETATTR, twin)), Refusal.HANDLE
    )
    assert first.detail != second.detail
    assert f"/{len(OTHER_HANDLE)}B" in first.detail
    assert OTHER_HANDLE[:8].hex() not in first.detail


@pytest.mark.parametrize(
    "proc", [nfs3.Nfs3Proc.GETATTR, nfs3.Nfs3Proc.READDIR, nfs3.Nfs3Proc.READDIRPLUS]
)
def test_nfs3_handle_of_other_client_refused(policy: RPCPolicy, proc: int) -> None:
    mount_export(policy)
    policy.bind("eve", ANN, 0.0, TTL)
    refused(decide(policy, nfs3_call(proc, ROOT_HANDLE), "eve"), Refusal.HANDLE)


def test_nfs3_lookup_reply_teaches_handle(policy: RPCPolicy) -> None:
    mount_export(policy)
    refused(decide(policy, nfs3_call(nfs3.Nfs3Proc.READ, FILE_HANDLE)), Refusal.HANDLE)
    call = nfs3_call(nfs3.Nfs3Proc.LOOKUP, ROOT_HANDLE, b"inner.txt")
    forward_and_reply(policy, call, lookup_reply(FILE_HANDLE))
    assert isinstance(
        decide(policy, nfs3_call(nfs3.Nfs3Proc.READ, FILE_HANDLE)), Forward
    )


def test_nfs3_readdirplus_teaches_handles_but_not_dotdot(policy: RPCPolicy) -> None:
    mount_export(policy, b"/export/sub")
    reply = readdirplus_reply([(b"..", OTHER_HANDLE), (b"inner.txt", FILE_HANDLE)])
    out = forward_and_reply(policy, nfs3_call(17, ROOT_HANDLE), reply)
    assert out == reply
    assert isinstance(decide(policy, nfs3_call(1, FILE_HANDLE)), Forward)
    refused(decide(policy, nfs3_call(1, OTHER_HANDLE)), Refusal.HANDLE)


@pytest.mark.parametrize("name", [b"..", b"."])
def test_nfs3_lookup_dot_names_refused(policy: RPCPolicy, name: bytes) -> None:
    mount_export(policy)
    call = nfs3_call(nfs3.Nfs3Proc.LOOKUP, ROOT_HANDLE, name)
    answer = refused(decide(policy, call), Refusal.NAME)
    assert answer.reply == nfs3.build_error_reply(
        parse_call(call), nfs3.Nfs3Stat.NFS3ERR_ACCES
    )


def test_nfs3_rename_checks_both_handles(policy: RPCPolicy) -> None:
    mount_export(policy)
    enc = Encoder()
    enc.opaque(ROOT_HANDLE, 64)
    enc.string(b"a", 255)
    enc.opaque(OTHER_HANDLE, 64)
    enc.string(b"b", 255)
    call = rpc_call(100003, 3, nfs3.Nfs3Proc.RENAME, enc.getvalue())
    refused(decide(policy, call), Refusal.HANDLE)


def test_nfs3_user_list_limits_learned_handles(policy: RPCPolicy) -> None:
    policy.bind("alice", BOB, 0.0, TTL)
    mount_export(policy)
    refused(decide(policy, mnt_call(b"/export", uid=BOB.uid)), Refusal.EXPORT)
    refused(decide(policy, nfs3_call(1, ROOT_HANDLE, uid=BOB.uid)), Refusal.EXPORT)
    assert isinstance(decide(policy, mnt_call(b"/export/bob", uid=BOB.uid)), Forward)


def test_nfs3_null_needs_no_login(policy: RPCPolicy) -> None:
    call = rpc_call(100003, 3, 0, b"", message.AUTH_NONE)
    assert isinstance(decide(policy, call), Forward)


def test_nfs3_garbage_arguments_get_garbage_args(policy: RPCPolicy) -> None:
    call = rpc_call(100003, 3, nfs3.Nfs3Proc.GETATTR, b"\0\0\1\0")
    answer = refused(decide(policy, call), Refusal.GARBAGE)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    assert reply.accept_stat is AcceptStat.GARBAGE_ARGS


def test_nfs3_unknown_procedure_unavailable(policy: RPCPolicy) -> None:
    refused(decide(policy, rpc_call(100003, 3, 99, b"")), Refusal.PROCEDURE)


def test_nfs2_gets_prog_mismatch(policy: RPCPolicy) -> None:
    answer = refused(decide(policy, rpc_call(100003, 2, 1)), Refusal.VERSION)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    assert reply.mismatch == (3, 3)


def test_nfs3_reply_with_bad_results_passes_unchanged(policy: RPCPolicy) -> None:
    mount_export(policy)
    reply = success(b"\0\0\0\0\0\0\1\0")
    call = nfs3_call(nfs3.Nfs3Proc.LOOKUP, ROOT_HANDLE, b"x")
    assert forward_and_reply(policy, call, reply) == reply
    assert policy.replies_unparsed == 1


def test_denied_reply_passes_unchanged(policy: RPCPolicy) -> None:
    mount_export(policy)
    call = nfs3_call(nfs3.Nfs3Proc.LOOKUP, ROOT_HANDLE, b"x")
    reply = message.build_auth_error(parse_call(call), AuthStat.AUTH_TOOWEAK)
    assert forward_and_reply(policy, call, reply) == reply


# -- portmap and other programs ----------------------------------------------


@pytest.mark.parametrize(
    ("vers", "proc"),
    [(2, portmap.PmapProc.GETPORT), (2, 0), (3, portmap.RpcbProc.GETADDR), (4, 4)],
)
def test_portmap_lookups_forwarded_without_login(
    policy: RPCPolicy, vers: int, proc: int
) -> None:
    call = rpc_call(100000, vers, proc, b"", message.AUTH_NONE)
    assert isinstance(decide(policy, call), Forward)


@pytest.mark.parametrize(
    ("vers", "proc"),
    [(2, portmap.PmapProc.CALLIT), (2, portmap.PmapProc.SET), (3, 5), (4, 10), (4, 2)],
)
def test_portmap_indirect_and_set_unavailable(
    policy: RPCPolicy, vers: int, proc: int
) -> None:
    answer = refused(decide(policy, rpc_call(100000, vers, proc)), Refusal.PROCEDURE)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    assert reply.accept_stat is AcceptStat.PROC_UNAVAIL


def test_portmap_version_5_gets_prog_mismatch(policy: RPCPolicy) -> None:
    refused(decide(policy, rpc_call(100000, 5, 0)), Refusal.VERSION)


def test_other_program_unavailable(policy: RPCPolicy) -> None:
    answer = refused(decide(policy, rpc_call(100227, 3, 1)), Refusal.PROGRAM)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    assert reply.accept_stat is AcceptStat.PROG_UNAVAIL


def test_rpc_version_3_gets_rpc_mismatch(policy: RPCPolicy) -> None:
    data = bytearray(mnt_call(b"/export"))
    data[8:12] = (3).to_bytes(4, "big")
    answer = refused(decide(policy, bytes(data)), Refusal.VERSION)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, DeniedReply)
    assert reply.mismatch == (2, 2)


def test_not_a_call_raises_rpc_error(policy: RPCPolicy) -> None:
    with pytest.raises(RPCError):
        decide(policy, b"\0\0\0\1\0\0\0\1")


# -- NFSv4 ---------------------------------------------------------------------------


def compound(*ops: tuple[int, bytes]) -> bytes:
    enc = Encoder()
    enc.opaque(b"", 1024)
    enc.uint32(0)
    enc.uint32(len(ops))
    for opcode, args in ops:
        enc.uint32(opcode)
        enc.raw(args)
    return enc.getvalue()


def component(name: bytes) -> bytes:
    enc = Encoder()
    enc.string(name, 1024)
    return enc.getvalue()


def opaque(data: bytes) -> bytes:
    enc = Encoder()
    enc.opaque(data, 128)
    return enc.getvalue()


PUTROOTFS = (nfs4.Nfs4Op.PUTROOTFS, b"")
GETFH = (nfs4.Nfs4Op.GETFH, b"")
GETATTR = (nfs4.Nfs4Op.GETATTR, b"\0\0\0\1\0\0\0\x01")
READ = (nfs4.Nfs4Op.READ, b"\0" * 16 + b"\0" * 8 + b"\0\0\x10\0")
READDIR = (nfs4.Nfs4Op.READDIR, b"\0" * 8 + b"\0" * 8 + b"\0\0\x10\0" * 2 + b"\0\0\0\0")
V4_ROOT = ROOT_HANDLE[:-1]


def lookup(name: bytes) -> tuple[int, bytes]:
    return (nfs4.Nfs4Op.LOOKUP, component(name))


def putfh(handle: bytes) -> tuple[int, bytes]:
    return (nfs4.Nfs4Op.PUTFH, opaque(handle))


def v4_call(*ops: tuple[int, bytes], uid: int = 1000) -> bytes:
    return rpc_call(100003, 4, 1, compound(*ops), uid=uid)


def getfh_reply(ops: list[int], handle: bytes) -> bytes:
    enc = Encoder()
    enc.uint32(0)
    enc.opaque(b"", 1024)
    enc.uint32(len(ops))
    for opcode in ops:
        enc.uint32(opcode)
        enc.uint32(0)
        if opcode == nfs4.Nfs4Op.GETFH:
            enc.opaque(handle, 128)
    return success(enc.getvalue())


@pytest.fixture
def v4policy() -> RPCPolicy:
    p = RPCPolicy(settings(nfs4=NFS4Mode.ENFORCE))
    p.bind("alice", ANN, 0.0, TTL)
    return p


def learn_v4_root(policy: RPCPolicy) -> None:
    call = v4_call(PUTROOTFS, lookup(b"export"), GETFH)
    reply = getfh_reply([24, 15, 10], V4_ROOT)
    assert forward_and_reply(policy, call, reply) == reply


def test_nfs4_refused_by_default_with_prog_mismatch(policy: RPCPolicy) -> None:
    call = v4_call(PUTROOTFS, GETATTR)
    answer = refused(decide(policy, call), Refusal.NFS4_DISABLED)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    assert reply.mismatch == (3, 3)


def test_nfs4_walk_to_export_and_use_learned_handle(v4policy: RPCPolicy) -> None:
    learn_v4_root(v4policy)
    assert isinstance(decide(v4policy, v4_call(putfh(V4_ROOT), READ)), Forward)
    assert isinstance(
        decide(v4policy, v4_call(putfh(V4_ROOT), lookup(b"f"), GETFH)), Forward
    )


def test_nfs4_lookup_outside_export_refused(v4policy: RPCPolicy) -> None:
    call = v4_call(PUTROOTFS, lookup(b"other"), GETFH)
    answer = refused(decide(v4policy, call), Refusal.NFS4_PATH)
    assert answer.reply == nfs4.build_compound_error_reply(
        parse_call(call),
        nfs4.parse_compound_call(compound(PUTROOTFS, lookup(b"other"), GETFH)),
    )


def test_nfs4_readdir_of_pseudo_root_refused(v4policy: RPCPolicy) -> None:
    refused(decide(v4policy, v4_call(PUTROOTFS, READDIR)), Refusal.NFS4_PATH)


def test_nfs4_getattr_of_pseudo_root_allowed(v4policy: RPCPolicy) -> None:
    assert isinstance(decide(v4policy, v4_call(PUTROOTFS, GETATTR)), Forward)


def test_nfs4_unknown_handle_gets_stale(v4policy: RPCPolicy) -> None:
    call = v4_call(putfh(OTHER_HANDLE), READ)
    answer = refused(decide(v4policy, call), Refusal.HANDLE)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    status = nfs4.parse_compound_reply(answer.reply[reply.results_offset :]).status
    assert status == nfs4.NFS4ERR_STALE


def test_nfs4_v3_handle_not_valid_for_v4(v4policy: RPCPolicy) -> None:
    mount_export(v4policy)
    refused(decide(v4policy, v4_call(putfh(ROOT_HANDLE), READ)), Refusal.HANDLE)


def test_nfs4_dotdot_from_export_root_refused_for_io(v4policy: RPCPolicy) -> None:
    learn_v4_root(v4policy)
    call = v4_call(putfh(V4_ROOT), lookup(b".."), READDIR)
    refused(decide(v4policy, call), Refusal.NFS4_PATH)


def test_nfs4_lookupp_to_pseudo_root_allowed_for_getattr(v4policy: RPCPolicy) -> None:
    learn_v4_root(v4policy)
    call = v4_call(putfh(V4_ROOT), (nfs4.Nfs4Op.LOOKUPP, b""), GETATTR)
    assert isinstance(decide(v4policy, call), Forward)


def test_nfs4_putpubfh_refused(v4policy: RPCPolicy) -> None:
    call = v4_call((nfs4.Nfs4Op.PUTPUBFH, b""), GETATTR)
    refused(decide(v4policy, call), Refusal.HANDLE)


def test_nfs4_unparsed_operation_refused(v4policy: RPCPolicy) -> None:
    call = v4_call(PUTROOTFS, (70, b""))
    refused(decide(v4policy, call), Refusal.NFS4_UNPARSED)


def test_nfs4_unbound_uid_refused(v4policy: RPCPolicy) -> None:
    refused(decide(v4policy, v4_call(PUTROOTFS, uid=4242)), Refusal.UID_NOT_BOUND)


def test_nfs4_getfh_outside_export_not_learned(v4policy: RPCPolicy) -> None:
    learn_v4_root(v4policy)
    policy_snapshot = v4policy.snapshot(1.0)["clients"]["alice"]  # type: ignore[index]
    assert policy_snapshot["handles"] == 1


def test_nfs4_user_list_applies_to_paths(v4policy: RPCPolicy) -> None:
    v4policy.bind("alice", BOB, 0.0, TTL)
    learn_v4_root(v4policy)
    call = v4_call(putfh(V4_ROOT), READ, uid=BOB.uid)
    refused(decide(v4policy, call), Refusal.NFS4_PATH)
    call = v4_call(putfh(V4_ROOT), lookup(b"bob"), READ, uid=BOB.uid)
    assert isinstance(decide(v4policy, call), Forward)


def test_nfs5_gets_prog_mismatch_3_to_4_when_enforcing(v4policy: RPCPolicy) -> None:
    answer = refused(decide(v4policy, rpc_call(100003, 5, 0)), Refusal.VERSION)
    reply = parse_reply(answer.reply)
    assert isinstance(reply, AcceptedReply)
    assert reply.mismatch == (3, 4)


# -- handle table bounds ----------------------------------------------------------


def test_handle_table_evicts_least_recently_used() -> None:
    table = HandleTable(2)
    table.learn(b"a", ())
    table.learn(b"b", ())
    assert table.lookup(b"a") == ()
    table.learn(b"c", ())
    assert table.lookup(b"b") is None
    assert table.lookup(b"a") == ()
    assert table.evicted == 1
    assert len(table) == 2


def test_handle_table_keeps_pinned_entries_apart() -> None:
    table = HandleTable(1)
    table.learn(b"root", (b"export",), pin=True)
    for n in range(10):
        table.learn(bytes([n]), ())
    assert table.lookup(b"root") == (b"export",)
    table.learn(b"root", (b"other",))
    assert table.lookup(b"root") == (b"export",)


def test_handle_table_pinned_entries_bounded() -> None:
    table = HandleTable(1)
    for n in range(MAX_PINNED_HANDLES + 5):
        table.learn(n.to_bytes(4, "big"), (), pin=True)
    assert table.pinned == MAX_PINNED_HANDLES
    assert table.lookup((0).to_bytes(4, "big")) is None
    assert table.evicted == 5


def test_handle_table_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError):
        HandleTable(0)


def test_policy_handle_eviction_gives_stale(policy: RPCPolicy) -> None:
    small = RPCPolicy(settings(handle_table_size=1))
    small.bind("alice", ANN, 0.0, TTL)
    mount_export(small)
    for handle in (FILE_HANDLE, OTHER_HANDLE):
        call = nfs3_call(nfs3.Nfs3Proc.LOOKUP, ROOT_HANDLE, b"x")
        forward_and_reply(small, call, lookup_reply(handle))
    refused(decide(small, nfs3_call(1, FILE_HANDLE)), Refusal.HANDLE)
    assert isinstance(decide(small, nfs3_call(1, OTHER_HANDLE)), Forward)
    assert isinstance(decide(small, nfs3_call(1, ROOT_HANDLE)), Forward)


# -- status and fuzzing -----------------------------------------------------------


def test_snapshot_lists_bindings_and_refusals(policy: RPCPolicy) -> None:
    decide(policy, mnt_call(b"/other"))
    snap = policy.snapshot(40.0)
    alice = snap["clients"]["alice"]  # type: ignore[index]
    assert alice["bindings"] == [
        {"user": "ann", "uid": 1000, "gids": [100, 1000], "expires_in_s": 60.0}
    ]
    assert snap["refused"]["export"] == 1  # type: ignore[index]


def test_split_path_normalises_slashes() -> None:
    assert split_path(b"//export//sub/") == (b"export", b"sub")
    with pytest.raises(ValueError):
        split_path(b"/export/..")


@given(st.binary(max_size=300))
def test_check_call_any_bytes_decides_or_raises_rpc_error(data: bytes) -> None:
    policy = RPCPolicy(settings(nfs4=NFS4Mode.ENFORCE))
    policy.bind("alice", ANN, 0.0, TTL)
    try:
        decision = policy.check_call("alice", data, 1.0)
    except RPCError:
        return
    assert isinstance(decision, Forward | Answer)


@given(
    st.sampled_from([(100005, 3, 1), (100005, 3, 5), (100003, 3, 3), (100003, 3, 17)]),
    st.binary(max_size=200),
)
def test_check_reply_any_results_returns_bytes(
    call: tuple[int, int, int], results: bytes
) -> None:
    policy = RPCPolicy(settings())
    policy.bind("alice", ANN, 0.0, TTL)
    mount_export(policy)
    prog, vers, proc = call
    args = (
        mount.encode_dirpath(b"/export")
        if prog == 100005
        else handle_args(ROOT_HANDLE, b"x" if proc == 3 else None)
    )
    decision = policy.check_call("alice", rpc_call(prog, vers, proc, args), 1.0)
    assert isinstance(decision, Forward)
    out = policy.check_reply("alice", decision.pending, success(results))
    assert isinstance(out, bytes)


@given(st.binary(max_size=64))
def test_check_reply_any_bytes_returns_bytes_or_rpc_error(data: bytes) -> None:
    policy = RPCPolicy(settings())
    policy.bind("alice", ANN, 0.0, TTL)
    decision = policy.check_call("alice", mnt_call(b"/export"), 1.0)
    assert isinstance(decision, Forward)
    try:
        out = policy.check_reply("alice", decision.pending, data)
    except RPCError:
        return
    assert isinstance(out, bytes)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("10.0.0.2", "10.0.0.2"),
        ("::ffff:10.0.0.2", "10.0.0.2"),
        ("fe80::1%eth0", "fe80::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_address_key_normalises_peer(host: str, key: str) -> None:
    assert address_key(host) == key
