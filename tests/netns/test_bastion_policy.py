"""RPC policy and user login through the real tunnel, against Ganesha.

The lab runs with LAB_FORWARD=0, so the client reaches falcon only through
``spoolgate tunnel`` and ``spoolgate bastion``; the bastion runs with a
``[[policy.client]]`` entry, so its RPC proxy and login service are on.
The client's libnfs URLs name falcon itself: the tunnel carries the
packets, and the bastion's nftables REDIRECT hands them to the proxy.

Two system users are created on the host for the module (namespaces share
/etc): one logs in with a PAM password, the other with an SSH key. The
allow-list names /export/allowed; /export/secret stands for an export the
client must not reach.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import lab
from lab import Lab, LabConfig, missing_requirements
from spoolgate.rpc import message, mount, nfs3
from spoolgate.rpc.message import AcceptedReply, AuthSys
from spoolgate.rpc.record import RecordReader, encode_record
from spoolgate.rpc.xdr import Encoder
from spoolgate.tunnel import keys
from spoolgate.tunnel.status import query_status

PAM_UNIX = [
    Path("/lib/x86_64-linux-gnu/security/pam_unix.so"),
    Path("/usr/lib/x86_64-linux-gnu/security/pam_unix.so"),
    Path("/lib/security/pam_unix.so"),
    Path("/usr/lib/security/pam_unix.so"),
]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        any(shutil.which(p) is None for p in ("ssh-keygen", "useradd", "chpasswd")),
        reason="needs ssh-keygen (openssh-client), useradd and chpasswd (passwd)",
    ),
    pytest.mark.skipif(
        not any(path.exists() for path in PAM_UNIX),
        reason="pam_unix.so not found (Debian package libpam-modules)",
    ),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
]

TUNNEL_NET = "10.213.200"
BASTION_TUN = f"{TUNNEL_NET}.1"
CLIENT_TUN = f"{TUNNEL_NET}.2"
TUNNEL_PORT = 7443
LOGIN_PORT = 7451
FAILURE_DELAY_S = 1.0
OTHER_UID = 4242
FILE_BYTES = 456_789
TIMEOUT = 30.0
SPOOLGATE = [sys.executable, "-m", "spoolgate"]

# Sends one record from inside a namespace and prints the reply record as hex.
SEND_RECORD = str(Path(lab.__file__).with_name("send_record.py"))


# Opens a TCP connection from inside a namespace, from an optional source
# address, and prints whether it was established.
CONNECT = textwrap.dedent(
    """
    import socket, sys
    source = (sys.argv[3], 0) if len(sys.argv) > 3 else None
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2,
                                 source_address=source).close()
        print("connected")
    except OSError:
        print("failed")
    """
)


# Opens a TCP connection and keeps it open, idle, until it is killed.
HOLD = textwrap.dedent(
    """
    import signal, socket, sys
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    signal.pause()
    """
)


@dataclass
class User:
    name: str
    uid: int
    gid: int
    password: str = field(repr=False, default="")


@dataclass
class PolicyLab:
    lab: Lab
    work: Path
    password_user: User
    key_user: User
    ssh_key: Path
    wrong_key: Path
    pam_service: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    bastion: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> LabConfig:
        return self.lab.config

    @property
    def status_path(self) -> Path:
        return self.work / "status.sock"

    @property
    def bastion_log(self) -> Path:
        return self.work / "bastion.log"

    def status(self) -> dict[str, object]:
        return query_status(self.status_path)

    def sessions(self) -> list[object]:
        try:
            found = self.status()["sessions"]
        except Exception:
            return []
        assert isinstance(found, list)
        return found

    def log_text(self) -> str:
        return self.bastion_log.read_text(errors="replace")

    def refusals(self, reason: str) -> int:
        # Repeated refusals are logged at DEBUG only: the bastion runs with -vv.
        return self.log_text().count(f"reason={reason}:")

    def url(self, path: str, user: User, uid: int | None = None) -> str:
        params = {"uid": user.uid if uid is None else uid, "gid": user.gid}
        return self.lab.nfs_url(path, params=params)

    def client(
        self, argv: list[str], stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        command = ["ip", "netns", "exec", self.config.namespace("client"), *argv]
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT
        )

    def login_password(
        self, user: User, password: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        secret = user.password if password is None else password
        return self.client(
            [*SPOOLGATE, "login", "--server", f"{BASTION_TUN}:{LOGIN_PORT}",
             "--user", user.name, "--password-stdin", "--json"],
            stdin=secret + "\n",
        )  # fmt: skip

    def login_key(
        self, user: User, key: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.client(
            [*SPOOLGATE, "login", "--server", f"{BASTION_TUN}:{LOGIN_PORT}",
             "--user", user.name, "--ssh-key", str(key or self.ssh_key), "--json"],
        )  # fmt: skip

    def logout(self, user: User) -> None:
        result = self.client(
            [*SPOOLGATE, "logout", "--server", f"{BASTION_TUN}:{LOGIN_PORT}",
             "--user", user.name],
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def read(self, path: str, user: User, uid: int | None = None) -> bytes | None:
        out = self.work / f"read-{secrets.token_hex(4)}"
        result = self.client(["nfs-cp", self.url(path, user, uid), str(out)])
        if result.returncode != 0:
            return None
        return out.read_bytes()

    def read_refused(
        self, reason: str, path: str, user: User, uid: int | None = None
    ) -> bool:
        """Read through the tunnel; True if it failed and the proxy logged why."""
        before = self.refusals(reason)
        failed = self.read(path, user, uid) is None
        return failed and wait_for(lambda: self.refusals(reason) > before)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- set-up -----------------------------------------------------------------------


def create_user(name: str, password: str = "") -> User:
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
    )
    if password:
        subprocess.run(
            ["chpasswd"], input=f"{name}:{password}\n", text=True, check=True
        )
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid, password)


def ssh_key(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
    )
    return path


def fill_export(config: LabConfig, users: list[User]) -> None:
    for user in users:
        home = config.export_dir / "allowed" / user.name
        home.mkdir(parents=True)
        os.chown(home, user.uid, user.gid)
        home.chmod(0o700)
        data = home / "data.bin"
        data.write_bytes(random.Random(user.uid).randbytes(FILE_BYTES))
        os.chown(data, user.uid, user.gid)
    secret = config.export_dir / "secret"
    secret.mkdir()
    (secret / "plans.txt").write_text("secret\n")


def bastion_config(
    work: Path, config: LabConfig, pam: str, users: list[User], process: str
) -> str:
    alice = keys.load_cert_pem(work / "alice.crt")
    names = ", ".join(f'"{user.name}"' for user in users)
    return textwrap.dedent(
        f"""
        [bastion]
        listen = "{config.bastion_client_ip}:{TUNNEL_PORT}"
        key = "bastion.key"
        cert = "bastion.crt"
        status_socket = "{work}/status.sock"
        keepalive_s = 1.0
        dead_peer_s = 4.0

        [tun]
        name = "sgibast0"
        address = "{BASTION_TUN}/24"

        [nfs]
        server = "{config.falcon_ip}"
        mount_port = {config.mnt_port}

        [[client]]
        name = "alice"
        cert = "alice.crt"
        fingerprint = "{keys.cert_fingerprint(alice)}"
        address = "{CLIENT_TUN}"

        [rpc_proxy]
        process = "{process}"

        [login]
        listen = ":{LOGIN_PORT}"
        ttl_s = 600
        pam_service = "{pam}"
        authorized_keys = "{work}/%u.keys"
        failure_delay_s = {FAILURE_DELAY_S}

        [[policy.client]]
        name = "alice"
        exports = ["/export/allowed"]
        users = [{names}]
        """
    )


def tunnel_config(work: Path, config: LabConfig) -> str:
    fingerprint = keys.cert_fingerprint(keys.load_cert_pem(work / "bastion.crt"))
    # The bastion's tun address is routed into the tunnel too, because the
    # login service identifies a client by its tunnel source address.
    return textwrap.dedent(
        f"""
        [tunnel]
        bastion = "{config.bastion_client_ip}:{TUNNEL_PORT}"
        bastion_fingerprint = "{fingerprint}"
        key = "alice.key"
        cert = "alice.crt"
        backoff_initial_s = 0.1
        backoff_max_s = 0.5
        keepalive_s = 1.0
        dead_peer_s = 4.0

        [tun]
        name = "sgitun0"
        address = "{CLIENT_TUN}"
        routes = ["{config.falcon_ip}/32", "{BASTION_TUN}/32"]
        """
    )


def start(
    lab: Lab, role: str, argv: list[str], log_path: Path
) -> subprocess.Popen[bytes]:
    return lab.popen(role, argv, log_path=log_path)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_services(policy_lab: PolicyLab) -> None:
    lab, work = policy_lab.lab, policy_lab.work
    policy_lab.bastion = start(
        lab, "bastion",
        [*SPOOLGATE, "-vv", "bastion", "--config", str(work / "bastion.toml")],
        policy_lab.bastion_log,
    )  # fmt: skip
    policy_lab.processes.append(policy_lab.bastion)
    assert wait_for(policy_lab.status_path.exists, TIMEOUT), policy_lab.log_text()
    tunnel = start(
        lab, "client",
        [*SPOOLGATE, "-v", "tunnel", "--config", str(work / "tunnel.toml")],
        work / "tunnel.log",
    )  # fmt: skip
    policy_lab.processes.append(tunnel)
    assert wait_for(lambda: len(policy_lab.sessions()) == 1, TIMEOUT)


@pytest.fixture(scope="module", params=["separate", "inline"])
def policy_lab(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[PolicyLab]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("bastion-policy")
    work.chmod(0o755)
    tag = secrets.token_hex(2)
    pair = random.randrange(50)
    config = LabConfig(
        state=work / "lab",
        prefix=f"sgi{tag}",
        net1=f"10.213.{2 * pair + 1}",
        net2=f"10.213.{2 * pair + 2}",
        forward=False,
    )
    pam = f"spoolgate-sgi{tag}"
    pam_file = Path("/etc/pam.d", pam)
    users: list[User] = []
    lab = Lab(config)
    policy_lab: PolicyLab | None = None
    try:
        # nodelay: pam_unix otherwise adds its own delay of about 2 s.
        pam_file.write_text(
            "auth required pam_unix.so nodelay\naccount required pam_unix.so\n"
        )
        users.append(create_user(f"sgi{tag}p", secrets.token_urlsafe(12)))
        users.append(create_user(f"sgi{tag}k"))
        key = ssh_key(work / "id_ed25519")
        wrong = ssh_key(work / "id_wrong")
        keys_file = work / f"{users[1].name}.keys"
        keys_file.write_text(Path(f"{key}.pub").read_text())
        keys_file.chmod(0o644)
        now = datetime.datetime.now(datetime.UTC)
        keys.write_key_pair(work, "bastion", now=now)
        keys.write_key_pair(work, "alice", now=now)
        (work / "bastion.toml").write_text(
            bastion_config(work, config, pam, users, request.param)
        )
        (work / "tunnel.toml").write_text(tunnel_config(work, config))
        lab.up()
        fill_export(config, users)
        policy_lab = PolicyLab(lab, work, users[0], users[1], key, wrong, pam)
        start_services(policy_lab)
        yield policy_lab
    finally:
        if policy_lab is not None:
            for process in reversed(policy_lab.processes):
                stop(process)
        lab.down()
        for user in users:
            subprocess.run(["userdel", user.name], check=False)
        pam_file.unlink(missing_ok=True)


@pytest.fixture
def password_user(policy_lab: PolicyLab) -> Iterator[User]:
    """The password user, logged in for the test and logged out after it."""
    user = policy_lab.password_user
    result = policy_lab.login_password(user)
    assert result.returncode == 0, result.stdout + result.stderr
    yield user
    policy_lab.logout(user)


def data_on_falcon(policy_lab: PolicyLab, user: User) -> bytes:
    path = policy_lab.config.export_dir / "allowed" / user.name / "data.bin"
    return path.read_bytes()


# -- raw RPC helpers (a handle obtained outside the tunnel) ------------------------


def send_record(lab: Lab, role: str, host: str, port: int, payload: bytes) -> bytes:
    record = encode_record(payload).hex()
    argv = [sys.executable, SEND_RECORD, host, str(port), record]
    out = lab.run(role, argv, timeout=30).stdout.strip()
    (parsed,) = RecordReader().feed(bytes.fromhex(out))
    return parsed.payload


def sys_cred(user: User) -> message.OpaqueAuth:
    return message.encode_auth_sys(AuthSys(0, b"probe", user.uid, user.gid))


def mnt_handle(lab: Lab, role: str, path: bytes, user: User) -> bytes:
    call = message.encode_call(
        0x5B01, mount.MOUNT_PROGRAM, 3, mount.MountProc.MNT,
        mount.encode_dirpath(path), sys_cred(user),
    )  # fmt: skip
    reply = send_record(lab, role, lab.config.falcon_ip, lab.config.mnt_port, call)
    parsed = message.parse_reply(reply)
    assert isinstance(parsed, AcceptedReply)
    result = mount.parse_mnt_reply(reply[parsed.results_offset :])
    assert result.status is mount.MountStat.MNT3_OK, result
    return result.fhandle


def nfs3_status(lab: Lab, proc: int, handle: bytes, user: User) -> nfs3.Nfs3Stat:
    """Send GETATTR or READDIR from the client through the tunnel."""
    enc = Encoder()
    enc.opaque(handle, 64)
    if proc == nfs3.Nfs3Proc.READDIR:
        enc.uint64(0)
        enc.fixed_opaque(b"\0" * 8)
        enc.uint32(4096)
    call = message.encode_call(
        0x5B02, nfs3.NFS_PROGRAM, 3, proc, enc.getvalue(), sys_cred(user)
    )
    reply = send_record(lab, "client", lab.config.falcon_ip, 2049, call)
    parsed = message.parse_reply(reply)
    assert isinstance(parsed, AcceptedReply)
    return nfs3.reply_status(proc, reply[parsed.results_offset :])


# -- tests ------------------------------------------------------------------------


def test_policy_password_login_reads_own_file(
    policy_lab: PolicyLab, password_user: User
) -> None:
    data = policy_lab.read(f"allowed/{password_user.name}/data.bin", password_user)
    assert data == data_on_falcon(policy_lab, password_user)


def test_policy_password_login_writes_file(
    policy_lab: PolicyLab, password_user: User
) -> None:
    data = random.Random(9).randbytes(123_457)
    source = policy_lab.work / "upload.bin"
    source.write_bytes(data)
    name = f"allowed/{password_user.name}/up-{secrets.token_hex(3)}.bin"
    result = policy_lab.client(
        ["nfs-cp", str(source), policy_lab.url(name, password_user)]
    )
    assert result.returncode == 0, result.stderr
    written = policy_lab.config.export_dir / name
    assert written.read_bytes() == data
    assert written.stat().st_uid == password_user.uid


def test_policy_other_uid_refused(policy_lab: PolicyLab, password_user: User) -> None:
    path = f"allowed/{password_user.name}/data.bin"
    assert policy_lab.read_refused("uid_not_bound", path, password_user, OTHER_UID)


def test_policy_root_uid_refused(policy_lab: PolicyLab, password_user: User) -> None:
    path = f"allowed/{password_user.name}/data.bin"
    assert policy_lab.read_refused("root", path, password_user, 0)


def test_policy_logout_then_refused(policy_lab: PolicyLab) -> None:
    user = policy_lab.password_user
    path = f"allowed/{user.name}/data.bin"
    assert policy_lab.login_password(user).returncode == 0
    assert policy_lab.read(path, user) is not None
    policy_lab.logout(user)
    assert policy_lab.read_refused("uid_not_bound", path, user)


def test_policy_ssh_key_login_reads_own_file(policy_lab: PolicyLab) -> None:
    user = policy_lab.key_user
    result = policy_lab.login_key(user)
    assert result.returncode == 0, result.stdout + result.stderr
    reply = json.loads(result.stdout)
    assert reply["ok"] is True
    assert f"uid={user.uid}" in reply["reply"]
    try:
        data = policy_lab.read(f"allowed/{user.name}/data.bin", user)
        assert data == data_on_falcon(policy_lab, user)
    finally:
        policy_lab.logout(user)


def test_policy_valid_key_without_login_no_access(policy_lab: PolicyLab) -> None:
    for user in (policy_lab.password_user, policy_lab.key_user):
        path = f"allowed/{user.name}/data.bin"
        assert policy_lab.read_refused("uid_not_bound", path, user)
        listing = policy_lab.client(["nfs-ls", policy_lab.url("allowed", user)])
        assert listing.returncode != 0
        assert user.name not in listing.stdout


def test_policy_forbidden_export_not_mounted_or_listed(
    policy_lab: PolicyLab, password_user: User
) -> None:
    before = policy_lab.refusals("export")
    secret = policy_lab.client(["nfs-ls", policy_lab.url("secret", password_user)])
    assert secret.returncode != 0
    assert "plans.txt" not in secret.stdout
    above = policy_lab.client(["nfs-ls", policy_lab.url("", password_user)])
    assert above.returncode != 0
    assert "secret" not in above.stdout
    assert wait_for(lambda: policy_lab.refusals("export") >= before + 2)
    allowed = policy_lab.client(["nfs-ls", policy_lab.url("allowed", password_user)])
    assert allowed.returncode == 0, allowed.stderr
    assert password_user.name in allowed.stdout


def test_policy_foreign_handle_refused_in_getattr_and_readdir(
    policy_lab: PolicyLab, password_user: User
) -> None:
    lab = policy_lab.lab
    # Asked on falcon itself, outside the tunnel and the proxy.
    secret = mnt_handle(lab, "falcon", b"/export/secret", password_user)
    allowed = mnt_handle(lab, "client", b"/export/allowed", password_user)
    for proc in (nfs3.Nfs3Proc.GETATTR, nfs3.Nfs3Proc.READDIR):
        status = nfs3_status(lab, proc, allowed, password_user)
        assert status is nfs3.Nfs3Stat.NFS3_OK
        status = nfs3_status(lab, proc, secret, password_user)
        assert status is nfs3.Nfs3Stat.NFS3ERR_STALE


def test_policy_wrong_password_refused_delayed_logged(policy_lab: PolicyLab) -> None:
    user = policy_lab.password_user
    wrong = "not-" + secrets.token_urlsafe(8)
    started = time.monotonic()
    result = policy_lab.login_password(user, wrong)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert json.loads(result.stdout)["ok"] is False
    assert elapsed >= FAILURE_DELAY_S
    expected = f"login failed client=alice peer={CLIENT_TUN}:"
    assert wait_for(lambda: expected in policy_lab.log_text())
    line = next(
        text for text in policy_lab.log_text().splitlines()
        if expected in text and "method=password" in text
    )  # fmt: skip
    assert f"user={user.name}" in line
    assert wrong not in policy_lab.log_text()
    assert user.password not in policy_lab.log_text()


def test_policy_wrong_ssh_key_refused_delayed_logged(policy_lab: PolicyLab) -> None:
    user = policy_lab.key_user
    started = time.monotonic()
    result = policy_lab.login_key(user, policy_lab.wrong_key)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed >= FAILURE_DELAY_S
    marker = f"user={user.name} method=ssh-key"

    def logged() -> bool:
        return any(
            "login failed client=alice" in text and marker in text
            for text in policy_lab.log_text().splitlines()
        )

    assert wait_for(logged)
    assert policy_lab.read_refused(
        "uid_not_bound", f"allowed/{user.name}/data.bin", user
    )


def test_policy_status_shows_bindings_and_counters(
    policy_lab: PolicyLab, password_user: User
) -> None:
    assert policy_lab.read(f"allowed/{password_user.name}/data.bin", password_user)
    result = subprocess.run(
        [*SPOOLGATE, "bastion", "status", "--socket", str(policy_lab.status_path)],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )  # fmt: skip
    rpc = json.loads(result.stdout)["rpc_policy"]
    (binding,) = [b for b in rpc["bindings"] if b["user"] == password_user.name]
    assert binding["client"] == "alice"
    assert binding["uid"] == password_user.uid
    assert password_user.gid in binding["gids"]
    assert 500 < binding["expires_in_s"] <= 600
    assert binding["expires"].endswith("Z")
    assert rpc["proxy"]["calls_forwarded"] > 0
    assert rpc["proxy"]["connections"] > 0
    assert rpc["login"]["logins"] >= 1
    assert rpc["clients"]["alice"]["handles"] > 0


def drops(policy_lab: PolicyLab, reason: str) -> int:
    table = policy_lab.status()["drops"]
    assert isinstance(table, dict)
    return int(table[reason])


def test_policy_packet_checks_apply_before_redirect(policy_lab: PolicyLab) -> None:
    spoofed = f"{TUNNEL_NET}.50"
    policy_lab.lab.run(
        "client", ["ip", "addr", "add", f"{spoofed}/32", "dev", "sgitun0"]
    )
    before = drops(policy_lab, "spoofed_source")
    try:
        result = policy_lab.client(
            [sys.executable, "-c", CONNECT, policy_lab.config.falcon_ip, "2049",
             spoofed]
        )  # fmt: skip
    finally:
        policy_lab.lab.run(
            "client", ["ip", "addr", "del", f"{spoofed}/32", "dev", "sgitun0"]
        )
    assert result.stdout.strip() == "failed"
    assert drops(policy_lab, "spoofed_source") > before
    before = drops(policy_lab, "port_not_allowed")
    result = policy_lab.client(
        [sys.executable, "-c", CONNECT, policy_lab.config.falcon_ip, "2222"]
    )
    assert result.stdout.strip() == "failed"
    assert drops(policy_lab, "port_not_allowed") > before
    result = policy_lab.client(
        [sys.executable, "-c", CONNECT, policy_lab.config.falcon_ip, "2049"]
    )
    assert result.stdout.strip() == "connected"


def test_policy_no_plain_path_to_falcon(policy_lab: PolicyLab) -> None:
    tables = policy_lab.lab.run(
        "bastion", ["nft", "list", "table", "inet", "spoolgate_sgibast0"]
    )
    assert "redirect to :7450" in tables.stdout
    forwarding = policy_lab.lab.run("bastion", ["cat", "/proc/sys/net/ipv4/ip_forward"])
    assert forwarding.stdout.strip() == "0"


def test_policy_reload_revoke_drops_binding(
    policy_lab: PolicyLab, password_user: User
) -> None:
    config_path = policy_lab.work / "bastion.toml"
    original = config_path.read_text()
    assert policy_lab.bastion is not None
    path = f"allowed/{password_user.name}/data.bin"
    assert policy_lab.read(path, password_user) is not None

    # An idle connection through the proxy, open while the revocation comes.
    # The proxy logs single connections at DEBUG only, so count them in status.
    def proxy_connections() -> int:
        rpc = policy_lab.status()["rpc_policy"]
        assert isinstance(rpc, dict)
        count: int = rpc["proxy"]["connections"]
        return count

    opened = proxy_connections()
    holder = policy_lab.lab.popen(
        "client",
        [sys.executable, "-c", HOLD, policy_lab.config.falcon_ip, "2049"],
        log_path=policy_lab.work / "holder.log",
    )
    policy_lab.processes.append(holder)
    assert wait_for(lambda: proxy_connections() > opened)
    # Another address for alice revokes her entry; back again re-admits her.
    dropped = policy_lab.log_text().count("rpc policy dropped bindings")
    config_path.write_text(original.replace(f'"{CLIENT_TUN}"', f'"{TUNNEL_NET}.9"'))
    policy_lab.bastion.send_signal(signal.SIGHUP)
    assert wait_for(
        lambda: policy_lab.log_text().count("rpc policy dropped bindings") > dropped
    )
    assert "clients=alice connections=1" in policy_lab.log_text()
    stop(holder)
    config_path.write_text(original)
    policy_lab.bastion.send_signal(signal.SIGHUP)
    assert wait_for(
        lambda: policy_lab.log_text().count("rpc policy dropped bindings") > dropped + 1
    )

    def readmitted() -> bool:
        sessions = policy_lab.sessions()
        addresses = [s.get("address") for s in sessions if isinstance(s, dict)]
        return addresses == [CLIENT_TUN]

    assert wait_for(readmitted, TIMEOUT)
    rpc = policy_lab.status()["rpc_policy"]
    assert isinstance(rpc, dict)
    assert rpc["bindings"] == []
    assert policy_lab.read_refused("uid_not_bound", path, password_user)
    assert policy_lab.login_password(password_user).returncode == 0
    assert policy_lab.read(path, password_user) is not None


def test_policy_shutdown_removes_table(policy_lab: PolicyLab) -> None:
    assert policy_lab.bastion is not None
    stop(policy_lab.bastion)
    assert policy_lab.bastion.returncode == 0, policy_lab.log_text()[-2000:]
    tables = policy_lab.lab.run("bastion", ["nft", "list", "tables"]).stdout
    assert "spoolgate_" not in tables
    text = policy_lab.log_text()
    assert text.rindex("rpc policy stopped") < text.rindex("nftables table deleted")
    child = re.search(r"rpc services running in child process pid=(\d+)", text)
    if child is not None:
        assert f"rpc services child pid={child[1]} exited code=0" in text
        assert not Path(f"/proc/{child[1]}").exists()


def _start_bastion(policy_lab: PolicyLab, log_path: Path) -> subprocess.Popen[bytes]:
    config = policy_lab.work / "bastion.toml"
    bastion = start(
        policy_lab.lab, "bastion",
        [*SPOOLGATE, "-vv", "bastion", "--config", str(config)], log_path,
    )  # fmt: skip
    policy_lab.processes.append(bastion)
    return bastion


def _child_pid(log_path: Path) -> int | None:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    found = re.search(r"rpc services running in child process pid=(\d+)", text)
    return None if found is None else int(found[1])


def test_policy_bastion_stops_when_child_dies(policy_lab: PolicyLab) -> None:
    if 'process = "inline"' in (policy_lab.work / "bastion.toml").read_text():
        pytest.skip("the proxy runs inside the bastion process")
    log_path = policy_lab.work / "bastion-orphaned.log"
    bastion = _start_bastion(policy_lab, log_path)
    assert wait_for(lambda: _child_pid(log_path) is not None, TIMEOUT)
    child = _child_pid(log_path)
    assert child is not None
    os.kill(child, signal.SIGKILL)
    assert bastion.wait(timeout=TIMEOUT) == 0
    text = log_path.read_text(errors="replace")
    assert f"rpc services child pid={child} exited code=-9" in text
    assert "nftables table deleted" in text


def test_policy_child_exits_with_bastion(policy_lab: PolicyLab) -> None:
    if 'process = "inline"' in (policy_lab.work / "bastion.toml").read_text():
        pytest.skip("the proxy runs inside the bastion process")
    log_path = policy_lab.work / "bastion-killed.log"
    bastion = _start_bastion(policy_lab, log_path)
    assert wait_for(lambda: _child_pid(log_path) is not None, TIMEOUT)
    child = _child_pid(log_path)
    # SIGKILL: the bastion runs no clean-up, so the child must stop on its
    # own, by PR_SET_PDEATHSIG or end of file on its socketpair.
    bastion.kill()
    bastion.wait()
    assert wait_for(lambda: not Path(f"/proc/{child}").exists(), TIMEOUT)
