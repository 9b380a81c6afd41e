"""The real tunnel in three network namespaces: client, bastion, falcon.

client (sgtun0 10.231.9.2) --veth 10.231.1.0/24-- bastion (sgbast0 10.231.9.1/24)
    --veth 10.231.2.0/24-- falcon (10.231.2.2, TCP echo servers)

The client has no route to falcon except through the tunnel, and falcon has
no route back to the tunnel network, so a reply can only arrive through the
bastion's masquerade. Needs root, ``ip`` and ``nft``.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spoolgate.tunnel import keys
from spoolgate.tunnel.status import query_status

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(
        shutil.which("ip") is None or shutil.which("nft") is None,
        reason="needs the ip (iproute2) and nft (nftables) programs",
    ),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
]

FALCON = "10.231.2.2"
ALLOWED_PORT = 2049
BLOCKED_PORT = 2222
CLIENT_ADDRESS = "10.231.9.2"
SPOOFED_ADDRESS = "10.231.9.50"
TIMEOUT = 20.0
SPOOLGATE = [sys.executable, "-m", "spoolgate", "-v"]

ECHO_SERVER = """
import socket, sys, threading
counts = {}
def serve(port, log):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        with open(log, "a") as f: f.write("accept\\n")
        def echo(c=c):
            with c:
                while data := c.recv(65536): c.sendall(data)
        threading.Thread(target=echo, daemon=True).start()
