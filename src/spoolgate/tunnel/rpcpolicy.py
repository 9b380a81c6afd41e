"""Decide, call by call, which RPC calls from a tunnel client reach the server.

Pure: the RPC proxy hands each call record to :meth:`RPCPolicy.check_call`
with the client's name and the time, and either forwards the record or
sends back the reply bytes the decision carries. Each reply from the
server goes through :meth:`RPCPolicy.check_reply`, which learns the file
handles it issues and returns the bytes to pass on.

Theory of operation:

* A client (a tunnel certificate) has an export allow-list, a list of users
  who may log in from it, a set of allowed credential flavours and a rule
  for uid 0. A user may have an allow-list of their own; a path must then
  be on both lists.
* A login binds a user's uid and gids to a client until an expiry time.
  An AUTH_SYS call passes only if its uid is bound to that client at
  ``now`` and its gids are among the user's gids.
* MOUNT of a path outside the allow-lists gets MNT3ERR_ACCES; EXPORT
  replies are cut down to the allowed exports; DUMP, UMNT and UMNTALL are
  answered here, because the server sees every client as the bastion.
* An NFSv3 call must carry only handles the server issued to this client
  (MNT, LOOKUP, CREATE, MKDIR, SYMLINK, MKNOD and READDIRPLUS replies);
  each learned handle remembers the mounted path it was reached from,
  and a LOOKUP of ``.`` or ``..`` is refused so that path stays an upper
  bound. Other handles get NFS3ERR_STALE.
* NFSv4 is refused (PROG_MISMATCH, so clients fall back to v3) unless the
  settings say ``enforce``. Then every position a COMPOUND reaches is
  resolved to a path from the pseudo-root (handles learned from GETFH
  replies map to paths). Operations may act only under an allowed export;
  on the way down to one (the pseudo-root, ``/export`` above
  ``/export/sub``) only look-up operations are allowed.
* Handle tables are bounded per client: see :class:`HandleTable`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from spoolgate.errors import LoginFailedError, RPCError, XDRError
from spoolgate.rpc import message, mount, nfs3, nfs4, portmap
from spoolgate.rpc.message import AcceptStat, AuthFlavor, AuthStat, Call

__all__ = [
    "Answer",
    "Binding",
    "ClientRule",
    "Decision",
    "Forward",
    "HandleTable",
    "NFS4Mode",
    "Pending",
    "PolicySettings",
    "RPCPolicy",
    "Refusal",
    "UserIdentity",
    "address_key",
    "handle_digest",
    "split_path",
]

Components = tuple[bytes, ...]

DEFAULT_HANDLE_TABLE_SIZE = 65536
# Mount roots and NFSv4 paths above an export are pinned: clients cannot
# re-learn them after an eviction. At most this many per client are kept.
MAX_PINNED_HANDLES = 1024

_V3 = b"\x03"
_V4 = b"\x04"


def handle_digest(handle: bytes) -> str:
    """Return a short log name for a file handle: a SHA-256 prefix and length.

    Handles of one export often share their first bytes (Ganesha's start
    with the same export id), so a prefix of the handle itself does not
    tell two handles apart in the logs.
    """
    digest = hashlib.sha256(handle).hexdigest()[:12]
    return f"sha256:{digest}/{len(handle)}B"


class Refusal(enum.Enum):
    """Why a call was answered by the policy; the value is the counter key."""

    FLAVOR = "flavor"
    ROOT = "root"
    UID_NOT_BOUND = "uid_not_bound"
    GIDS_NOT_BOUND = "gids_not_bound"
    EXPORT = "export"
    HANDLE = "handle"
    NAME = "name"
    NFS4_DISABLED = "nfs4_disabled"
    NFS4_PATH = "nfs4_path"
    NFS4_UNPARSED = "nfs4_unparsed"
    PROGRAM = "program"
    VERSION = "version"
    PROCEDURE = "procedure"
    GARBAGE = "garbage"
    UNKNOWN_CLIENT = "unknown_client"


class NFS4Mode(enum.Enum):
    """Handling of NFSv4 calls: refused outright, or checked path by path."""

    REFUSE = "refuse"
    ENFORCE = "enforce"


@dataclasses.dataclass(frozen=True, slots=True)
class ClientRule:
    """The policy of one tunnel client, by its certificate's name.

    ``users`` is None when any user with a valid proof may log in.
    ``flavors`` contains the RPC credential flavour numbers accepted.
    """

    name: str
    exports: tuple[Components, ...]
    users: frozenset[str] | None = None
    allow_root: bool = False
    flavors: frozenset[int] = frozenset({AuthFlavor.AUTH_SYS})


@dataclasses.dataclass(frozen=True, slots=True)
class PolicySettings:
    """Every client's rule, per-user allow-lists, and the table bounds."""

    clients: tuple[ClientRule, ...]
    user_exports: Mapping[str, tuple[Components, ...]] = dataclasses.field(
        default_factory=dict
    )
    nfs4: NFS4Mode = NFS4Mode.REFUSE
    handle_table_size: int = DEFAULT_HANDLE_TABLE_SIZE


