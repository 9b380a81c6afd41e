"""Tunnel client and bastion config files -> frozen dataclasses.

The key names, defaults and meanings are documented in docs/tunnel.md;
keep the two in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from pathlib import Path

from spoolgate.config import ConfigReader, build, check_secret_file, load_toml
from spoolgate.errors import ConfigError
from spoolgate.tunnel import keys
from spoolgate.tunnel.frames import MAX_PAYLOAD
from spoolgate.tunnel.login import LoginSettings, read_login_config
from spoolgate.tunnel.policy import IPAddress
from spoolgate.tunnel.rpcpolicy import PolicySettings
from spoolgate.tunnel.rpcproxy import ProxyConfig, ProxySettings, read_proxy_config

IFNAMSIZ = 16  # Linux interface names hold at most IFNAMSIZ - 1 bytes.
MIN_MTU = 576
DEFAULT_STATUS_SOCKET = "/run/spoolgate-bastion.sock"

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True, slots=True)
class Timers:
    """Connection timing shared by both sides, in seconds."""

    keepalive_s: float = 10.0
    dead_peer_s: float = 30.0
    drop_log_interval_s: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class TunnelConfig:
    """Settings of ``spoolgate tunnel`` (the client side)."""

    bastion_host: str
    bastion_port: int
    bastion_fingerprint: str
    key: Path
    cert: Path
    tun_name: str
    address: IPAddress
    mtu: int
    routes: tuple[IPNetwork, ...]
    timers: Timers
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class ClientEntry:
    """One client the bastion accepts: its pin and its tunnel address."""

    name: str
    fingerprint: str
    address: IPAddress
    cert_pem: str


@dataclasses.dataclass(frozen=True, slots=True)
class RPCSetup:
    """The bastion's RPC proxy, its policy rules and the login service.

    Present only when the config has ``[[policy.client]]`` entries or
    ``rpc_proxy.enabled = true``. ``port`` is the proxy's port on the tun
    address; the login service listens on ``login.port`` there. ``process``
    is ``"separate"`` (a child process runs the proxy and the login
    service) or ``"inline"`` (the packet relay's event loop runs them).
    """

    policy: PolicySettings
    proxy: ProxySettings
    port: int
    login: LoginSettings
    process: str = "separate"

    def settings_needing_restart(self) -> tuple[object, ...]:
        """Return the parts a SIGHUP reload cannot change: all but the rules."""
        return (
            self.proxy,
            self.port,
            self.login,
            self.policy.handle_table_size,
            self.process,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class BastionConfig:
    """Settings of ``spoolgate bastion``."""

    listen_host: str
    listen_port: int
    key: Path
    cert: Path
    status_socket: Path
    handshake_timeout_s: float
    nat: bool
    tun_name: str
    tun_interface: IPInterface
    mtu: int
    server: IPAddress
    portmap_port: int
    nfs_port: int
    mount_port: int
    clients: tuple[ClientEntry, ...]
    timers: Timers
    rpc: RPCSetup | None = None

    def settings_needing_restart(self) -> tuple[object, ...]:
        """Return every setting a SIGHUP reload cannot change."""
        fixed = tuple(
            getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in ("clients", "rpc")
        )
        rpc = None if self.rpc is None else self.rpc.settings_needing_restart()
        return (*fixed, rpc)


def parse_endpoint(text: str, *, min_port: int = 1) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``; raise ValueError if malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("must be host:port, with [brackets] around an IPv6 address")
    port = int(port_text)
    if not min_port <= port <= 65535:
        raise ValueError(f"port must be {min_port}..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("put an IPv6 address in [brackets]")
    return host, port


def _endpoint(reader: ConfigReader, key: str, min_port: int) -> tuple[str, int]:
    reader.require(key)
    value = reader.get_str(key, "")
    try:
        return parse_endpoint(value, min_port=min_port)
    except ValueError as exc:
        reader.error(key, value, str(exc))
        return "", 0


def _fingerprint(reader: ConfigReader, key: str) -> str:
    reader.require(key)
    value = reader.get_str(key, "")
    try:
        return keys.check_fingerprint(value)
    except ConfigError:
        reader.error(key, value, "must be sha256: and 64 hex digits (spoolgate keygen)")
        return ""


def _address(reader: ConfigReader, key: str) -> IPAddress:
    reader.require(key)
    value = reader.get_str(key, "0.0.0.0")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        reader.error(key, value, "must be an IPv4 or IPv6 address")
        return ipaddress.IPv4Address(0)


def _tun_name(reader: ConfigReader, default: str) -> str:
    value = reader.get_str("name", default)
    if not value or len(value.encode()) >= IFNAMSIZ or "/" in value or " " in value:
        reader.error(
            "name", value, f"must be 1..{IFNAMSIZ - 1} characters, no / or space"
        )
        return default
    return value


def _key_files(reader: ConfigReader, base: Path) -> tuple[Path, Path]:
    reader.require("key")
    reader.require("cert")
    key = reader.get_path("key", None, base) or Path()
    cert = reader.get_path("cert", None, base) or Path()
    if reader.has("key") and key != Path():
        setting = reader.key_path("key")
        try:
            check_secret_file(key, setting)
        except ConfigError as exc:
            problem = str(exc).removeprefix(f"{setting} = {str(key)!r}: ")
            reader.error("key", str(key), problem)
    return key, cert


def _timers(reader: ConfigReader) -> Timers:
    keepalive = reader.get_float("keepalive_s", 10.0, min=0.1, max=3600)
    dead = reader.get_float("dead_peer_s", 30.0, min=0.2, max=36000)
    if dead <= keepalive:
        reader.error("dead_peer_s", dead, f"must be > keepalive_s ({keepalive})")
    interval = reader.get_float("drop_log_interval_s", 60.0, min=1, max=86400)
    return Timers(keepalive, dead, interval)


def load_tunnel_config(path: Path) -> TunnelConfig:
    """Read and check a ``spoolgate tunnel`` config file."""
    return build(ConfigReader(load_toml(path), str(path)), _make_tunnel(path.parent))


def _make_tunnel(base: Path) -> Callable[[ConfigReader], TunnelConfig]:
    def make(root: ConfigReader) -> TunnelConfig:
        top = root.table("tunnel")
        host, port = _endpoint(top, "bastion", min_port=1)
        pin = _fingerprint(top, "bastion_fingerprint")
        key, cert = _key_files(top, base)
        timers = _timers(top)
        connect = top.get_float("connect_timeout_s", 10.0, min=0.1, max=600)
        initial = top.get_float("backoff_initial_s", 0.5, min=0.01, max=3600)
        maximum = top.get_float("backoff_max_s", 30.0, min=0.01, max=86400)
        if maximum < initial:
            top.error("backoff_max_s", maximum, "must be >= backoff_initial_s")
        tun = root.table("tun")
        name = _tun_name(tun, "sgtun0")
        address = _address(tun, "address")
        mtu = tun.get_int("mtu", 1500, min=MIN_MTU, max=MAX_PAYLOAD)
        routes = _routes(tun)
        return TunnelConfig(
            host, port, pin, key, cert, name, address, mtu, routes, timers,
            connect, initial, maximum,
        )  # fmt: skip

    return make


def _routes(reader: ConfigReader) -> tuple[IPNetwork, ...]:
    reader.require("routes")
    routes: list[IPNetwork] = []
    for text in reader.get_str_list("routes", ()):
        try:
            routes.append(ipaddress.ip_network(text))
        except ValueError:
            reader.error("routes", text, "must be a network like 10.0.0.5/32")
    if reader.has("routes") and not routes:
        reader.error("routes", [], "must name at least one network")
    return tuple(routes)


def load_bastion_config(path: Path) -> BastionConfig:
    """Read and check a ``spoolgate bastion`` config file."""
    return build(ConfigReader(load_toml(path), str(path)), _make_bastion(path.parent))


def _make_bastion(base: Path) -> Callable[[ConfigReader], BastionConfig]:
    def make(root: ConfigReader) -> BastionConfig:
        top = root.table("bastion")
        # Port 0 lets the kernel pick a free port, which tests rely on.
        host, port = _endpoint(top, "listen", min_port=0)
        key, cert = _key_files(top, base)
        status = top.get_path("status_socket", DEFAULT_STATUS_SOCKET, base)
        handshake = top.get_float("handshake_timeout_s", 10.0, min=0.1, max=600)
        nat = top.get_bool("nat", True)
        timers = _timers(top)
        tun = root.table("tun")
        name = _tun_name(tun, "sgbast0")
        interface = _interface(tun)
        mtu = tun.get_int("mtu", 1500, min=MIN_MTU, max=MAX_PAYLOAD)
        nfs = root.table("nfs")
        server = _address(nfs, "server")
        portmap = nfs.get_int("portmap_port", 111, min=1, max=65535)
        nfs_port = nfs.get_int("nfs_port", 2049, min=1, max=65535)
        mount = nfs.get_int("mount_port", 0, min=0, max=65535)
        # Names of every [[client]] table, valid or not, so that a policy
        # entry for an invalid client reports only the client's own error.
        declared: set[str] = set()
        clients = _clients(root, base, interface, declared)
        rpc = _rpc_setup(root, declared, interface)
        return BastionConfig(
            host, port, key, cert, status or Path(DEFAULT_STATUS_SOCKET), handshake,
            nat, name, interface, mtu, server, portmap, nfs_port, mount, clients,
            timers, rpc,
        )  # fmt: skip

    return make


def _rpc_setup(
    root: ConfigReader, client_names: set[str], interface: IPInterface
) -> RPCSetup | None:
    proxy = read_proxy_config(root, bastion=True)
    login = read_login_config(root)
    if not proxy.enabled:
        for table in ("login", "policy"):
            if root.has(table):
                root.error(
                    table,
                    f"[{table}]",
                    "has no effect while the RPC proxy is off; add "
                    "[[policy.client]] entries or set rpc_proxy.enabled = true",
                )
        return None
    _check_policy_names(root, proxy, client_names)
    if login.host and login.host != str(interface.ip):
        root.error(
            "login.listen",
            f"{login.host}:{login.port}",
            f"the bastion's login service listens on its tun address "
            f'{interface.ip}; give only the port, like ":{login.port}"',
        )
    if login.port == proxy.port:
        root.error(
            "login.listen",
            f":{login.port}",
            f"uses rpc_proxy.port ({proxy.port}); pick another port",
        )
    login = dataclasses.replace(login, host=str(interface.ip))
    return RPCSetup(proxy.policy, proxy.proxy, proxy.port, login, proxy.process)


def _check_policy_names(
    root: ConfigReader, proxy: ProxyConfig, names: set[str]
) -> None:
    for index, rule in enumerate(proxy.policy.clients):
        if rule.name and rule.name not in names:
            root.error(
                f"policy.client[{index}].name",
                rule.name,
                "names no [[client]] entry; policy entries must use a client's name",
            )


def _interface(reader: ConfigReader) -> IPInterface:
    reader.require("address")
    value = reader.get_str("address", "0.0.0.0/32")
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError:
        reader.error("address", value, "must be an address/prefix like 10.8.0.1/24")
        return ipaddress.IPv4Interface("0.0.0.0/32")
    if interface.network.num_addresses < 4:
        reader.error("address", value, "network must hold the clients' addresses")
    return interface


def _clients(
    root: ConfigReader, base: Path, interface: IPInterface, declared: set[str]
) -> tuple[ClientEntry, ...]:
    """Read the valid [[client]] entries; add every name given to ``declared``."""
    entries: list[ClientEntry] = []
    seen_names: set[str] = set()
    seen_pins: set[str] = set()
    seen_addresses: set[IPAddress] = {interface.ip}
    for reader in root.tables("client"):
        entry = _client(reader, base, interface, declared)
        if entry is None:
            continue
        if entry.name in seen_names:
            reader.error("name", entry.name, "is used by another client")
        if entry.fingerprint in seen_pins:
            reader.error("fingerprint", entry.fingerprint, "is used by another client")
        if entry.address in seen_addresses:
            reader.error("address", str(entry.address), "is already taken")
        seen_names.add(entry.name)
        seen_pins.add(entry.fingerprint)
        seen_addresses.add(entry.address)
        entries.append(entry)
    return tuple(entries)


def _client(
    reader: ConfigReader, base: Path, interface: IPInterface, declared: set[str]
) -> ClientEntry | None:
    reader.require("name")
    reader.require("cert")
    name = reader.get_str("name", "")
    if name:
        declared.add(name)
    pin = _fingerprint(reader, "fingerprint")
    address = _address(reader, "address")
    if reader.has("address") and address not in interface.network:
        reader.error("address", str(address), f"must be inside {interface.network}")
    cert_path = reader.get_path("cert", None, base)
    if cert_path is None or not name or not pin:
        return None
    try:
        cert = keys.load_cert_pem(cert_path)
    except ConfigError as exc:
        reader.error("cert", str(cert_path), str(exc))
        return None
    found = keys.cert_fingerprint(cert)
    if found != pin:
        reader.error("fingerprint", pin, f"does not match {cert_path} ({found})")
        return None
    return ClientEntry(name, pin, address, cert_path.read_text())
