"""The RPC proxy and the login service of a bastion with RPC policy on.

``spoolgate bastion`` runs both either on its own event loop
(:class:`RPCServices`, ``rpc_proxy.process = "inline"``) or in a child
process (:class:`ChildRPCServices`, ``"separate"``, the default). The
packet relay and the proxy each keep one core busy at high NFS rates, so in
one process they share a core and the proxy slows reads down.

The child is ``python -m spoolgate.tunnel.rpcservices FD``. It talks to the
bastion over the socketpair end FD: the bastion sends its config, reloads
(client addresses, rules and revoked clients) and status requests; the child
answers status requests and exits on a stop message, on end of file, or on
SIGTERM. The kernel sends it SIGTERM when the bastion dies
(``PR_SET_PDEATHSIG``), so no orphan keeps the ports. Messages are pickles
behind a 4-byte length; both ends are the same program, started by root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from spoolgate.errors import SpoolgateError, TunnelError
from spoolgate.tunnel.config import BastionConfig, ClientEntry, RPCSetup
from spoolgate.tunnel.login import LoginService, start_login_service
from spoolgate.tunnel.rpcpolicy import RPCPolicy
from spoolgate.tunnel.rpcproxy import Listener, RPCProxy, start_rpc_proxy

__all__ = [
    "ChildRPCServices",
    "PolicyServices",
    "RPCServices",
    "client_addresses",
    "start_services",
]

# Named in full because the bastion starts this module with ``python -m``,
# where ``__name__`` is ``__main__``.
log = logging.getLogger("spoolgate.tunnel.rpcservices")

# Linux's PR_SET_PDEATHSIG (linux/prctl.h).
PR_SET_PDEATHSIG = 1
# Time the child gets to close its connections after a stop message.
CHILD_STOP_TIMEOUT_S = 10.0
CHILD_START_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class PolicyServices(Protocol):
    """The RPC proxy and login service, as the bastion drives them."""

    @property
    def login_port(self) -> int:
        """The login service's port on the tun address."""

    def reload(self, config: BastionConfig, revoked: Collection[str]) -> None:
        """Apply new client addresses and rules; forget revoked clients."""

    async def report(self, wall_now: datetime.datetime) -> dict[str, object]:
        """Return the ``rpc_policy`` part of the status JSON."""

    async def close(self) -> None:
        """Stop the login service, then the proxy and its connections."""


async def start_services(
    config: BastionConfig, setup: RPCSetup, on_child_exit: Callable[[], None]
) -> PolicyServices:
    """Start the proxy and login service as ``setup.process`` chooses.

    ``on_child_exit`` runs if the child process exits before ``close``.
    """
    if setup.process == "inline":
        return await RPCServices.start(config, setup)
    return await ChildRPCServices.start(config, on_child_exit)