@dataclasses.dataclass(frozen=True, slots=True)
class UserIdentity:
    """A user as the bastion's passwd and group databases describe them."""

    name: str
    uid: int
    gids: frozenset[int]


@dataclasses.dataclass(frozen=True, slots=True)
class Binding:
    """A user's ids bound to one client until ``expires_at`` (seconds)."""

    client: str
    user: UserIdentity
    bound_at: float
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Pending:
    """State a forwarded call leaves for its reply: what to learn or filter."""

    prog: int
    vers: int
    proc: int
    root: Components | None = None
    compound: nfs4.Compound | None = None
    user: str | None = None

    @property
    def reads_reply(self) -> bool:
        """Whether :meth:`RPCPolicy.check_reply` must see the whole reply.

        It must when the reply issues handles or is an EXPORT list. Any
        other reply passes unchanged, so the proxy may forward it as it
        arrives.
        """
        return _teaches(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Forward:
    """Send the call to the server; keep ``pending`` until its reply."""

    xid: int
    pending: Pending


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """Send ``reply`` (an RPC message, no record marker) back to the client.

    ``refusal`` is None when the policy answers in the server's place
    without refusing anything (DUMP, UMNT).
    """

    xid: int
    reply: bytes
    refusal: Refusal | None
    detail: str = ""


Decision = Forward | Answer


class _RefusedError(Exception):
    """Internal: a check failed; carries the answer to send."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.detail)
        self.answer = answer


def address_key(host: str) -> str:
    """Return the form of a peer address used as a key in address maps.

    An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4
    peer) becomes the IPv4 address, and an IPv6 zone is dropped, so a peer
    matches the address written in the config.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def split_path(path: bytes) -> Components:
    """Split an export path into components; raise ValueError on . or .."""
    components = tuple(part for part in path.split(b"/") if part)
    if any(part in (b".", b"..") for part in components):
        raise ValueError(f"path {path!r} contains . or ..")
    return components


def _walk(base: Components, names: Components) -> Components | None:
    """Apply looked-up names to ``base``; None if ``..`` climbs above the root."""
    path = list(base)
    for name in names:
        if name == b"..":
            if not path:
                return None
            path.pop()
        elif name != b".":
            path.append(name)
    return tuple(path)


def _is_under(path: Components, exports: Iterable[Components]) -> bool:
    return any(path[: len(export)] == export for export in exports)


def _is_above(path: Components, exports: Iterable[Components]) -> bool:
    return any(
        len(path) < len(export) and export[: len(path)] == path for export in exports
    )


class HandleTable:
    """File handles issued to one client, each with the path it stands for.

    Bounded: at most ``capacity`` ordinary entries, least recently used
    first out, plus at most MAX_PINNED_HANDLES pinned entries (mount roots,
    NFSv4 paths at or above an export), oldest first out. A client whose
    handle was evicted gets a stale-handle error for it and must look it
    up again from a pinned root. Not safe for use from several threads.
    """

    __slots__ = ("_entries", "_pinned", "capacity", "evicted")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"handle table capacity {capacity} < 1")
        self.capacity = capacity
        self.evicted = 0
        self._entries: OrderedDict[bytes, Components] = OrderedDict()
        self._pinned: OrderedDict[bytes, Components] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries) + len(self._pinned)

    @property
    def pinned(self) -> int:
        """Number of pinned entries."""
        return len(self._pinned)

    def learn(self, key: bytes, path: Components, *, pin: bool = False) -> None:
        """Remember ``key`` (version byte + handle) as standing for ``path``."""
        table, limit = (
            (self._pinned, MAX_PINNED_HANDLES)
            if pin
            else (self._entries, self.capacity)
        )
        if pin:
            self._entries.pop(key, None)
        elif key in self._pinned:
            return
        table[key] = path
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)
            self.evicted += 1

    def lookup(self, key: bytes) -> Components | None:
        """Return the path of ``key``, or None if it was never issued or is gone."""
        path = self._pinned.get(key)
        if path is not None:
            return path
        path = self._entries.get(key)
        if path is not None:
            self._entries.move_to_end(key)
        return path


