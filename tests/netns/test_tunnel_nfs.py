"""NFS through spoolgate's tunnel in the three-namespace lab, and what it keeps out.

The lab runs with LAB_FORWARD=0: the bastion's kernel does not route between
client and falcon, so NFS reaches falcon only through ``spoolgate tunnel``
(client namespace) and ``spoolgate bastion`` (bastion namespace). The bastion
masquerades, so every packet that passes the tunnel reaches falcon from the
bastion's falcon-side address. An nftables table in falcon's namespace counts,
before anything else sees them, the packets from that address, from the
client's ranges and to a non-NFS port. Each refusal test compares these
counters before and after an attempt; a control test shows that one packet
let through does move them.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab import Lab, MakeLab
from spoolgate.tunnel import keys, tun
from spoolgate.tunnel.status import query_status

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
]

MIB = 1024 * 1024
BIG_BYTES = 64 * MIB
# libnfs 4.0.0 (Debian 12) fails an NFSv4 WRITE of about 3.9 kB or more.
V4_WRITE_BYTES = 3001
BASTION_PORT = 7443
PROBE_PORT = 2222
NFS_PORT = 2049
TIMEOUT_S = 30.0
TUN_NAME = "sgtun0"
TCP_SYN = 0x02
TCP_RST = 0x04
PROBE_TABLE = "sgn_probe"
SPOOLGATE = [sys.executable, "-m", "spoolgate", "-v"]

# Runs in the client namespace: open a TCP connection (from SOURCE if given)
# and exit 0 if it opened within 1 s.
CONNECT = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
source = (sys.argv[3], 0) if len(sys.argv) > 3 else None
socket.create_connection((host, port), timeout=1, source_address=source).close()
"""

# Runs in the client namespace: connect to the bastion without the tunnel
# client and send one data frame per packet in PACKETS (comma-separated hex),
# in plain TCP or after a TLS handshake (with CERT and KEY if given). Prints
# "closed" when the bastion ends the connection, "open" when it is still up
# after 3 s.
INJECT = """
import socket, ssl, sys, time
host, port, mode, packets = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
frames = b""
for packet in map(bytes.fromhex, packets.split(",")):
    frames += bytes([1]) + len(packet).to_bytes(2, "big") + packet
sock = socket.create_connection((host, port), timeout=3)
if mode == "tls":
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["spoolgate-tunnel/1"])
    if len(sys.argv) > 6:
        context.load_cert_chain(sys.argv[5], sys.argv[6])
    try:
        sock = context.wrap_socket(sock)
    except (OSError, ssl.SSLError) as exc:
        print("closed in handshake:", exc)
        sys.exit(0)
deadline = time.monotonic() + 3
try:
    sock.sendall(frames)
    while time.monotonic() < deadline:
        if not sock.recv(65536):
            print("closed")
            sys.exit(0)
except socket.timeout:
    pass
except (OSError, ssl.SSLError) as exc:
    print("closed:", exc)
    sys.exit(0)
print("open")
"""

# Runs in falcon's namespace: accept on PORT, append one line per connection
# to LOG, and write "ready" to LOG once listening.
LISTENER = """
import socket, sys
port, log = int(sys.argv[1]), sys.argv[2]
server = socket.create_server(("0.0.0.0", port))
with open(log, "a") as f:
    f.write("ready\\n")
while True:
    connection, peer = server.accept()
    with open(log, "a") as f:
        f.write(f"accept {peer[0]}\\n")
    connection.close()
"""


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll PREDICATE until it holds; fail after TIMEOUT_S seconds."""
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {TIMEOUT_S:g} s waiting for {what}")
        time.sleep(0.05)


def checksum(data: bytes) -> int:
    """Return the Internet checksum (RFC 1071) of DATA."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_packet(source: str, destination: str, port: int, flags: int, seq: int) -> bytes:
    """Return an IPv4 TCP packet without payload, with valid checksums."""
    src = ipaddress.IPv4Address(source).packed
    dst = ipaddress.IPv4Address(destination).packed
    tcp = bytearray(
        struct.pack("!HHIIBBHHH", 40001, port, seq, 0, 5 << 4, flags, 64240, 0, 0)
    )
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp)))
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst
        )
    )
    struct.pack_into("!H", header, 10, checksum(bytes(header)))
    return bytes(header + tcp)


