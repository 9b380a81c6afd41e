"""Open and configure tun devices, behind a small interface tests can fake.

The relay code needs only ``PacketDevice``: a non-blocking file descriptor
that reads and writes one IP packet per call. ``open_tun`` gives a real tun
device (``IFF_TUN | IFF_NO_PI``, so packets carry no extra header). A
``SOCK_SEQPACKET`` socket pair keeps packet boundaries the same way, which
is what the tests pass instead.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import socket
import struct
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from spoolgate.errors import TunnelError

log = logging.getLogger(__name__)

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int) from linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TUN_PATH = "/dev/net/tun"

# Packets taken from the device per event-loop wakeup: enough to fill a
# large TLS write, small enough that one busy direction cannot starve the other.
READ_BATCH = 128

# Packets the kernel queues for our reader (txqueuelen). The kernel's default
# for tun devices is 500, which at 70,000 packets/s (about 100 MB/s of
# 1500-byte packets) lasts 7 ms: a relay process that the scheduler leaves
# waiting that long loses packets and TCP inside the tunnel backs off. 4096
# packets last about 60 ms and take at most 6 MiB at MTU 1500.
TX_QUEUE_LEN = 4096


class PacketDevice(Protocol):
    """A non-blocking source and sink of IP packets (a tun device or a fake)."""

    @property
    def name(self) -> str: ...

    def fileno(self) -> int: ...

    def read_batch(self) -> list[bytes]: ...

    def write(self, packet: bytes) -> bool: ...

    def close(self) -> None: ...


class FdDevice:
    """A ``PacketDevice`` on a non-blocking file descriptor it owns."""

    __slots__ = ("_fd", "_name", "_read_size")

    def __init__(self, fd: int, name: str, mtu: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._name = name
        self._read_size = mtu

    @property
    def name(self) -> str:
        """The interface name."""
        return self._name

    def fileno(self) -> int:
        """Return the file descriptor, for ``loop.add_reader``."""
        return self._fd

    def read_batch(self) -> list[bytes]:
        """Read packets until the device is empty or READ_BATCH are read."""
        packets: list[bytes] = []
        read = os.read
        fd = self._fd
        size = self._read_size
        for _ in range(READ_BATCH):
            try:
                packet = read(fd, size)
            except BlockingIOError:
                break
            if not packet:
                break
            packets.append(packet)
        return packets

    def write(self, packet: bytes) -> bool:
        """Write one packet; return False if the device cannot take it now."""
        try:
            os.write(self._fd, packet)
        except (BlockingIOError, OSError):
            # EINVAL/EIO for a packet the kernel rejects: a drop, like a full queue.
            return False
        return True

    def close(self) -> None:
        """Close the descriptor; the kernel removes a non-persistent tun device."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_tun(name: str, mtu: int) -> FdDevice:
    """Create the tun device ``name`` (needs CAP_NET_ADMIN) and return it."""
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TunnelError(
            f"cannot open {TUN_PATH}: {exc.strerror}; load the tun module and run "
            "as root or with CAP_NET_ADMIN"
        ) from exc
    request = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    try:
        fcntl.ioctl(fd, TUNSETIFF, request)
    except OSError as exc:
        os.close(fd)
        raise TunnelError(
            f"cannot create tun device {name}: {exc.strerror}; check that no other "
            "program uses that name and that we run with CAP_NET_ADMIN"
        ) from exc
    return FdDevice(fd, name, mtu)


def fake_device_pair(name: str, mtu: int) -> tuple[FdDevice, socket.socket]:
    """Return a fake device and the socket the test reads and writes packets on."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    for sock in (ours, theirs):
        # A tun device queues 500 packets by default (txqueuelen); give the
        # fake about as much room.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return FdDevice(ours.detach(), name, mtu), theirs


def run_ip(args: Sequence[str]) -> None:
    """Run ``ip ARGS``; raise TunnelError with its stderr if it fails."""
    command = ["ip", *args]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise TunnelError("cannot run ip: not installed (Debian: iproute2)") from exc
    except subprocess.CalledProcessError as exc:
        raise TunnelError(
            f"{' '.join(command)} failed: {exc.stderr.strip() or exc.returncode}"
        ) from exc


def configure(
    name: str,
    mtu: int,
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
    routes: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> None:
    """Set up tun device ``name``: MTU, queue length, address, link up, routes."""
    if interface.version == 4:
        _disable_ipv6(name)
    run_ip(
        ["link", "set", "dev", name, "mtu", str(mtu), "txqueuelen", str(TX_QUEUE_LEN)]
    )
    run_ip(["addr", "add", str(interface), "dev", name])
    run_ip(["link", "set", "dev", name, "up"])
    for route in routes:
        # An explicit source keeps the kernel from picking another interface's
        # address, which the bastion would drop as spoofed.
        source = (
            ["src", str(interface.ip)] if route.version == interface.version else []
        )
        run_ip(["route", "replace", str(route), "dev", name, *source])
    log.info("tun up dev=%s address=%s mtu=%d", name, interface, mtu)


def _disable_ipv6(name: str) -> None:
    # Without this the kernel sends router and multicast listener messages
    # into an IPv4-only tunnel, where the bastion counts them as drops.
    path = Path("/proc/sys/net/ipv6/conf") / name / "disable_ipv6"
    try:
        path.write_text("1\n")
    except OSError as exc:
        log.info("cannot disable IPv6 on dev=%s: %s", name, exc.strerror)
