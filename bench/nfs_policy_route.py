"""The tunnel with RPC policy on, as a route for bench/nfs.py.

Like the ``spoolgate`` route, with a ``[[policy.client]]`` entry in the
bastion's config, so every RPC call passes the bastion's RPC proxy and its
policy checks. The benchmark's nfs-cp runs as root and sends uid 0, so the
policy allows root for the client (``allow_root``) and root logs in with a
throw-away SSH key. The key's authorized-keys file lives in the route's
temporary folder (``login.authorized_keys``), so no account on the host
changes. ``nfs4 = "enforce"`` lets the NFSv4 read through, checked path by
path.

``bench/nfs.py --profile`` profiles the ``spoolgate`` route only; set
``SPOOLGATE_PROFILE_DIR=DIR`` to run this route's bastion and tunnel under
cProfile too, writing ``spoolgate-policy-bastion.prof`` and
``spoolgate-policy-tunnel.prof`` into DIR. ``SPOOLGATE_RPC_PROCESS=inline``
sets ``rpc_proxy.process = "inline"``, running the proxy on the relay's
event loop, instead of the default child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab import TUNNEL_NET_PREFIX, Lab
from nfs_routes import (
    SpoolgateTunnelRoute,
    Target,
    _poll,
    _status_or_none,
    write_tunnel_configs,
)

LOGIN_PORT = 7451
BASTION_TUN = f"{TUNNEL_NET_PREFIX}.1"


class SpoolgatePolicyRoute(SpoolgateTunnelRoute):
    """``spoolgate bastion`` with RPC policy, ``spoolgate tunnel``, root logged in."""

    def __init__(self) -> None:
        profile = os.environ.get("SPOOLGATE_PROFILE_DIR")
        super().__init__(
            profile_dir=Path(profile).resolve() if profile else None,
            name="spoolgate-policy",
        )

    _cpu_start: dict[int, float] | None = None

    def _print_cpu_per_process(self, nbytes: int) -> None:
        """Print each process's CPU s/GiB over all timed copies, to stderr."""
        if not self._cpu_start:
            return
        parts = []
        for pid, before in self._cpu_start.items():
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            role = next((_ROLES[word] for word in argv if word in _ROLES), str(pid))
            used = _cpu_seconds(pid) - before
            parts.append(f"{role} {used / (nbytes / GIB):.2f}")
        print(
            f"{self.name} CPU s/GiB per process over the timed copies: "
            + ", ".join(parts),
            file=sys.stderr,
        )
        self._cpu_start = None

    def start(self, lab: Lab, workdir: Path) -> Target:
        self._tmp = tempfile.TemporaryDirectory(prefix="spoolgate-", dir=workdir)
        folder = Path(self._tmp.name)
        status = self._status = folder / "status.sock"
        bastion_config, tunnel_config = write_tunnel_configs(folder, lab, status)
        add_policy(folder, bastion_config, tunnel_config)
        self._start_one(lab, "bastion", bastion_config, folder / "bastion.log")
        _poll(lambda: _status_or_none(status) is not None, "bastion status")
        self._start_one(lab, "tunnel", tunnel_config, folder / "tunnel.log")
        _poll(lambda: len(self._sessions()) == 1, "the tunnel session")
        log_in_root(lab, folder / "id_ed25519")
        return Target(lab.config.falcon_ip)

    def tunnel_pids(self) -> list[int]:
        """Return the bastion, its RPC services child (if any) and the tunnel."""
        pids = super().tunnel_pids()
        found = [*pids, *(child for pid in pids for child in _children(pid))]
        if self._cpu_start is None:
            # First call: right before the first timed copy.
            self._cpu_start = {pid: _cpu_seconds(pid) for pid in found}
        return found

    def check_carried(self, lab: Lab, nbytes: int) -> None:
        self._print_cpu_per_process(nbytes)
        super().check_carried(lab, nbytes)
        status = _status_or_none(self._status) if self._status else None
        rpc = status.get("rpc_policy") if status else None
        proxy = rpc.get("proxy") if isinstance(rpc, dict) else None
        replies = proxy.get("replies", 0) if isinstance(proxy, dict) else 0
        if not replies:
            raise RuntimeError(
                "spoolgate-policy: the bastion's RPC proxy relayed no replies: "
                "NFS traffic bypassed the proxy"
            )


GIB = 1 << 30
_ROLES = {
    b"bastion": "bastion",
    b"tunnel": "tunnel",
    b"spoolgate.tunnel.rpcservices": "rpc-child",
}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(word) for word in path.read_text().split()]
    except FileNotFoundError:
        return []


def _cpu_seconds(pid: int) -> float:
    """Return utime + stime of PID in seconds (fields 14 and 15 of stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def add_policy(folder: Path, bastion_config: Path, tunnel_config: Path) -> None:
    """Turn RPC policy on in the configs and authorize a new SSH key for root."""
    key = folder / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    keys_file = folder / "root.keys"
    keys_file.write_text(Path(f"{key}.pub").read_text())
    keys_file.chmod(0o644)
    folder.chmod(0o755)
    process = os.environ.get("SPOOLGATE_RPC_PROCESS", "separate")
    with bastion_config.open("a") as config:
        config.write(
            "[rpc_proxy]\n"
            'nfs4 = "enforce"\n'
            f'process = "{process}"\n'
            "[login]\n"
            f'listen = ":{LOGIN_PORT}"\n'
            'methods = ["ssh-key"]\n'
            f'authorized_keys = "{folder}/%u.keys"\n'
            "[[policy.client]]\n"
            'name = "bench"\n'
            'exports = ["/export"]\n'
            'users = ["root"]\n'
            "allow_root = true\n"
        )
    # The login service is reached through the tunnel, at the bastion's
    # tun address.
    text = tunnel_config.read_text()
    tunnel_config.write_text(
        text.replace("routes = [", f'routes = ["{BASTION_TUN}/32", ', 1)
    )


def log_in_root(lab: Lab, key: Path) -> None:
    """Bind uid 0 to the client with ``spoolgate login --ssh-key``."""
    argv = [
        sys.executable, "-m", "spoolgate", "login",
        "--server", f"{BASTION_TUN}:{LOGIN_PORT}", "--user", "root",
        "--ssh-key", str(key),
    ]  # fmt: skip
    lab.run("client", argv, timeout=60)