class TunnelLab:
    """A lab with keys, configs, falcon's counters and the tunnel processes."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab = lab
        self.root = root
        base = lab.config.net1.rsplit(".", 1)[0]
        self.tunnel_net = f"{base}.200"
        self.client_address = f"{self.tunnel_net}.2"
        self.expired_address = f"{self.tunnel_net}.3"
        self.status_path = root / "status.sock"
        self.bastion: subprocess.Popen[bytes] | None = None
        self.client: subprocess.Popen[bytes] | None = None

    @property
    def falcon(self) -> str:
        return self.lab.config.falcon_ip

    # Keys and configs

    def write_keys(self) -> None:
        self.bastion_fingerprint = self.keygen("bastion")
        self.alice_fingerprint = self.keygen("alice")
        self.keygen("stranger")
        # spoolgate keygen cannot date a certificate in the past.
        now = datetime.datetime.now(datetime.UTC)
        self.expired = keys.write_key_pair(
            self.root, "expired", now=now - datetime.timedelta(days=10), days=1
        )
        self.write_bastion_config(with_alice=True)

    def keygen(self, name: str) -> str:
        """Run ``spoolgate keygen NAME`` in the work folder; return the pin."""
        argv = [*SPOOLGATE, "keygen", name, "--dir", str(self.root), "--json"]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=True
        )
        fingerprint = json.loads(result.stdout)["fingerprint"]
        assert isinstance(fingerprint, str)
        return fingerprint

    def write_bastion_config(self, *, with_alice: bool) -> None:
        text = (
            "[bastion]\n"
            f'listen = "{self.lab.config.bastion_client_ip}:{BASTION_PORT}"\n'
            'key = "bastion.key"\ncert = "bastion.crt"\n'
            f'status_socket = "{self.status_path}"\n'
            "keepalive_s = 1.0\ndead_peer_s = 4.0\n"
            "[tun]\n"
            f'address = "{self.tunnel_net}.1/24"\n'
            "[nfs]\n"
            f'server = "{self.falcon}"\n'
            f"mount_port = {self.lab.config.mnt_port}\n"
            # The expired client is listed, so only its dates keep it out.
            "[[client]]\n"
            'name = "expired"\ncert = "expired.crt"\n'
            f'fingerprint = "{self.expired.fingerprint}"\n'
            f'address = "{self.expired_address}"\n'
        )
        if with_alice:
            text += (
                "[[client]]\n"
                'name = "alice"\ncert = "alice.crt"\n'
                f'fingerprint = "{self.alice_fingerprint}"\n'
                f'address = "{self.client_address}"\n'
            )
        (self.root / "bastion.toml").write_text(text)

    def write_tunnel_config(self, key_name: str, address: str) -> Path:
        path = self.root / f"tunnel-{key_name}.toml"
        path.write_text(
            "[tunnel]\n"
            f'bastion = "{self.lab.config.bastion_client_ip}:{BASTION_PORT}"\n'
            f'bastion_fingerprint = "{self.bastion_fingerprint}"\n'
            f'key = "{key_name}.key"\ncert = "{key_name}.crt"\n'
            "connect_timeout_s = 3.0\n"
            "backoff_initial_s = 0.1\nbackoff_max_s = 0.5\n"
            "keepalive_s = 1.0\ndead_peer_s = 4.0\n"
            "[tun]\n"
            f'name = "{TUN_NAME}"\n'
            f'address = "{address}"\n'
            f'routes = ["{self.falcon}/32"]\n'
        )
        return path

    # Processes

    def start_bastion(self) -> None:
        config = str(self.root / "bastion.toml")
        self.bastion = self.lab.popen(
            "bastion",
            [*SPOOLGATE, "bastion", "--config", config],
            log_path=self.root / "bastion.log",
        )
        wait_until(self.status_answers, "the bastion's status socket")

    def start_client(self, key_name: str = "alice", address: str = "") -> None:
        config = self.write_tunnel_config(key_name, address or self.client_address)
        self.client = self.lab.popen(
            "client",
            [*SPOOLGATE, "tunnel", "--config", str(config)],
            log_path=self.root / f"tunnel-{key_name}.log",
        )
        wait_until(self.route_in_tunnel, f"the {TUN_NAME} route to falcon")

    def stop_client(self) -> None:
        if self.client is not None:
            stop(self.client)
            self.client = None

    def stop_all(self) -> None:
        self.stop_client()
        if self.bastion is not None:
            stop(self.bastion)
            self.bastion = None

    def route_in_tunnel(self) -> bool:
        route = self.lab.run("client", ["ip", "route", "get", self.falcon], check=False)
        return f"dev {TUN_NAME}" in route.stdout

    # Bastion status

    def status_answers(self) -> bool:
        try:
            query_status(self.status_path, timeout=1.0)
        except Exception:
            return False
        return True

    def sessions(self) -> list[dict[str, object]]:
        found = query_status(self.status_path)["sessions"]
        assert isinstance(found, list)
        return found

    def alice_connected(self) -> bool:
        try:
            sessions = self.sessions()
        except Exception:
            return False
        return [s["client"] for s in sessions] == ["alice"]

    def counter(self, group: str, name: str) -> int:
        table = query_status(self.status_path)[group]
        assert isinstance(table, dict)
        return int(table[name])

    # Falcon's view

    def install_probe(self) -> None:
        config = self.lab.config
        client_range = f"{config.net1}.0/24, {self.tunnel_net}.0/24"
        ruleset = f"""
