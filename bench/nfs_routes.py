"""Routes from the lab's client to falcon for bench/nfs.py.

A route sets up whatever carries the client's NFS traffic (nothing, a tunnel,
a relay), returns the address the client connects to, lists the processes
whose CPU time is charged to it, and removes all of it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lab import Lab


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
