"""Routes from the lab's client to falcon for bench/nfs.py.

A route sets up whatever carries the client's NFS traffic (nothing, a tunnel,
a relay), returns the address the client connects to, lists the processes
whose CPU time is charged to it, and removes all of it afterwards.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lab import TUNNEL_NET_PREFIX, Lab, LabError
from spoolgate.errors import SpoolgateError
from spoolgate.tunnel import keys
from spoolgate.tunnel.status import query_status

TUNNEL_PORT = 7443
START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """Address (and NFSv3 port overrides) for the client's NFS calls."""

    host: str
    v3_params: dict[str, int] = field(default_factory=dict)


class Route(Protocol):
    """A way from the lab's client to falcon, set up and torn down per run."""

    name: str
    # False: the lab starts with LAB_FORWARD=0, so no plain path exists and
    # the route's own programs must carry every packet.
    lab_forward: bool

    def start(self, lab: Lab, workdir: Path) -> Target:
        """Start the route's processes and return where the client connects."""
        ...

    def tunnel_pids(self) -> list[int]:
        """Return the PIDs whose CPU time counts as the route's cost."""
        ...

    def check_carried(self, lab: Lab, nbytes: int) -> None:
        """Raise RuntimeError unless the route carried at least NBYTES."""
        ...

    def stop(self) -> None:
        """Stop every process `start` started (by PID)."""
        ...


class PlainRoute:
    """The bastion's kernel forwarding: the baseline without a tunnel."""

    name = "plain"
    lab_forward = True

    def start(self, lab: Lab, workdir: Path) -> Target:
        return Target(lab.config.falcon_ip)

    def tunnel_pids(self) -> list[int]:
        return []

    def check_carried(self, lab: Lab, nbytes: int) -> None:
        return None

    def stop(self) -> None:
        return None


class SpoolgateTunnelRoute:
    """``spoolgate bastion`` in the bastion, ``spoolgate tunnel`` in the client.

    The lab starts with LAB_FORWARD=0, so NFS reaches falcon only through the
    tunnel. Keys come from spoolgate's own keygen code, made fresh per run in
    a temporary folder. With PROFILE_DIR set, both processes run under
    cProfile and write ``NAME-bastion.prof`` and ``NAME-tunnel.prof`` there on
    exit.
    With SOURCE set (the ``src`` folder of another checkout), both processes
    import spoolgate from there, and the route is named NAME, so two versions
    can be compared in one run.
    """

    lab_forward = False

    def __init__(
        self,
        profile_dir: Path | None = None,
        source: Path | None = None,
        name: str = "spoolgate",
    ) -> None:
        self.name = name
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._status: Path | None = None
        self._profile_dir = profile_dir
        self._source = source

    def start(self, lab: Lab, workdir: Path) -> Target:
        self._tmp = tempfile.TemporaryDirectory(prefix="spoolgate-", dir=workdir)
        folder = Path(self._tmp.name)
        status = self._status = folder / "status.sock"
        bastion_config, tunnel_config = write_tunnel_configs(folder, lab, status)
        self._start_one(lab, "bastion", bastion_config, folder / "bastion.log")
        _poll(lambda: _status_or_none(status) is not None, "bastion status")
        self._start_one(lab, "tunnel", tunnel_config, folder / "tunnel.log")
        _poll(lambda: len(self._sessions()) == 1, "the tunnel session")
        return Target(lab.config.falcon_ip)

    def _start_one(self, lab: Lab, command: str, config: Path, log: Path) -> None:
        role = "bastion" if command == "bastion" else "client"
        prefix = [sys.executable]
        if self._source is not None:
            prefix = ["env", f"PYTHONPATH={self._source}", *prefix]
        if self._profile_dir is not None:
            output = self._profile_dir / f"{self.name}-{command}.prof"
            prefix += ["-m", "cProfile", "-o", str(output)]
        argv = [*prefix, "-m", "spoolgate", command, "--config", str(config)]
        self._processes[command] = lab.popen(role, argv, log_path=log)

    def _sessions(self) -> list[dict[str, object]]:
        status = _status_or_none(self._status) if self._status else None
        sessions = status.get("sessions", []) if status else []
        return sessions if isinstance(sessions, list) else []

    def tunnel_pids(self) -> list[int]:
        return [process.pid for process in self._processes.values()]

    def check_carried(self, lab: Lab, nbytes: int) -> None:
        carried = sum(
            int(str(s["bytes_in"])) + int(str(s["bytes_out"])) for s in self._sessions()
        )
        if carried < nbytes:
            raise RuntimeError(
                f"spoolgate: the tunnel session carried {carried} bytes, expected "
                f"at least {nbytes}: NFS traffic bypassed the tunnel"
            )

    def stop(self) -> None:
        # The client stops first, so it does not retry a bastion that is gone.
        for name in ("tunnel", "bastion"):
            process = self._processes.pop(name, None)
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def write_tunnel_configs(folder: Path, lab: Lab, status: Path) -> tuple[Path, Path]:
    """Write keys and the bastion and tunnel configs into FOLDER; return both."""
    now = datetime.datetime.now(datetime.UTC)
    bastion = keys.write_key_pair(folder, "bastion", now=now, days=2)
    client = keys.write_key_pair(folder, "client", now=now, days=2)
    config = lab.config
    bastion_config = folder / "bastion.toml"
    bastion_config.write_text(
        "[bastion]\n"
        f'listen = "{config.bastion_client_ip}:{TUNNEL_PORT}"\n'
        'key = "bastion.key"\ncert = "bastion.crt"\n'
        f'status_socket = "{status}"\n'
        "[tun]\n"
        f'address = "{TUNNEL_NET_PREFIX}.1/24"\n'
        "[nfs]\n"
        f'server = "{config.falcon_ip}"\n'
        f"mount_port = {config.mnt_port}\n"
        "[[client]]\n"
        'name = "bench"\ncert = "client.crt"\n'
        f'fingerprint = "{client.fingerprint}"\n'
        f'address = "{TUNNEL_NET_PREFIX}.2"\n'
    )
    tunnel_config = folder / "tunnel.toml"
    tunnel_config.write_text(
        "[tunnel]\n"
        f'bastion = "{config.bastion_client_ip}:{TUNNEL_PORT}"\n'
        f'bastion_fingerprint = "{bastion.fingerprint}"\n'
        'key = "client.key"\ncert = "client.crt"\n'
        "backoff_initial_s = 0.1\nbackoff_max_s = 1.0\n"
        "[tun]\n"
        f'address = "{TUNNEL_NET_PREFIX}.2"\n'
        f'routes = ["{config.falcon_ip}/32"]\n'
    )
    return bastion_config, tunnel_config


def _status_or_none(path: Path) -> dict[str, object] | None:
    try:
        return query_status(path, timeout=2.0)
    except SpoolgateError:
        return None


def _poll(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f"spoolgate: no {what} after {START_TIMEOUT_S:g} s")
        time.sleep(0.05)