table inet {PROBE_TABLE} {{
    counter from_bastion {{ }}
    counter from_client_range {{ }}
    counter to_probe_port {{ }}
    chain prerouting {{
        type filter hook prerouting priority -300; policy accept;
        ip saddr {config.bastion_falcon_ip} counter name "from_bastion"
        ip saddr {{ {client_range} }} counter name "from_client_range"
        tcp dport {PROBE_PORT} counter name "to_probe_port"
    }}
}}
"""
        path = self.root / "probe.nft"
        path.write_text(ruleset)
        self.lab.run("falcon", ["nft", "-f", str(path)])

    def arrived(self) -> dict[str, int]:
        """Return the packet count of each counter in falcon's probe table."""
        listing = self.lab.run(
            "falcon", ["nft", "-j", "list", "counters", "table", "inet", PROBE_TABLE]
        )
        counts = {}
        for item in json.loads(listing.stdout)["nftables"]:
            if "counter" in item:
                counts[item["counter"]["name"]] = int(item["counter"]["packets"])
        return counts

    # Traffic from the client namespace

    def connects(self, port: int, source: str = "") -> bool:
        argv = [sys.executable, "-c", CONNECT, self.falcon, str(port)]
        if source:
            argv.append(source)
        return (
            self.lab.run("client", argv, timeout=TIMEOUT_S, check=False).returncode == 0
        )

    def inject(self, mode: str, key_name: str = "") -> str:
        # The reset ends the half-open connection the SYN makes on falcon
        # if it arrives, so falcon does not resend its SYN-ACK during later
        # tests and draw a reset from the client.
        syn = tcp_packet(self.client_address, self.falcon, NFS_PORT, TCP_SYN, 1)
        rst = tcp_packet(self.client_address, self.falcon, NFS_PORT, TCP_RST, 2)
        argv = [
            sys.executable, "-c", INJECT,
            self.lab.config.bastion_client_ip, str(BASTION_PORT), mode,
            f"{syn.hex()},{rst.hex()}",
        ]  # fmt: skip
        if key_name:
            argv += [
                str(self.root / f"{key_name}.crt"),
                str(self.root / f"{key_name}.key"),
            ]
        return self.lab.run("client", argv, timeout=TIMEOUT_S).stdout.strip()

    def nfs_cp(self, source: str, target: str) -> None:
        self.lab.run("client", ["nfs-cp", source, target], timeout=120)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop PROCESS with SIGTERM, or SIGKILL if it takes longer than 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def tunnel(
    make_lab: MakeLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TunnelLab]:
    lab = make_lab(forward=False, stem="sgn", net_base="10.215")
    setup = TunnelLab(lab, tmp_path_factory.mktemp("tunnel-nfs"))
    try:
        setup.write_keys()
        setup.install_probe()
        setup.start_bastion()
        setup.start_client()
        wait_until(setup.alice_connected, "alice's session")
        yield setup
    finally:
        setup.stop_all()
        lab.down()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tunnel-data") / "big.bin"
    path.write_bytes(random.Random(7).randbytes(BIG_BYTES))
    return path


