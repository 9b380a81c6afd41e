"""OpenVPN as a route for bench/nfs.py: the user-space TCP tunnel baseline.

OpenVPN 2.6 (Debian package) runs in TCP mode, in user space (`disable-dco`),
with TLS on the control channel, AES-256-GCM on the data channel and
`tcp-nodelay`. The server runs in the lab's bastion, the client in the lab's
client namespace. The lab starts with LAB_FORWARD=0, so the kernel forwards
only what arrives on the bastion's tun device. A throw-away PKI (EC P-256,
valid two days) and both configs are made with openssl in a temporary folder,
which is removed with the route.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from lab import TUNNEL_NET_PREFIX, Lab, LabError
from nfs_routes import Target

PORT = 1194
DEVICE = "sgvpn0"
READY_TEXT = "Initialization Sequence Completed"
START_TIMEOUT_S = 30.0

SERVER_CONFIG = """\
mode server
tls-server
proto tcp-server
local {listen}
port {port}
dev {device}
dev-type tun
topology subnet
server {tunnel_net}.0 255.255.255.0
push "route {falcon_net}.0 255.255.255.0"
ca {pki}/ca.crt
cert {pki}/server.crt
key {pki}/server.key
dh none
data-ciphers AES-256-GCM
tcp-nodelay
disable-dco
keepalive 10 60
verb 3
"""

CLIENT_CONFIG = """\
client
proto tcp-client
remote {server} {port}
nobind
dev {device}
dev-type tun
ca {pki}/ca.crt
cert {pki}/client.crt
key {pki}/client.key
remote-cert-tls server
data-ciphers AES-256-GCM
disable-dco
verb 3
"""

EXTENSIONS = {
    "server": "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    "client": "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
}


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(pki: Path) -> None:
    """Write a CA and a server and a client certificate with keys into PKI."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *ec,
        "-days",
        "2",
        "-subj",
        "/CN=bench-ca",
        "-keyout",
        str(pki / "ca.key"),
        "-out",
        str(pki / "ca.crt"),
    )
    for name, extensions in EXTENSIONS.items():
        (pki / f"{name}.ext").write_text(extensions)
        openssl(
            "req",
            *ec,
            "-subj",
            f"/CN=bench-{name}",
            "-keyout",
            str(pki / f"{name}.key"),
            "-out",
            str(pki / f"{name}.csr"),
        )
        openssl(
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            str(pki / f"{name}.csr"),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-CAcreateserial",
            "-extfile",
            str(pki / f"{name}.ext"),
            "-out",
            str(pki / f"{name}.crt"),
        )


def wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Poll the log at PATH until it contains TEXT; fail if PROCESS exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None:
            raise LabError(f"openvpn exited with {process.returncode}; see {path}")
        if time.monotonic() > deadline:
            raise LabError(f"openvpn not ready after {START_TIMEOUT_S:g} s; see {path}")
        time.sleep(0.05)


class OpenVpnRoute:
    """OpenVPN server in the bastion, client in the client namespace."""

    name = "openvpn"
    lab_forward = False

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self, lab: Lab, workdir: Path) -> Target:
        if shutil.which("openvpn") is None or shutil.which("openssl") is None:
            raise LabError("the openvpn route needs the openvpn and openssl packages")
        self._tmp = tempfile.TemporaryDirectory(prefix="openvpn-", dir=workdir)
        folder = Path(self._tmp.name)
        make_pki(folder)
        config = lab.config
        values = {"port": PORT, "device": DEVICE, "pki": folder}
        (folder / "server.conf").write_text(
            SERVER_CONFIG.format(
                listen=config.bastion_client_ip,
                tunnel_net=TUNNEL_NET_PREFIX,
                falcon_net=config.net2,
                **values,
            )
        )
        (folder / "client.conf").write_text(
            CLIENT_CONFIG.format(server=config.bastion_client_ip, **values)
        )

        # OpenVPN's server mode hands packets to the kernel, which forwards
        # them from the tun device to falcon (the client link stays blocked).
        lab.run("bastion", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self._start_one(lab, "bastion", folder / "server.conf", folder / "server.log")
        wait_for_text(folder / "server.log", READY_TEXT, self._processes[-1])
        self._start_one(lab, "client", folder / "client.conf", folder / "client.log")
        wait_for_text(folder / "client.log", READY_TEXT, self._processes[-1])
        return Target(config.falcon_ip)

    def _start_one(self, lab: Lab, role: str, config: Path, log: Path) -> None:
        log.touch()
        process = lab.popen(role, ["openvpn", "--config", str(config)], log_path=log)
        self._processes.append(process)

    def tunnel_pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def check_carried(self, lab: Lab, nbytes: int) -> None:
        carried = 0
        for name in ("rx_bytes", "tx_bytes"):
            counter = f"/sys/class/net/{DEVICE}/statistics/{name}"
            carried += int(lab.run("client", ["cat", counter]).stdout)
        if carried < nbytes:
            raise RuntimeError(
                f"openvpn: {DEVICE} carried {carried} bytes, expected at least "
                f"{nbytes}: NFS traffic bypassed the tunnel"
            )

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._processes.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