@dataclasses.dataclass(slots=True)
class _ClientState:
    rule: ClientRule
    handles: HandleTable
    bindings: dict[str, Binding] = dataclasses.field(default_factory=dict)


# Operations allowed on a position above an export: they look up, or read
# attributes used while walking down (RFC 7530 section 16, RFC 8881
# section 18).
_NAVIGATION_OPS = frozenset(
    {
        nfs4.Nfs4Op.PUTROOTFS,
        nfs4.Nfs4Op.PUTFH,
        nfs4.Nfs4Op.LOOKUP,
        nfs4.Nfs4Op.LOOKUPP,
        nfs4.Nfs4Op.GETFH,
        nfs4.Nfs4Op.GETATTR,
        nfs4.Nfs4Op.ACCESS,
        nfs4.Nfs4Op.SAVEFH,
        nfs4.Nfs4Op.RESTOREFH,
        nfs4.Nfs4Op.SECINFO,
        nfs4.Nfs4Op.SECINFO_NO_NAME,
        nfs4.Nfs4Op.VERIFY,
        nfs4.Nfs4Op.NVERIFY,
    }
)

# The longest leading fields nfs3.parse_call_args reads: RENAME's two
# handles (4 + 64 bytes each) and two names (4 + 255 + padding each).
_NFS3_ARGS_PREFIX = 2 * (4 + 64) + 2 * (4 + 256)

# NFSv3 procedures whose successful replies issue handles.
_ISSUING_PROCS = frozenset(
    {
        nfs3.Nfs3Proc.LOOKUP,
        nfs3.Nfs3Proc.CREATE,
        nfs3.Nfs3Proc.MKDIR,
        nfs3.Nfs3Proc.SYMLINK,
        nfs3.Nfs3Proc.MKNOD,
        nfs3.Nfs3Proc.READDIRPLUS,
    }
)

_PMAP_V2_PROCS = frozenset(
    {portmap.PmapProc.NULL, portmap.PmapProc.GETPORT, portmap.PmapProc.DUMP}
)
# rpcbind v3/v4 lookups; SET, UNSET, CALLIT/BCAST and INDIRECT are left out.
_RPCB_PROCS = frozenset(
    {
        portmap.RpcbProc.NULL,
        portmap.RpcbProc.GETADDR,
        portmap.RpcbProc.DUMP,
        portmap.RpcbProc.GETTIME,
        portmap.RpcbProc.UADDR2TADDR,
        portmap.RpcbProc.TADDR2UADDR,
        portmap.RpcbProc.GETVERSADDR,
        portmap.RpcbProc.GETADDRLIST,
        portmap.RpcbProc.GETSTAT,
    }
)