@pytest.fixture
def quiet(tunnel: TunnelLab) -> dict[str, int]:
    """Return falcon's counters once they stop moving, before a refusal test."""
    wait_until(tunnel.alice_connected, "alice's session before the test")
    counts = tunnel.arrived()
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        # Closing handshakes of earlier connections may still be in flight.
        time.sleep(0.3)
        latest = tunnel.arrived()
        if latest == counts:
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"falcon's counters kept moving: {latest}")
        counts = latest


def same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


# NFS through the tunnel


def test_v3_read_64mib_identical(
    tunnel: TunnelLab, big_file: Path, tmp_path: Path
) -> None:
    shutil.copyfile(big_file, tunnel.lab.config.export_dir / "v3-read.bin")
    before = tunnel.sessions()[0]["bytes_out"]
    tunnel.nfs_cp(tunnel.lab.nfs_url("v3-read.bin"), str(tmp_path / "out"))
    assert same_file(tmp_path / "out", big_file)
    carried = int(str(tunnel.sessions()[0]["bytes_out"])) - int(str(before))
    assert carried > BIG_BYTES


def test_v3_write_64mib_identical(tunnel: TunnelLab, big_file: Path) -> None:
    before = tunnel.sessions()[0]["bytes_in"]
    tunnel.nfs_cp(str(big_file), tunnel.lab.nfs_url("v3-write.bin"))
    assert same_file(tunnel.lab.config.export_dir / "v3-write.bin", big_file)
    carried = int(str(tunnel.sessions()[0]["bytes_in"])) - int(str(before))
    assert carried > BIG_BYTES


def test_v4_read_64mib_identical(
    tunnel: TunnelLab, big_file: Path, tmp_path: Path
) -> None:
    shutil.copyfile(big_file, tunnel.lab.config.export_dir / "v4-read.bin")
    tunnel.nfs_cp(tunnel.lab.nfs_url("v4-read.bin", version=4), str(tmp_path / "out"))
    assert same_file(tmp_path / "out", big_file)


def test_v4_small_write_identical(tunnel: TunnelLab, tmp_path: Path) -> None:
    data = random.Random(8).randbytes(V4_WRITE_BYTES)
    (tmp_path / "in").write_bytes(data)
    tunnel.nfs_cp(str(tmp_path / "in"), tunnel.lab.nfs_url("v4-write.bin", version=4))
    assert (tunnel.lab.config.export_dir / "v4-write.bin").read_bytes() == data


def test_falcon_sees_only_bastion_address(tunnel: TunnelLab) -> None:
    counts = tunnel.arrived()
    assert counts["from_bastion"] > BIG_BYTES // 65536
    assert counts["from_client_range"] == 0


def test_tun_devices_queue_4096_packets(tunnel: TunnelLab) -> None:
    for role, device in (("client", TUN_NAME), ("bastion", "sgbast0")):
        link = tunnel.lab.run(role, ["ip", "-j", "link", "show", device]).stdout
        assert json.loads(link)[0]["txqlen"] == tun.TX_QUEUE_LEN, role


# Clients without a valid key


@pytest.mark.parametrize(
    ("mode", "key_name"),
    [("plain", ""), ("tls", ""), ("tls", "stranger"), ("tls", "expired")],
    ids=["plain-tcp", "tls-no-cert", "unknown-key", "expired-key"],
)
def test_injected_syn_bad_key_never_arrives(
    tunnel: TunnelLab, quiet: dict[str, int], mode: str, key_name: str
) -> None:
    outcome = tunnel.inject(mode, key_name)
    assert outcome.startswith("closed"), outcome
    assert tunnel.arrived() == quiet


