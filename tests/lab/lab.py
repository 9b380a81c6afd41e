"""Bring the three-namespace NFS lab up and down and run commands inside it.

A thin Python face for ``nfs-lab.sh`` beside this file, used by the namespace
tests and the NFS benchmarks. Standard library only. Each `Lab` has its own
namespace prefix, /24 nets and state directory, so several labs can run at
once; `random_config` picks values that do not collide with leftovers.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

LAB_DIR = Path(__file__).resolve().parent
LAB_SCRIPT = LAB_DIR / "nfs-lab.sh"
RPC_PROBE = LAB_DIR / "rpc-probe.py"
TCP_RELAY = LAB_DIR / "tcp_relay.py"

ROLES = ("client", "bastion", "falcon")

# Programs the lab runs. The script can apt-get them, but tests never install
# packages: they skip instead (scripts/install-test-deps.sh installs them).
REQUIRED_PROGRAMS = (
    "ip",
    "nft",
    "ganesha.nfsd",
    "rpcbind",
    "rpcinfo",
    "nfs-cp",
    "nfs-ls",
)

# Labs from random_config use nets 10.210.1-100.0/24. Addresses in
# 10.210.128.0/17 are left for tunnel interfaces: they are inside the lab's
# /16 supernet, so falcon routes replies to them through the bastion.
TUNNEL_NET_PREFIX = "10.210.200"


class LabError(RuntimeError):
    """A lab command failed or timed out; the message carries its output."""


@dataclass(frozen=True, slots=True)
class LabConfig:
    """Names, addresses and options of one lab (the script's LAB_* variables)."""

    state: Path
    prefix: str = "sgl"
    net1: str = "10.210.1"
    net2: str = "10.210.2"
    forward: bool = True
    mnt_port: int = 20048

    @property
    def client_ip(self) -> str:
        return f"{self.net1}.2"

    @property
    def bastion_client_ip(self) -> str:
        return f"{self.net1}.1"

    @property
    def bastion_falcon_ip(self) -> str:
        return f"{self.net2}.1"

    @property
    def falcon_ip(self) -> str:
        return f"{self.net2}.2"

    @property
    def export_dir(self) -> Path:
        return self.state / "export"

    def namespace(self, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown lab role {role!r}: expected one of {ROLES}")
        return f"{self.prefix}-{role}"

    def environment(self) -> dict[str, str]:
        return {
            "LAB_PREFIX": self.prefix,
            "LAB_STATE": str(self.state),
            "LAB_NET1": self.net1,
            "LAB_NET2": self.net2,
            "LAB_FORWARD": "1" if self.forward else "0",
            "LAB_MNT_PORT": str(self.mnt_port),
            "LAB_INSTALL": "0",
        }


def random_config(
    state_root: Path,
    *,
    forward: bool = True,
    rng: random.Random | None = None,
    stem: str = "sgl",
    net_base: str = "10.210",
) -> LabConfig:
    """Pick a prefix and nets no other lab on this host is likely to use.

    The prefix is STEM and four hex digits; the two /24s are picked from
    NET_BASE.1.0 to NET_BASE.100.0, so NET_BASE.128.0/17 stays free for
    tunnel addresses.
    """
    rng = rng or random.Random()
    for _ in range(20):
        prefix = f"{stem}{rng.randrange(16**4):04x}"
        if not any(Path("/run/netns", f"{prefix}-{r}").exists() for r in ROLES):
            break
    else:
        raise LabError(
            f"no free lab prefix after 20 tries: remove leftover {stem}* netns"
        )
    pair = rng.randrange(50)
    return LabConfig(
        state=state_root / prefix,
        prefix=prefix,
        net1=f"{net_base}.{2 * pair + 1}",
        net2=f"{net_base}.{2 * pair + 2}",
        forward=forward,
    )


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    """Poll until PATH exists; raise LabError after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise LabError(f"{path} did not appear within {timeout:g} s")
        time.sleep(0.05)


def missing_requirements() -> str | None:
    """Return why the lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the NFS lab needs root (network namespaces)"
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        return (
            f"the NFS lab needs {', '.join(missing)}: "
            "run scripts/install-test-deps.sh as root"
        )
    return None


class Lab:
    """One lab: `up`, run commands in its namespaces, `down` (also on exit)."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self, timeout: float = 120.0) -> None:
        """Create the namespaces and start falcon's NFS server.

        A failed or timed-out `up` is followed by `down`, so nothing is left.
        """
        self.config.state.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._script("up", timeout=timeout)
        except LabError:
            self.down()
            raise

    def down(self, timeout: float = 120.0) -> None:
        """Stop every process in the lab's namespaces, delete them and the state.

        Safe to call twice, and after a failed `up`.
        """
        self._script("down", timeout=timeout)

    def status(self) -> subprocess.CompletedProcess[str]:
        return self._script("status", timeout=60, check=False)

    def run(
        self,
        role: str,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ARGV in the ROLE namespace and wait at most TIMEOUT seconds."""
        command = ["ip", "netns", "exec", self.config.namespace(role), *argv]
        return _run(command, timeout=timeout, check=check)

    def popen(
        self, role: str, argv: Sequence[str], *, log_path: Path
    ) -> subprocess.Popen[bytes]:
        """Start a long-running ARGV in the ROLE namespace, output to LOG_PATH.

        `ip netns exec` replaces itself with ARGV, so the returned PID is the
        program's own. The caller stops it; `down` also stops anything left.
        """
        command = ["ip", "netns", "exec", self.config.namespace(role), *argv]
        with log_path.open("ab") as log:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def nfs_url(
        self,
        path: str,
        *,
        version: int = 3,
        host: str | None = None,
        params: Mapping[str, int] | None = None,
    ) -> str:
        """Return a libnfs URL for PATH under falcon's /export.

        HOST defaults to falcon; PARAMS adds query keys such as uid, gid,
        nfsport and mountport (libnfs 4.0 accepts them in any order).
        """
        query = {"version": version, **(params or {})}
        joined = "&".join(f"{key}={value}" for key, value in query.items())
        target = host or self.config.falcon_ip
        return f"nfs://{target}/export/{path.lstrip('/')}?{joined}"

    def _script(
        self, command: str, *, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.config.environment()}
        return _run([str(LAB_SCRIPT), command], timeout=timeout, check=check, env=env)


def _run(
    command: Sequence[str],
    *,
    timeout: float,
    check: bool,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(
            f"{' '.join(command)}: timed out after {timeout:g} s; "
            f"output: {_tail(exc.stdout)} {_tail(exc.stderr)}"
        ) from exc
    if check and result.returncode != 0:
        raise LabError(
            f"{' '.join(command)}: exit status {result.returncode}; "
            f"stdout: {_tail(result.stdout)}; stderr: {_tail(result.stderr)}"
        )
    return result


def _tail(output: str | bytes | None, limit: int = 2000) -> str:
    if output is None:
        return ""
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return output[-limit:].strip()


MakeLab = Callable[..., Lab]
"""A fixture function that brings up a new lab: ``make_lab(forward=False)``."""
