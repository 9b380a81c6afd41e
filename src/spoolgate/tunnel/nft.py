"""The bastion's kernel setup: IP forwarding and one nftables table of its own.

Without the RPC proxy the table masquerades tunnel traffic toward the NFS
server, so the server sees the bastion as its client, and repeats the port
filter in the forward hook. Toward the tun device it forwards only packets
of connections a client opened, so hosts on the server's side cannot open
connections to client hosts through the tunnel. With the proxy
(:func:`proxy_ruleset`) it redirects that traffic to the proxy's port
instead and forwards nothing from or to the tun device; the proxy
connects to the server from the bastion's own address.
``NatRules.install`` replaces a stale table of the same name left by a
crash; ``remove`` deletes the table and restores the forwarding setting.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from collections.abc import Iterable
from pathlib import Path

from spoolgate.errors import TunnelError

log = logging.getLogger(__name__)

FORWARDING_SYSCTL = {
    4: Path("/proc/sys/net/ipv4/ip_forward"),
    6: Path("/proc/sys/net/ipv6/conf/all/forwarding"),
}


def table_name(tun_name: str) -> str:
    """Return the nftables table name for a bastion on tun device ``tun_name``."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in tun_name)
    return f"spoolgate_{safe}"


def ruleset(
    table: str,
    tun_name: str,
    tun_network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    server: ipaddress.IPv4Address | ipaddress.IPv6Address,
    ports: Iterable[int],
) -> str:
    """Return the ``nft -f`` script that (re)creates the bastion's table."""
    family = "ip" if server.version == 4 else "ip6"
    port_set = ", ".join(str(p) for p in sorted(set(ports)))
    # "add" then "delete" removes a stale table without failing if none exists.
    return f"""\
add table inet {table}
delete table inet {table}
table inet {table} {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{tun_name}" {family} daddr {server} tcp dport {{ {port_set} }} accept
        iifname "{tun_name}" drop
        oifname "{tun_name}" ct state established,related accept
        oifname "{tun_name}" drop
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        {family} saddr {tun_network} {family} daddr {server} masquerade
    }}
}}
"""


def proxy_ruleset(
    table: str,
    tun_name: str,
    tun_address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    server: ipaddress.IPv4Address | ipaddress.IPv6Address,
    ports: Iterable[int],
    service_ports: tuple[int, int],
) -> str:
    """Return the ``nft -f`` script of a bastion whose RPC proxy is on.

    TCP from the tun device to the server's RPC ports is redirected to the
    proxy's port on the tun address, and nothing is forwarded from or to the
    tun device, so no packet reaches the server past the proxy and no host
    behind the bastion reaches a client host.
    ``service_ports`` are the proxy's and the login service's ports. They
    take connections from the tun device only, because both services
    identify a client by its tunnel source address.
    """
    family = "ip" if server.version == 4 else "ip6"
    own = "ip" if tun_address.version == 4 else "ip6"
    port_set = ", ".join(str(p) for p in sorted(set(ports)))
    proxy_port, login_port = service_ports
    match = f'iifname "{tun_name}" {family} daddr {server} tcp dport {{ {port_set} }}'
    outside = (
        f'iifname != "{tun_name}" {own} daddr {tun_address} '
        f"tcp dport {{ {proxy_port}, {login_port} }}"
    )
    return f"""\
add table inet {table}
delete table inet {table}
table inet {table} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        {match} redirect to :{proxy_port}
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        {outside} drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{tun_name}" drop
        oifname "{tun_name}" drop
    }}
}}
"""


def run_nft(script: str) -> None:
    """Feed ``script`` to ``nft -f -``; raise TunnelError with its stderr."""
    try:
        subprocess.run(
            ["nft", "-f", "-"], input=script, check=True, capture_output=True, text=True
        )
    except FileNotFoundError as exc:
        raise TunnelError("cannot run nft: not installed (Debian: nftables)") from exc
    except subprocess.CalledProcessError as exc:
        raise TunnelError(f"nft -f failed: {exc.stderr.strip()}") from exc


class NatRules:
    """Forwarding plus the nftables table, installed once and removed on exit.

    With ``forwarding`` False the forwarding setting is left alone, as a
    bastion with the RPC proxy needs no forwarding.
    """

    def __init__(
        self, table: str, script: str, ip_version: int, *, forwarding: bool = True
    ) -> None:
        self.table = table
        self._script = script
        self._sysctl = FORWARDING_SYSCTL[ip_version]
        self._forwarding = forwarding
        self._old_forwarding: str | None = None
        self._installed = False

    def install(self) -> None:
        """Enable forwarding (if asked) and load the table."""
        if self._forwarding:
            self._enable_forwarding()
        run_nft(self._script)
        self._installed = True
        log.info("nftables table added table=inet/%s", self.table)

    def _enable_forwarding(self) -> None:
        try:
            self._old_forwarding = self._sysctl.read_text().strip()
            self._sysctl.write_text("1\n")
        except OSError as exc:
            raise TunnelError(
                f"cannot enable forwarding in {self._sysctl}: {exc.strerror}; "
                "run as root"
            ) from exc

    def remove(self) -> None:
        """Delete the table and restore forwarding; log and go on if one fails."""
        if self._installed:
            try:
                run_nft(f"delete table inet {self.table}\n")
                log.info("nftables table deleted table=inet/%s", self.table)
            except TunnelError as exc:
                log.error("cannot delete nftables table inet/%s: %s", self.table, exc)
            self._installed = False
        if self._old_forwarding is not None:
            try:
                self._sysctl.write_text(self._old_forwarding + "\n")
            except OSError as exc:
                log.error("cannot restore %s: %s", self._sysctl, exc.strerror)
            self._old_forwarding = None