class RPCPolicy:
    """The policy state of one bastion: rules, login bindings, handle tables.

    Not safe for use from several threads; the proxy and the login service
    share one instance inside one event loop.
    """

    def __init__(self, settings: PolicySettings) -> None:
        self._settings = settings
        self._clients = {
            rule.name: _ClientState(rule, HandleTable(settings.handle_table_size))
            for rule in settings.clients
        }
        self.refused: dict[Refusal, int] = dict.fromkeys(Refusal, 0)
        self.replies_unparsed = 0

    @property
    def settings(self) -> PolicySettings:
        """The settings this policy was built from."""
        return self._settings

    def update(self, settings: PolicySettings, reset: Iterable[str] = ()) -> None:
        """Apply new rules (a config reload); forget clients gone or in ``reset``.

        A client that is gone, or named in ``reset`` (revoked: its key or
        address changed), loses its bindings and learned handles. The
        others keep them under their new rule, minus bindings of users the
        new rule no longer lets in. Export lists are checked on every call,
        so handles learned under a wider list stop working at once.
        ``handle_table_size`` applies to tables created from now on.
        """
        dropped = set(reset)
        old = self._clients
        self._settings = settings
        self._clients = {}
        for rule in settings.clients:
            state = old.get(rule.name)
            if state is None or rule.name in dropped:
                state = _ClientState(rule, HandleTable(settings.handle_table_size))
            state.rule = rule
            if rule.users is not None:
                for user in [u for u in state.bindings if u not in rule.users]:
                    del state.bindings[user]
            self._clients[rule.name] = state

    # -- bindings ---------------------------------------------------------

    def bind(
        self, client: str, user: UserIdentity, now: float, ttl_s: float
    ) -> Binding:
        """Bind ``user``'s ids to ``client`` for ``ttl_s`` seconds from ``now``.

        Raises LoginFailedError if the client is unknown or the user may not
        log in from it. A new login of the same user replaces the binding.
        """
        state = self._clients.get(client)
        if state is None:
            raise LoginFailedError(f"login: client {client!r} has no policy entry")
        users = state.rule.users
        if users is not None and user.name not in users:
            raise LoginFailedError(
                f"login: user {user.name!r} may not log in from client {client!r}; "
                "add them to its users list"
            )
        binding = Binding(client, user, now, now + ttl_s)
        state.bindings[user.name] = binding
        return binding

    def unbind(self, client: str, user_name: str) -> bool:
        """Remove a user's binding; return False if there was none."""
        state = self._clients.get(client)
        if state is None:
            return False
        return state.bindings.pop(user_name, None) is not None

    def bindings(self, client: str, now: float) -> tuple[Binding, ...]:
        """Return the client's bindings valid at ``now``; drop expired ones."""
        state = self._clients.get(client)
        if state is None:
            return ()
        for name, binding in list(state.bindings.items()):
            if binding.expires_at <= now:
                del state.bindings[name]
        return tuple(state.bindings.values())

    def _binding_for_uid(self, client: str, uid: int, now: float) -> Binding | None:
        for binding in self.bindings(client, now):
            if binding.user.uid == uid:
                return binding
        return None

    # -- calls ------------------------------------------------------------

    def check_call(self, client: str, payload: bytes, now: float) -> Decision:
        """Decide what to do with one call record from ``client``.

        Raises RPCError if ``payload`` is not an RPC call; the proxy then
        closes the connection, because the stream cannot be trusted.
        """
        call = message.parse_call(payload)
        try:
            return self._decide(client, call, payload, now)
        except _RefusedError as refused:
            if refused.answer.refusal is not None:
                self.refused[refused.answer.refusal] += 1
            return refused.answer

    def _decide(self, client: str, call: Call, payload: bytes, now: float) -> Decision:
        state = self._clients.get(client)
        if state is None:
            raise _refuse(
                call,
                message.build_auth_error(call, AuthStat.AUTH_TOOWEAK),
                Refusal.UNKNOWN_CLIENT,
                f"client {client!r} has no policy entry",
            )
        if call.rpcvers != 2:
            raise _refuse(
                call, message.build_rpc_mismatch(call), Refusal.VERSION, "rpcvers"
            )
        if call.prog == portmap.PMAP_PROGRAM:
            return _check_portmap(call)
        if call.prog == mount.MOUNT_PROGRAM:
            return self._check_mount(state, call, payload[call.args_offset :], now)
        if call.prog == nfs3.NFS_PROGRAM:
            # NFSv3 arguments are read only up to their leading handles and
            # names, so the data of a 1 MiB WRITE is not copied.
            end = None if call.vers == 4 else call.args_offset + _NFS3_ARGS_PREFIX
            return self._check_nfs(state, call, payload[call.args_offset : end], now)
        raise _refuse(
            call,
            message.build_prog_unavail(call),
            Refusal.PROGRAM,
            f"program {call.prog} is not portmap, MOUNT or NFS",
        )

    def _authorize(self, state: _ClientState, call: Call, now: float) -> Binding | None:
        """Check the credential; return the caller's binding (None if not AUTH_SYS)."""
        rule = state.rule
        if call.cred.flavor not in rule.flavors:
            raise _refuse(
                call,
                message.build_auth_error(call, AuthStat.AUTH_TOOWEAK),
                Refusal.FLAVOR,
                f"credential flavour {call.cred.flavor} not allowed",
            )
        if call.cred.flavor != AuthFlavor.AUTH_SYS:
            return None
        try:
            cred = message.decode_auth_sys(call.cred.body)
        except RPCError as exc:
            raise _refuse(
                call,
                message.build_auth_error(call, AuthStat.AUTH_BADCRED),
                Refusal.GARBAGE,
                f"malformed AUTH_SYS credential: {exc}",
            ) from exc
        return self._check_ids(state, call, cred, now)

    def _check_ids(
        self, state: _ClientState, call: Call, cred: message.AuthSys, now: float
    ) -> Binding:
        if cred.uid == 0 and not state.rule.allow_root:
            raise _refuse(
                call,
                message.build_auth_error(call, AuthStat.AUTH_TOOWEAK),
                Refusal.ROOT,
                "uid 0 not allowed for this client",
            )
        binding = self._binding_for_uid(state.rule.name, cred.uid, now)
        if binding is None:
            raise _refuse(
                call,
                message.build_auth_error(call, AuthStat.AUTH_BADCRED),
                Refusal.UID_NOT_BOUND,
                f"uid {cred.uid} is not bound to this client by a login",
            )
        extra = {cred.gid, *cred.gids} - binding.user.gids
        if extra:
            raise _refuse(
                call,
                message.build_auth_error(call, AuthStat.AUTH_BADCRED),
                Refusal.GIDS_NOT_BOUND,
                f"gids {sorted(extra)} are not groups of user {binding.user.name}",
            )
        return binding

    def _is_allowed(
        self, rule: ClientRule, binding: Binding | None, path: Components
    ) -> bool:
        if not _is_under(path, rule.exports):
            return False
        user_exports = self._user_exports(binding)
        return user_exports is None or _is_under(path, user_exports)

    def _is_above_allowed(
        self, rule: ClientRule, binding: Binding | None, path: Components
    ) -> bool:
        # Above the client's list, or above a user's export that lies
        # inside it (``/export`` for a user allowed only ``/export/bob``).
        if not (_is_above(path, rule.exports) or _is_under(path, rule.exports)):
            return False
        user_exports = self._user_exports(binding)
        exports = rule.exports if user_exports is None else user_exports
        return _is_above(path, exports)

    def _user_exports(self, binding: Binding | None) -> tuple[Components, ...] | None:
        if binding is None:
            return None
        return self._settings.user_exports.get(binding.user.name)

    # -- MOUNT --------------------------------------------------------------

    def _check_mount(
        self, state: _ClientState, call: Call, args: bytes, now: float
    ) -> Decision:
        if call.vers != mount.MOUNT_VERSION:
            raise _prog_mismatch(call, 3, 3)
        proc = call.proc
        if proc == mount.MountProc.NULL:
            return Forward(call.xid, Pending(call.prog, call.vers, proc))
        if proc == mount.MountProc.EXPORT:
            binding = self._try_binding(state, call, now)
            user = None if binding is None else binding.user.name
            return Forward(call.xid, Pending(call.prog, call.vers, proc, user=user))
        if proc == mount.MountProc.DUMP:
            # An empty mount list: the server's list names only the bastion.
            return Answer(call.xid, message.build_success(call, b"\0\0\0\0"), None)
        if proc in (mount.MountProc.UMNT, mount.MountProc.UMNTALL):
            # Answered here, because the server's mount list has one entry
            # for the bastion that all clients share, and a forwarded UMNT
            # from one client would remove it.
            return Answer(call.xid, message.build_success(call, b""), None)
        if proc == mount.MountProc.MNT:
            return self._check_mnt(state, call, args, now)
        raise _proc_unavail(call)

    def _try_binding(
        self, state: _ClientState, call: Call, now: float
    ) -> Binding | None:
        try:
            cred = call.auth_sys()
        except RPCError:
            return None
        if cred is None:
            return None
        return self._binding_for_uid(state.rule.name, cred.uid, now)

    def _check_mnt(
        self, state: _ClientState, call: Call, args: bytes, now: float
    ) -> Decision:
        binding = self._authorize(state, call, now)
        try:
            path = split_path(mount.parse_dirpath(args))
        except XDRError as exc:
            raise _garbage(call, str(exc)) from exc
        except ValueError as exc:
            raise _refuse(
                call, mount.build_mnt_error_reply(call), Refusal.NAME, str(exc)
            ) from exc
        if not self._is_allowed(state.rule, binding, path):
            raise _refuse(
                call,
                mount.build_mnt_error_reply(call),
                Refusal.EXPORT,
                f"MNT of /{b'/'.join(path).decode(errors='replace')} not allowed",
            )
        return Forward(call.xid, Pending(call.prog, call.vers, call.proc, root=path))

    # -- NFS ----------------------------------------------------------------

    def _check_nfs(
        self, state: _ClientState, call: Call, args: bytes, now: float
    ) -> Decision:
        enforce_v4 = self._settings.nfs4 is NFS4Mode.ENFORCE
        if call.vers == 3:
            return self._check_nfs3(state, call, args, now)
        if call.vers == 4 and enforce_v4:
            return self._check_nfs4(state, call, args, now)
        if call.vers == 4:
            raise _refuse(
                call,
                message.build_accepted_reply(
                    call.xid, AcceptStat.PROG_MISMATCH, mismatch=(3, 3)
                ),
                Refusal.NFS4_DISABLED,
                "NFSv4 is refused (rpc_proxy.nfs4 = refuse)",
            )
        raise _prog_mismatch(call, 3, 4 if enforce_v4 else 3)

    def _check_nfs3(
        self, state: _ClientState, call: Call, args: bytes, now: float
    ) -> Decision:
        if call.proc == nfs3.Nfs3Proc.NULL:
            return Forward(call.xid, Pending(call.prog, call.vers, call.proc))
        binding = self._authorize(state, call, now)
        try:
            parsed = nfs3.parse_call_args(call.proc, args)
        except XDRError as exc:
            raise _garbage(call, str(exc)) from exc
        except RPCError as exc:
            raise _proc_unavail(call) from exc
        if any(name in (b".", b"..") for name in parsed.names):
            raise _refuse(
                call,
                nfs3.build_error_reply(call, nfs3.Nfs3Stat.NFS3ERR_ACCES),
                Refusal.NAME,
                f"{parsed.proc.name} of . or ..",
            )
        roots = [self._nfs3_root(state, call, handle) for handle in parsed.handles]
        for root in roots:
            if not self._is_allowed(state.rule, binding, root):
                raise _refuse(
                    call,
                    nfs3.build_error_reply(call, nfs3.Nfs3Stat.NFS3ERR_ACCES),
                    Refusal.EXPORT,
                    f"{parsed.proc.name} under a path not allowed for this user",
                )
        first = roots[0] if roots else None
        return Forward(call.xid, Pending(call.prog, call.vers, call.proc, root=first))

    def _nfs3_root(self, state: _ClientState, call: Call, handle: bytes) -> Components:
        root = state.handles.lookup(_V3 + handle)
        if root is None:
            raise _refuse(
                call,
                nfs3.build_error_reply(call),
                Refusal.HANDLE,
                f"handle {handle_digest(handle)} was not issued to this client",
            )
        return root

    def _check_nfs4(
        self, state: _ClientState, call: Call, args: bytes, now: float
    ) -> Decision:
        if call.proc == 0:
            return Forward(call.xid, Pending(call.prog, call.vers, call.proc))
        if call.proc != nfs4.NFS4_PROC_COMPOUND:
            raise _proc_unavail(call)
        binding = self._authorize(state, call, now)
        try:
            compound = nfs4.parse_compound_call(args)
        except XDRError as exc:
            raise _garbage(call, str(exc)) from exc
        if not compound.complete:
            raise _refuse(
                call,
                nfs4.build_compound_error_reply(call, compound),
                Refusal.NFS4_UNPARSED,
                f"COMPOUND with operation {compound.ops[-1].opcode} not followed",
            )
        self._check_compound(state, binding, call, compound)
        pending = Pending(call.prog, call.vers, call.proc, compound=compound)
        return Forward(call.xid, pending)

    def _check_compound(
        self,
        state: _ClientState,
        binding: Binding | None,
        call: Call,
        compound: nfs4.Compound,
    ) -> None:
        rule = state.rule
        for op in compound.ops:
            if op.position is None:
                continue
            path = self._resolve(state, call, compound, op.position)
            if self._is_allowed(rule, binding, path):
                continue
            if op.opcode in _NAVIGATION_OPS and (
                self._is_above_allowed(rule, binding, path)
            ):
                continue
            raise _nfs4_path_refusal(call, compound, op.opcode, path)
        for position in compound.reached:
            path = self._resolve(state, call, compound, position)
            if not self._is_allowed(rule, binding, path) and not (
                self._is_above_allowed(rule, binding, path) or path == ()
            ):
                raise _nfs4_path_refusal(call, compound, None, path)

    def _resolve(
        self,
        state: _ClientState,
        call: Call,
        compound: nfs4.Compound,
        position: nfs4.Position,
    ) -> Components:
        base = self._position_base(state, position)
        if base is None:
            raise _refuse(
                call,
                nfs4.build_compound_error_reply(call, compound, nfs4.NFS4ERR_STALE),
                Refusal.HANDLE,
                "COMPOUND uses a handle not issued to this client, or PUTPUBFH",
            )
        path = _walk(base, position.components)
        if path is None:
            raise _nfs4_path_refusal(call, compound, None, base)
        return path

    def _position_base(
        self, state: _ClientState, position: nfs4.Position
    ) -> Components | None:
        if position.base is nfs4.Base.ROOTFS:
            return ()
        if position.base is nfs4.Base.HANDLE:
            return state.handles.lookup(_V4 + position.handle)
        return None

    # -- replies ------------------------------------------------------------

    def check_reply(self, client: str, pending: Pending, payload: bytes) -> bytes:
        """Learn what a reply to a forwarded call issues; return the bytes to send.

        The reply passes unchanged, except an EXPORT list, which is cut down
        to the exports the client may see. A reply whose results cannot be
        decoded passes unchanged and teaches nothing, so handles in it are
        refused later.
        """
        state = self._clients.get(client)
        reply = message.parse_reply(payload)
        if state is None or not isinstance(reply, message.AcceptedReply):
            return payload
        if reply.accept_stat is not AcceptStat.SUCCESS or not _teaches(pending):
            return payload
        results = payload[reply.results_offset :]
        try:
            return self._learn(state, pending, payload, reply.results_offset, results)
        except XDRError:
            self.replies_unparsed += 1
            if pending.prog == mount.MOUNT_PROGRAM:
                # Never pass an EXPORT list that could not be filtered.
                return payload[: reply.results_offset] + b"\0\0\0\0"
            return payload

    def _learn(
        self,
        state: _ClientState,
        pending: Pending,
        payload: bytes,
        offset: int,
        results: bytes,
    ) -> bytes:
        if pending.prog == mount.MOUNT_PROGRAM:
            if pending.proc == mount.MountProc.EXPORT:
                filtered = self._filter_exports(state, pending, results)
                return payload[:offset] + filtered
            if pending.proc == mount.MountProc.MNT and pending.root is not None:
                result = mount.parse_mnt_reply(results)
                if result.status is mount.MountStat.MNT3_OK:
                    state.handles.learn(_V3 + result.fhandle, pending.root, pin=True)
        elif pending.prog == nfs3.NFS_PROGRAM and pending.vers == 3:
            self._learn_nfs3(state, pending, results)
        elif pending.compound is not None:
            self._learn_nfs4(state, pending.compound, results)
        return payload

    def _filter_exports(
        self, state: _ClientState, pending: Pending, results: bytes
    ) -> bytes:
        binding = None
        if pending.user is not None:
            binding = state.bindings.get(pending.user)

        def allowed(directory: bytes) -> bool:
            try:
                path = split_path(directory)
            except ValueError:
                return False
            return self._is_allowed(state.rule, binding, path)

        return mount.filter_export_reply(results, allowed)

    def _learn_nfs3(
        self, state: _ClientState, pending: Pending, results: bytes
    ) -> None:
        if pending.root is None:
            return
        handles = nfs3.issued_handles(
            pending.proc, results, skip_names=frozenset({b".."})
        )
        for handle in handles:
            state.handles.learn(_V3 + handle, pending.root)

    def _learn_nfs4(
        self, state: _ClientState, compound: nfs4.Compound, results: bytes
    ) -> None:
        reply = nfs4.parse_compound_reply(results)
        positions = dict(compound.getfh)
        rule = state.rule
        for index, handle in reply.handles:
            position = positions.get(index)
            if position is None:
                continue
            path = self._resolve_quietly(state, position)
            if path is None:
                continue
            # Learned for every user of this client. Each call checks the
            # path again against its own user's allow-list.
            if _is_under(path, rule.exports):
                pin = path in rule.exports
                state.handles.learn(_V4 + handle, path, pin=pin)
            elif _is_above(path, rule.exports) or path == ():
                state.handles.learn(_V4 + handle, path, pin=True)

    def _resolve_quietly(
        self, state: _ClientState, position: nfs4.Position
    ) -> Components | None:
        base = self._position_base(state, position)
        if base is None:
            return None
        return _walk(base, position.components)

    # -- status -------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, object]:
        """Return bindings, handle-table sizes and refusal counts for status."""
        clients: dict[str, object] = {}
        for name, state in self._clients.items():
            clients[name] = {
                "bindings": [
                    {
                        "user": binding.user.name,
                        "uid": binding.user.uid,
                        "gids": sorted(binding.user.gids),
                        "expires_in_s": round(binding.expires_at - now, 1),
                    }
                    for binding in self.bindings(name, now)
                ],
                "handles": len(state.handles),
                "handles_pinned": state.handles.pinned,
                "handles_evicted": state.handles.evicted,
            }
        return {
            "clients": clients,
            "refused": {reason.value: n for reason, n in self.refused.items()},
            "replies_unparsed": self.replies_unparsed,
        }