class RPCServices:
    """The RPC proxy and the login service of a bastion with RPC policy on.

    Both listen on the tun address and share one :class:`RPCPolicy`. Both
    name a connection's client by its source address, from the same map of
    tunnel addresses.
    """

    def __init__(
        self,
        setup: RPCSetup,
        policy: RPCPolicy,
        proxy: RPCProxy,
        login: LoginService,
    ) -> None:
        self.setup = setup
        self.policy = policy
        self.proxy = proxy
        self.login = login

    @property
    def login_port(self) -> int:
        """The login service's port on the tun address."""
        return self.login.port

    @classmethod
    async def start(cls, config: BastionConfig, setup: RPCSetup) -> RPCServices:
        """Start the proxy and the login service on the tun address."""
        policy = RPCPolicy(setup.policy)
        addresses = client_addresses(config.clients)
        listener = Listener(str(config.tun_interface.ip), setup.port)
        proxy = await start_rpc_proxy(policy, addresses, (listener,), setup.proxy)
        try:
            login = await start_login_service(policy, addresses, setup.login)
        except BaseException:
            await proxy.close()
            raise
        services = cls(setup, policy, proxy, login)
        log.info(
            "rpc policy on proxy=%s:%d login=%s:%d policy_clients=%d nfs4=%s",
            listener.host, setup.port, setup.login.host, login.port,
            len(setup.policy.clients), setup.policy.nfs4.value,
        )  # fmt: skip
        services.warn_clients_without_policy(config.clients)
        return services

    async def close(self) -> None:
        """Stop the login service, then the proxy and its connections."""
        await self.login.close()
        await self.proxy.close()
        log.info("rpc policy stopped: proxy and login service closed")

    def reload(self, config: BastionConfig, revoked: Collection[str]) -> None:
        """Apply new client addresses and rules; forget revoked clients.

        Settings other than the rules need a restart, as the caller logs.
        """
        addresses = client_addresses(config.clients)
        self.proxy.set_addresses(addresses)
        self.login.set_addresses(addresses)
        rules = self.setup.policy if config.rpc is None else config.rpc.policy
        self.policy.update(rules, reset=revoked)
        closed = self.proxy.close_clients(revoked)
        if revoked:
            log.info(
                "rpc policy dropped bindings and handles clients=%s connections=%d",
                ",".join(sorted(revoked)),
                closed,
            )
        self.warn_clients_without_policy(config.clients)

    def warn_clients_without_policy(self, clients: tuple[ClientEntry, ...]) -> None:
        """Log each client that has no policy entry: all its calls are refused."""
        named = {rule.name for rule in self.policy.settings.clients}
        for entry in clients:
            if entry.name not in named:
                log.warning(
                    "client=%s has no [[policy.client]] entry: every RPC call "
                    "from it is refused",
                    entry.name,
                )

    async def report(self, wall_now: datetime.datetime) -> dict[str, object]:
        """Return :meth:`status`; the interface of :class:`PolicyServices`."""
        return self.status(wall_now)

    def status(self, wall_now: datetime.datetime) -> dict[str, object]:
        """Return bindings, proxy counters, handle counts and refusals."""
        now = time.monotonic()
        snapshot = self.policy.snapshot(now)
        bindings = []
        for rule in self.policy.settings.clients:
            for binding in self.policy.bindings(rule.name, now):
                remaining = binding.expires_at - now
                expires = wall_now + datetime.timedelta(seconds=remaining)
                bindings.append(
                    {
                        "client": rule.name,
                        "user": binding.user.name,
                        "uid": binding.user.uid,
                        "gids": sorted(binding.user.gids),
                        "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "expires_in_s": round(remaining, 1),
                    }
                )
        clients = snapshot["clients"]
        assert isinstance(clients, dict)
        for entry in clients.values():
            entry.pop("bindings", None)
        return {
            "bindings": bindings,
            "proxy": self.proxy.counters.snapshot(),
            "login": {"logins": self.login.logins, "failures": self.login.failures},
            "clients": clients,
            "refused": snapshot["refused"],
            "replies_unparsed": snapshot["replies_unparsed"],
        }


def client_addresses(clients: tuple[ClientEntry, ...]) -> Mapping[str, str]:
    """Return the map from tunnel address (text) to client name."""
    return {str(entry.address): entry.name for entry in clients}


# -- the child process --------------------------------------------------------