def test_injected_syn_valid_key_arrives(
    tunnel: TunnelLab, quiet: dict[str, int]
) -> None:
    # The control for the test above: the same frames over alice's key pass.
    # The injector's session replaces the tunnel client's for a moment.
    try:
        tunnel.inject("tls", "alice")
        assert tunnel.arrived()["from_bastion"] > quiet["from_bastion"]
    finally:
        wait_until(tunnel.alice_connected, "the tunnel client's new session")


@pytest.mark.parametrize("key_name", ["stranger", "expired"])
def test_client_bad_key_passes_nothing(
    tunnel: TunnelLab, quiet: dict[str, int], key_name: str
) -> None:
    failed = tunnel.counter("sessions_closed", "handshake_failed")
    address = tunnel.expired_address if key_name == "expired" else ""
    tunnel.stop_client()
    try:
        tunnel.start_client(key_name, address)
        wait_until(
            lambda: tunnel.counter("sessions_closed", "handshake_failed") > failed,
            f"the bastion to reject the {key_name} key",
        )
        assert not tunnel.connects(NFS_PORT)
        assert tunnel.sessions() == []
        assert tunnel.arrived() == quiet
    finally:
        tunnel.stop_client()
        tunnel.start_client()
        wait_until(tunnel.alice_connected, "alice's session after the bad key")


def test_revoked_client_blocked_then_readmitted(
    tunnel: TunnelLab, quiet: dict[str, int]
) -> None:
    assert tunnel.bastion is not None
    revoked = tunnel.counter("sessions_closed", "revoked")
    tunnel.write_bastion_config(with_alice=False)
    tunnel.bastion.send_signal(signal.SIGHUP)
    try:
        wait_until(
            lambda: tunnel.counter("sessions_closed", "revoked") > revoked,
            "the revoked session to close",
        )
        assert not tunnel.connects(NFS_PORT)
        assert tunnel.arrived() == quiet
    finally:
        tunnel.write_bastion_config(with_alice=True)
        tunnel.bastion.send_signal(signal.SIGHUP)
    wait_until(tunnel.alice_connected, "the client to reconnect by itself")
    assert tunnel.connects(NFS_PORT)


# Packets the bastion must not pass for a valid client


def test_spoofed_source_never_arrives(tunnel: TunnelLab, quiet: dict[str, int]) -> None:
    spoofed = f"{tunnel.tunnel_net}.50"
    dropped = tunnel.counter("drops", "spoofed_source")
    add = ["ip", "addr", "add", f"{spoofed}/32", "dev", TUN_NAME]
    tunnel.lab.run("client", add)
    try:
        assert not tunnel.connects(NFS_PORT, source=spoofed)
    finally:
        tunnel.lab.run(
            "client", ["ip", "addr", "del", f"{spoofed}/32", "dev", TUN_NAME]
        )
    assert tunnel.counter("drops", "spoofed_source") > dropped
    assert tunnel.arrived() == quiet


def test_non_nfs_port_never_arrives(tunnel: TunnelLab, quiet: dict[str, int]) -> None:
    log = tunnel.root / "listener.log"
    listener = tunnel.lab.popen(
        "falcon",
        [sys.executable, "-c", LISTENER, str(PROBE_PORT), str(log)],
        log_path=tunnel.root / "listener.out",
    )
    try:
        wait_until(lambda: log.exists() and "ready" in log.read_text(), "the listener")
        dropped = tunnel.counter("drops", "port_not_allowed")
        assert not tunnel.connects(PROBE_PORT)
        assert tunnel.counter("drops", "port_not_allowed") > dropped
        assert tunnel.arrived() == quiet
        assert "accept" not in log.read_text()

        # Control: the listener and the counter work for a direct connection.
        direct = [sys.executable, "-c", CONNECT, tunnel.falcon, str(PROBE_PORT)]
        tunnel.lab.run("bastion", direct)
        assert tunnel.arrived()["to_probe_port"] > quiet["to_probe_port"]
        assert "accept" in log.read_text()
    finally:
        stop(listener)