def _teaches(pending: Pending) -> bool:
    """Tell whether the reply to ``pending`` must be read: learned or filtered."""
    if pending.prog == mount.MOUNT_PROGRAM:
        return True
    if pending.compound is not None:
        return bool(pending.compound.getfh)
    return pending.proc in _ISSUING_PROCS and pending.root is not None


def _refuse(call: Call, reply: bytes, refusal: Refusal, detail: str) -> _RefusedError:
    return _RefusedError(Answer(call.xid, reply, refusal, detail))


def _garbage(call: Call, detail: str) -> _RefusedError:
    return _refuse(call, message.build_garbage_args(call), Refusal.GARBAGE, detail)


def _proc_unavail(call: Call) -> _RefusedError:
    return _refuse(
        call,
        message.build_proc_unavail(call),
        Refusal.PROCEDURE,
        f"procedure {call.proc} of program {call.prog} not allowed",
    )


def _prog_mismatch(call: Call, low: int, high: int) -> _RefusedError:
    reply = message.build_accepted_reply(
        call.xid, AcceptStat.PROG_MISMATCH, mismatch=(low, high)
    )
    return _refuse(
        call,
        reply,
        Refusal.VERSION,
        f"version {call.vers} of program {call.prog} not served",
    )


def _nfs4_path_refusal(
    call: Call, compound: nfs4.Compound, opcode: int | None, path: Components
) -> _RefusedError:
    shown = "/" + b"/".join(path).decode(errors="replace")
    what = "COMPOUND reaches" if opcode is None else f"operation {opcode} on"
    return _refuse(
        call,
        nfs4.build_compound_error_reply(call, compound, nfs4.NFS4ERR_ACCESS),
        Refusal.NFS4_PATH,
        f"{what} {shown}, outside the allowed exports",
    )


def _check_portmap(call: Call) -> Decision:
    if call.vers == 2:
        allowed = call.proc in _PMAP_V2_PROCS
    elif call.vers in (3, 4):
        allowed = call.proc in _RPCB_PROCS
    else:
        raise _prog_mismatch(call, 2, 4)
    if not allowed:
        raise _proc_unavail(call)
    return Forward(call.xid, Pending(call.prog, call.vers, call.proc))