def _encode(message: tuple[object, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def _receive(reader: asyncio.StreamReader) -> tuple[object, ...] | None:
    """Read one message; return None at end of file."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise TunnelError(
            f"rpc services: message of {length} bytes from the other process "
            f"exceeds {MAX_MESSAGE_BYTES}"
        )
    try:
        message = pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        return None
    if not isinstance(message, tuple) or not message:
        raise TunnelError("rpc services: malformed message from the other process")
    return message


class ChildRPCServices:
    """The bastion's handle on the child process that runs the RPC services."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        login_port: int,
        on_exit: Callable[[], None],
    ) -> None:
        self._process = process
        self._reader = reader
        self._writer = writer
        self._login_port = login_port
        self._lock = asyncio.Lock()
        self._closing = False
        self._watcher = asyncio.create_task(self._watch(on_exit))

    @property
    def login_port(self) -> int:
        """The login service's port on the tun address."""
        return self._login_port

    @classmethod
    async def start(
        cls, config: BastionConfig, on_exit: Callable[[], None]
    ) -> ChildRPCServices:
        """Start the child, send it ``config`` and wait until it listens."""
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "spoolgate.tunnel.rpcservices",
                str(theirs.fileno()), pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        level = logging.getLogger().getEffectiveLevel()
        writer.write(_encode(("start", config, level)))
        try:
            reply = await asyncio.wait_for(_receive(reader), CHILD_START_TIMEOUT_S)
        except (TimeoutError, TunnelError):
            reply = None
        if reply is None or reply[0] != "ready" or not isinstance(reply[1], int):
            writer.close()
            await _reap(process)
            detail = reply[1] if reply is not None and reply[0] == "error" else None
            raise TunnelError(
                f"rpc services: child process pid={process.pid} failed to start: "
                f"{detail or 'no ready message; see its log lines above'}"
            )
        log.info("rpc services running in child process pid=%d", process.pid)
        return cls(process, reader, writer, reply[1], on_exit)

    async def _watch(self, on_exit: Callable[[], None]) -> None:
        code = await self._process.wait()
        if not self._closing:
            # Nothing serves the redirected RPC connections any more, so
            # the bastion stops instead of running without its proxy.
            log.error(
                "rpc services child pid=%d exited code=%s; stopping the bastion",
                self._process.pid,
                code,
            )
            on_exit()

    def reload(self, config: BastionConfig, revoked: Collection[str]) -> None:
        """Send the new config and the revoked clients to the child at once."""
        self._writer.write(_encode(("reload", config, frozenset(revoked))))

    async def report(self, wall_now: datetime.datetime) -> dict[str, object]:
        """Ask the child for its status; raise TunnelError if it is gone."""
        async with self._lock:
            self._writer.write(_encode(("status", wall_now)))
            reply = await _receive(self._reader)
        if reply is None or reply[0] != "status" or not isinstance(reply[1], dict):
            raise TunnelError(
                f"rpc services: child process pid={self._process.pid} sent no "
                "status; it may have died, see its log lines"
            )
        return reply[1]

    async def close(self) -> None:
        """Tell the child to stop, and wait for it to exit."""
        self._closing = True
        with contextlib.suppress(ConnectionError):
            self._writer.write(_encode(("stop",)))
            await self._writer.drain()
        self._writer.close()
        await _reap(self._process)
        await self._watcher


async def _reap(process: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(process.wait(), CHILD_STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning(
            "rpc services child pid=%d did not stop in %.0f s, killing it",
            process.pid,
            CHILD_STOP_TIMEOUT_S,
        )
        process.kill()
        await process.wait()
    log.info(
        "rpc services child pid=%d exited code=%s", process.pid, process.returncode
    )


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise TunnelError(
            f"rpc services: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}"
        )


async def _child_loop(
    services: PolicyServices,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    while (message := await _receive(reader)) is not None:
        kind = message[0]
        if kind == "reload":
            config, revoked = message[1], message[2]
            assert isinstance(config, BastionConfig)
            assert isinstance(revoked, frozenset)
            services.reload(config, revoked)
        elif kind == "status":
            wall_now = message[1]
            assert isinstance(wall_now, datetime.datetime)
            writer.write(_encode(("status", await services.report(wall_now))))
        elif kind == "stop":
            return
        else:
            raise TunnelError(f"rpc services: unknown message {kind!r} from bastion")


async def _run_child(sock: socket.socket) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    first = await _receive(reader)
    if first is None or first[0] != "start":
        return 1
    config, level = first[1], first[2]
    assert isinstance(config, BastionConfig) and isinstance(level, int)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    assert config.rpc is not None
    try:
        services = await RPCServices.start(config, config.rpc)
    except SpoolgateError as exc:
        writer.write(_encode(("error", str(exc))))
        await writer.drain()
        return 1
    writer.write(_encode(("ready", services.login_port)))
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(_child_loop(services, reader, writer))
    loop.add_signal_handler(signal.SIGTERM, serving.cancel)
    try:
        await serving
    except asyncio.CancelledError:
        log.info("rpc services child stopping: SIGTERM")
    finally:
        await services.close()
    return 0


def main(argv: list[str]) -> int:
    """Run the RPC services for a parent bastion on the socketpair end argv[0]."""
    # The bastion handles these and tells the child what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        return 1
    sock = socket.socket(fileno=int(argv[0]))
    return asyncio.run(_run_child(sock))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