def client_tun_counter(tunnel: TunnelLab, port: int) -> int:
    """Return how many packets to PORT entered the client over its tun device."""
    listing = tunnel.lab.run(
        "client", ["nft", "-j", "list", "counters", "table", "inet", PROBE_TABLE]
    )
    for item in json.loads(listing.stdout)["nftables"]:
        if "counter" in item and item["counter"]["name"] == "to_client_port":
            return int(item["counter"]["packets"])
    raise AssertionError("the client's probe counter is missing")


def test_server_side_cannot_open_client_connection(
    tunnel: TunnelLab, quiet: dict[str, int]
) -> None:
    port = PROBE_PORT + 1
    ruleset = f"""
table inet {PROBE_TABLE} {{
    counter to_client_port {{ }}
    chain prerouting {{
        type filter hook prerouting priority -300; policy accept;
        iifname "{TUN_NAME}" tcp dport {port} counter name "to_client_port"
    }}
}}
"""
    path = tunnel.root / "client-probe.nft"
    path.write_text(ruleset)
    tunnel.lab.run("client", ["nft", "-f", str(path)])
    log = tunnel.root / "client-listener.log"
    listener = tunnel.lab.popen(
        "client",
        [sys.executable, "-c", LISTENER, str(port), str(log)],
        log_path=tunnel.root / "client-listener.out",
    )
    try:
        wait_until(lambda: log.exists() and "ready" in log.read_text(), "the listener")
        connect = [sys.executable, "-c", CONNECT, tunnel.client_address, str(port)]
        result = tunnel.lab.run("falcon", connect, timeout=TIMEOUT_S, check=False)
        assert result.returncode != 0
        assert client_tun_counter(tunnel, port) == 0
        assert "accept" not in log.read_text()
    finally:
        stop(listener)
        tunnel.lab.run("client", ["nft", "delete", "table", "inet", PROBE_TABLE])


# Bastion restart


def test_bastion_killed_client_reconnects(
    tunnel: TunnelLab, big_file: Path, tmp_path: Path
) -> None:
    assert tunnel.bastion is not None and tunnel.client is not None
    client_pid = tunnel.client.pid
    shutil.copyfile(big_file, tunnel.lab.config.export_dir / "restart.bin")
    partial = tmp_path / "partial"
    copy = tunnel.lab.popen(
        "client",
        ["nfs-cp", tunnel.lab.nfs_url("restart.bin"), str(partial)],
        log_path=tmp_path / "nfs-cp.log",
    )
    try:
        wait_until(
            lambda: partial.exists() and partial.stat().st_size > MIB,
            "the first MiB of the copy",
        )
        tunnel.bastion.kill()
        tunnel.bastion.wait(timeout=10)
        assert copy.poll() is None, "the copy finished before the bastion was killed"
        tunnel.start_bastion()
        wait_until(tunnel.alice_connected, "the client to reconnect by itself")
    finally:
        stop(copy)

    assert tunnel.client.poll() is None
    assert tunnel.client.pid == client_pid
    tunnel.nfs_cp(tunnel.lab.nfs_url("restart.bin"), str(tmp_path / "after"))
    assert same_file(tmp_path / "after", big_file)


# Benchmark smoke run


def test_bench_spoolgate_route_reports_rates(lab_skip_reason: str | None) -> None:
    # 8 MiB, because the tunnel's CPU time for a 1 MiB copy can round to 0
    # clock ticks.
    if lab_skip_reason:
        pytest.skip(lab_skip_reason)
    bench = Path(__file__).resolve().parents[2] / "bench" / "nfs.py"
    command = [
        sys.executable, str(bench), "--route", "spoolgate",
        "--size-mib", "8", "--runs", "1", "--json",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)["routes"]["spoolgate"]
    assert set(rows) == {"v3_read", "v4_read", "v3_write"}
    for kind, row in rows.items():
        assert row["mb_s_median"], kind
        assert row["cpu_s_per_gib_median"], kind