for port, log in zip(sys.argv[1::2], sys.argv[2::2]):
    threading.Thread(target=serve, args=(int(port), log), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

TCP_CLIENT = """
import socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
source = sys.argv[4] if len(sys.argv) > 4 else None
s = socket.create_connection((host, port), timeout=3,
                             source_address=(source, 0) if source else None)
payload = bytes(range(256)) * (size // 256)
s.sendall(payload)
got = bytearray()
while len(got) < len(payload):
    chunk = s.recv(65536)
    if not chunk: break
    got += chunk
print("ok" if got == payload else "mismatch %d" % len(got))
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command and return its result; raise with stderr if it fails."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it holds; fail after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Lab:
    """Three namespaces, keys, configs and the processes running in them."""

    def __init__(self, root: Path) -> None:
        suffix = secrets.token_hex(3)
        self.root = root
        self.client = f"sgt-{suffix}-c"
        self.bastion = f"sgt-{suffix}-b"
        self.falcon = f"sgt-{suffix}-f"
        self.processes: list[subprocess.Popen[str]] = []
        self.bastion_process: subprocess.Popen[str] | None = None
        self.status_path = root / "status.sock"

    def in_ns(self, namespace: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", namespace, *args]

    def build_network(self) -> None:
        for ns in (self.client, self.bastion, self.falcon):
            sh("ip", "netns", "add", ns)
            sh(*self.in_ns(ns, "ip", "link", "set", "lo", "up"))
        self._veth(
            self.client, "c0", "10.231.1.2/24", self.bastion, "b0", "10.231.1.1/24"
        )
        self._veth(
            self.bastion, "b1", "10.231.2.1/24", self.falcon, "f0", f"{FALCON}/24"
        )

    def _veth(
        self, ns_a: str, dev_a: str, addr_a: str, ns_b: str, dev_b: str, addr_b: str
    ) -> None:
        sh("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth",
           "peer", "name", dev_b, "netns", ns_b)  # fmt: skip
        for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
            sh(*self.in_ns(ns, "ip", "addr", "add", addr, "dev", dev))
            sh(*self.in_ns(ns, "ip", "link", "set", dev, "up"))

    def write_configs(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        bastion = keys.write_key_pair(self.root, "bastion", now=now)
        self.alice = keys.write_key_pair(self.root, "alice", now=now)
        self.write_bastion_config(with_client=True)
        (self.root / "tunnel.toml").write_text(
            "[tunnel]\n"
            'bastion = "10.231.1.1:7443"\n'
            f'bastion_fingerprint = "{bastion.fingerprint}"\n'
            'key = "alice.key"\ncert = "alice.crt"\n'
            "backoff_initial_s = 0.1\nbackoff_max_s = 0.5\n"
            "keepalive_s = 1.0\ndead_peer_s = 4.0\n"
            "[tun]\n"
            f'address = "{CLIENT_ADDRESS}"\n'
            f'routes = ["{FALCON}/32"]\n'
        )

    def write_bastion_config(self, *, with_client: bool) -> None:
        text = (
            "[bastion]\n"
            'listen = "10.231.1.1:7443"\n'
            'key = "bastion.key"\ncert = "bastion.crt"\n'
            f'status_socket = "{self.status_path}"\n'
            "keepalive_s = 1.0\ndead_peer_s = 4.0\n"
            "[tun]\n"
            'address = "10.231.9.1/24"\n'
            "[nfs]\n"
            f'server = "{FALCON}"\n'
            f"nfs_port = {ALLOWED_PORT}\n"
            "mount_port = 20048\n"
        )
        if with_client:
            text += (
                "[[client]]\n"
                'name = "alice"\ncert = "alice.crt"\n'
                f'fingerprint = "{self.alice.fingerprint}"\n'
                f'address = "{CLIENT_ADDRESS}"\n'
            )
        (self.root / "bastion.toml").write_text(text)

    def start(
        self, namespace: str, args: list[str], log_name: str
    ) -> subprocess.Popen[str]:
        log = (self.root / log_name).open("a")
        process = subprocess.Popen(
            self.in_ns(namespace, *args),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=self.root,
        )
        self.processes.append(process)
        return process

    def start_falcon(self) -> None:
        process = self.start(
            self.falcon,
            [sys.executable, "-c", ECHO_SERVER,
             str(ALLOWED_PORT), str(self.root / "allowed.log"),
             str(BLOCKED_PORT), str(self.root / "blocked.log")],
            "falcon.log",
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"

    def start_bastion(self) -> None:
        config = str(self.root / "bastion.toml")
        self.bastion_process = self.start(
            self.bastion, [*SPOOLGATE, "bastion", "--config", config], "bastion.log"
        )
        wait_until(self.status_path.exists, "the bastion's status socket")

    def start_tunnel(self) -> None:
        config = str(self.root / "tunnel.toml")
        self.start(
            self.client, [*SPOOLGATE, "tunnel", "--config", config], "tunnel.log"
        )

    def status(self) -> dict[str, object]:
        return query_status(self.status_path)

    def sessions(self) -> list[dict[str, object]]:
        try:
            found = self.status()["sessions"]
        except Exception:
            return []
        assert isinstance(found, list)
        return found

    def counter(self, group: str, reason: str) -> int:
        table = self.status()[group]
        assert isinstance(table, dict)
        return int(table[reason])

    def tcp_echo(self, port: int, size: int = 4096, source: str = "") -> str:
        args = [sys.executable, "-c", TCP_CLIENT, FALCON, str(port), str(size)]
        if source:
            args.append(source)
        result = sh(*self.in_ns(self.client, *args), check=False)
        return result.stdout.strip() or result.stderr.strip().splitlines()[-1]

    def stop_bastion(self) -> int:
        assert self.bastion_process is not None
        self.bastion_process.send_signal(signal.SIGTERM)
        return self.bastion_process.wait(timeout=TIMEOUT)

    def teardown(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        for ns in (self.client, self.bastion, self.falcon):
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("tunnel-netns"))
    try:
        lab.build_network()
        lab.write_configs()
        lab.start_falcon()
        lab.start_bastion()
        lab.start_tunnel()
        wait_until(lambda: len(lab.sessions()) == 1, "the client's session")
        yield lab
    finally:
        lab.teardown()


def log_lines(lab: Lab, name: str) -> int:
    path = lab.root / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_netns_tcp_through_tunnel_echoes(lab: Lab) -> None:
    assert lab.tcp_echo(ALLOWED_PORT, size=1 << 20) == "ok"
    session = lab.sessions()[0]
    assert session["client"] == "alice"
    assert session["address"] == CLIENT_ADDRESS
    assert int(str(session["bytes_in"])) > 1 << 20


def test_netns_blocked_port_never_reaches_falcon(lab: Lab) -> None:
    before = lab.counter("drops", "port_not_allowed")
    assert lab.tcp_echo(BLOCKED_PORT) != "ok"
    assert lab.counter("drops", "port_not_allowed") > before
    assert log_lines(lab, "blocked.log") == 0


def test_netns_spoofed_source_dropped(lab: Lab) -> None:
    sh(
        *lab.in_ns(
            lab.client, "ip", "addr", "add", f"{SPOOFED_ADDRESS}/32", "dev", "sgtun0"
        )
    )
    accepted = log_lines(lab, "allowed.log")
    before = lab.counter("drops", "spoofed_source")
    assert lab.tcp_echo(ALLOWED_PORT, source=SPOOFED_ADDRESS) != "ok"
    assert lab.counter("drops", "spoofed_source") > before
    assert log_lines(lab, "allowed.log") == accepted


def test_netns_no_plain_route_to_falcon(lab: Lab) -> None:
    result = sh(*lab.in_ns(lab.client, "ip", "route", "get", FALCON))
    assert "dev sgtun0" in result.stdout


def test_netns_revoked_client_closed_then_readmitted(lab: Lab) -> None:
    assert lab.bastion_process is not None
    lab.write_bastion_config(with_client=False)
    lab.bastion_process.send_signal(signal.SIGHUP)
    wait_until(lambda: lab.counter("sessions_closed", "revoked") == 1, "revocation")
    assert lab.sessions() == []
    assert lab.tcp_echo(ALLOWED_PORT) != "ok"
    lab.write_bastion_config(with_client=True)
    lab.bastion_process.send_signal(signal.SIGHUP)
    wait_until(lambda: len(lab.sessions()) == 1, "the client's new session")
    assert lab.tcp_echo(ALLOWED_PORT) == "ok"


def test_netns_bastion_restart_client_reconnects(lab: Lab) -> None:
    assert lab.stop_bastion() == 0
    tables = sh(*lab.in_ns(lab.bastion, "nft", "list", "tables")).stdout
    assert "spoolgate_" not in tables
    links = sh(*lab.in_ns(lab.bastion, "ip", "-o", "link")).stdout
    assert "sgbast0" not in links
    forwarding = sh(*lab.in_ns(lab.bastion, "cat", "/proc/sys/net/ipv4/ip_forward"))
    assert forwarding.stdout.strip() == "0"
    lab.start_bastion()
    wait_until(lambda: len(lab.sessions()) == 1, "the client's reconnection")
    assert lab.tcp_echo(ALLOWED_PORT) == "ok"


def test_netns_bastion_status_command_prints_json(lab: Lab) -> None:
    result = sh(*SPOOLGATE, "bastion", "status", "--socket", str(lab.status_path))
    status = json.loads(result.stdout)
    assert status["allowed_ports"] == [111, ALLOWED_PORT, 20048]
    assert len(status["sessions"]) == 1
