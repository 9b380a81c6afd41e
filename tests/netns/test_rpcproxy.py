"""The RPC proxy and login service in the lab's bastion, with Ganesha and libnfs.

The lab runs with LAB_FORWARD=0, so the client reaches falcon only through
the proxy. The proxy listens on the bastion's client-side address on ports
2049 and 20048 with falcon as upstream, and libnfs URLs name these ports
with nfsport and mountport. It also listens on one more port, which an
nftables REDIRECT rule in the bastion feeds (SO_ORIGINAL_DST), as the
bastion does with tunnel traffic.
The allow-list names /export/allowed; /export/secret stands for an export
the client must not reach.
"""

from __future__ import annotations

import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import lab
from lab import Lab, LabConfig, missing_requirements, wait_for_file
from spoolgate.rpc import message, mount, nfs3
from spoolgate.rpc.message import AcceptedReply, AuthSys, DeniedReply
from spoolgate.rpc.record import RecordReader, encode_record
from spoolgate.rpc.xdr import Encoder

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        shutil.which("ssh-keygen") is None or shutil.which("useradd") is None,
        reason="needs ssh-keygen (openssh-client) and useradd (passwd)",
    ),
]

PROXY_PORT = 7450
LOGIN_PORT = 7451
EXPIRY_LOGIN_PORT = 7461
EXPIRY_NFS_PORT = 3049
EXPIRY_MNT_PORT = 30048
EXPIRY_TTL_S = 3.0
NFS4_NFS_PORT = 4049
NFS4_MNT_PORT = 40048
NFS4_LOGIN_PORT = 7471
OTHER_UID = 4242
FILE_BYTES = 1_234_567

# Sends one record from inside a namespace and prints the reply record as hex.
SEND_RECORD = str(Path(lab.__file__).with_name("send_record.py"))


@dataclass
class ProxyLab:
    lab: Lab
    user: str
    uid: int
    gid: int
    key: Path
    work: Path

    @property
    def bastion(self) -> str:
        return self.lab.config.bastion_client_ip

    def url(self, path: str, uid: int | None = None, nfs_port: int = 2049,
            mnt_port: int = 20048) -> str:  # fmt: skip
        uid = self.uid if uid is None else uid
        params = {"nfsport": nfs_port, "mountport": mnt_port, "uid": uid,
                  "gid": self.gid}  # fmt: skip
        return self.lab.nfs_url(path, host=self.bastion, params=params)

    def spoolgate(
        self, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "spoolgate", *argv]
        return self.lab.run("client", command, timeout=60, check=check)

    def login(self, port: int = LOGIN_PORT) -> None:
        self.spoolgate(
            "login", "--server", f"{self.bastion}:{port}", "--user", self.user,
            "--ssh-key", str(self.key),
        )  # fmt: skip

    def logout(self, port: int = LOGIN_PORT) -> None:
        self.spoolgate(
            "logout", "--server", f"{self.bastion}:{port}", "--user", self.user
        )

    def nfs_cp(self, source: str, target: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run(
            "client", ["nfs-cp", source, target], timeout=60, check=False
        )

    def refusals(self, reason: str) -> int:
        """Count the proxy's log lines refusing a call for ``reason``.

        Repeats are logged at DEBUG only, so the proxy runs with ``-v``.
        """
        log = (self.work / "proxy.log").read_text(errors="replace")
        return log.count(f"reason={reason}:")

    def read_refused(self, reason: str, path: str, **url: int) -> bool:
        """Read through the proxy; True if it failed and the proxy logged the reason."""
        before = self.refusals(reason)
        return self.read(path, **url) is None and self.refusals(reason) > before

    def read(self, path: str, **url: int) -> bytes | None:
        out = self.work / f"read-{secrets.token_hex(4)}"
        result = self.nfs_cp(self.url(path, **url), str(out))
        if result.returncode != 0:
            return None
        return out.read_bytes()


def proxy_config(
    config: LabConfig,
    work: Path,
    user: str,
    *,
    ttl_s: float,
    ports: tuple[int, int, int],
) -> str:
    nfs_port, mnt_port, login_port = ports
    bastion, falcon = config.bastion_client_ip, config.falcon_ip
    listeners = f"""
        [[rpc_proxy.listener]]
        listen = "{bastion}:{nfs_port}"
        upstream = "{falcon}:2049"

        [[rpc_proxy.listener]]
        listen = "{bastion}:{mnt_port}"
        upstream = "{falcon}:{config.mnt_port}"
    """
    if nfs_port == 2049:
        listeners += f"""
        [[rpc_proxy.listener]]
        listen = "0.0.0.0:{PROXY_PORT}"
        """
    return textwrap.dedent(
        f"""
        [rpc_proxy]
        nfs4 = "refuse"
        {listeners}
        [login]
        listen = "{bastion}:{login_port}"
        ttl_s = {ttl_s}
        methods = ["ssh-key"]
        authorized_keys = "{work}/%u.keys"
        failure_delay_s = 0.2

        [[policy.client]]
        name = "lab-client"
        address = "{config.client_ip}"
        exports = ["/export/allowed"]
        users = ["{user}"]
        """
    )


def start_proxy(lab: Lab, work: Path, name: str, text: str) -> subprocess.Popen[bytes]:
    config = work / f"{name}.toml"
    config.write_text(text)
    ready = work / f"{name}.ready"
    process = lab.popen(
        "bastion",
        [sys.executable, "-m", "spoolgate.tunnel.rpcproxy", "--config", str(config),
         "--ready-file", str(ready), "-v"],
        log_path=work / f"{name}.log",
    )  # fmt: skip
    try:
        wait_for_file(ready, timeout=20)
    except Exception:
        process.kill()
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make_user(work: Path) -> tuple[str, Path]:
    user = f"sgh{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
        check=True,
    )
    key = work / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    keys = work / f"{user}.keys"
    keys.write_text(Path(f"{key}.pub").read_text())
    keys.chmod(0o644)
    return user, key


def fill_export(config: LabConfig, uid: int, gid: int) -> bytes:
    data = random.Random(7).randbytes(FILE_BYTES)
    for name in ("allowed/own", "secret"):
        directory = config.export_dir / name
        directory.mkdir(parents=True, exist_ok=True)
    own = config.export_dir / "allowed/own"
    os.chown(own, uid, gid)
    own.chmod(0o700)
    (own / "data.bin").write_bytes(data)
    os.chown(own / "data.bin", uid, gid)
    (config.export_dir / "secret/plans.txt").write_text("secret\n")
    return data


@pytest.fixture(scope="module")
def proxy_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyLab]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("rpcproxy")
    work.chmod(0o755)
    pair = random.randrange(50)
    config = LabConfig(
        state=work / "lab",
        prefix=f"sgh{secrets.token_hex(2)}",
        net1=f"10.212.{2 * pair + 1}",
        net2=f"10.212.{2 * pair + 2}",
        forward=False,
    )
    user, key = make_user(work)
    processes: list[subprocess.Popen[bytes]] = []
    lab = Lab(config)
    try:
        lab.up()
        entry = pwd.getpwnam(user)
        fill_export(config, entry.pw_uid, entry.pw_gid)
        text = proxy_config(
            config, work, user, ttl_s=600, ports=(2049, 20048, LOGIN_PORT)
        )
        processes.append(start_proxy(lab, work, "proxy", text))
        yield ProxyLab(lab, user, entry.pw_uid, entry.pw_gid, key, work)
    finally:
        for process in processes:
            stop(process)
        lab.down()
        subprocess.run(["userdel", user], check=False)


@pytest.fixture
def logged_in(proxy_lab: ProxyLab) -> Iterator[ProxyLab]:
    proxy_lab.login()
    yield proxy_lab
    proxy_lab.logout()


def data_on_falcon(proxy_lab: ProxyLab) -> bytes:
    return (proxy_lab.lab.config.export_dir / "allowed/own/data.bin").read_bytes()


# -- raw RPC helpers -------------------------------------------------------------


def send_record(lab: Lab, role: str, host: str, port: int, payload: bytes) -> bytes:
    record = encode_record(payload).hex()
    argv = [sys.executable, SEND_RECORD, host, str(port), record]
    out = lab.run(role, argv, timeout=30).stdout.strip()
    (parsed,) = RecordReader().feed(bytes.fromhex(out))
    return parsed.payload


def sys_cred(uid: int, gid: int) -> message.OpaqueAuth:
    return message.encode_auth_sys(AuthSys(0, b"probe", uid, gid))


def mnt_handle(lab: Lab, role: str, host: str, port: int, path: bytes, uid: int,
               gid: int) -> bytes:  # fmt: skip
    call = message.encode_call(
        0x5A01, mount.MOUNT_PROGRAM, 3, mount.MountProc.MNT,
        mount.encode_dirpath(path), sys_cred(uid, gid),
    )  # fmt: skip
    reply = send_record(lab, role, host, port, call)
    parsed = message.parse_reply(reply)
    assert isinstance(parsed, AcceptedReply)
    result = mount.parse_mnt_reply(reply[parsed.results_offset :])
    assert result.status is mount.MountStat.MNT3_OK, result
    return result.fhandle


def nfs3_status(proxy_lab: ProxyLab, proc: int, handle: bytes) -> nfs3.Nfs3Stat:
    enc = Encoder()
    enc.opaque(handle, 64)
    if proc == nfs3.Nfs3Proc.READDIR:
        enc.uint64(0)
        enc.fixed_opaque(b"\0" * 8)
        enc.uint32(4096)
    call = message.encode_call(
        0x5A02, nfs3.NFS_PROGRAM, 3, proc, enc.getvalue(),
        sys_cred(proxy_lab.uid, proxy_lab.gid),
    )  # fmt: skip
    reply = send_record(proxy_lab.lab, "client", proxy_lab.bastion, 2049, call)
    parsed = message.parse_reply(reply)
    assert isinstance(parsed, AcceptedReply)
    return nfs3.reply_status(proc, reply[parsed.results_offset :])


# -- tests ----------------------------------------------------------------------------


def test_proxy_logged_in_uid_reads_own_file(logged_in: ProxyLab) -> None:
    assert logged_in.read("allowed/own/data.bin") == data_on_falcon(logged_in)


def test_proxy_logged_in_uid_writes_file(logged_in: ProxyLab) -> None:
    data = random.Random(8).randbytes(345_679)
    source = logged_in.work / "upload.bin"
    source.write_bytes(data)
    name = f"allowed/own/up-{secrets.token_hex(3)}.bin"
    result = logged_in.nfs_cp(str(source), logged_in.url(name))
    assert result.returncode == 0, result.stderr
    written = logged_in.lab.config.export_dir / name
    assert written.read_bytes() == data
    assert written.stat().st_uid == logged_in.uid


def test_proxy_transfer_bytes_equal_direct(logged_in: ProxyLab) -> None:
    direct = logged_in.work / "direct.bin"
    url = logged_in.lab.nfs_url(
        "allowed/own/data.bin", params={"uid": logged_in.uid, "gid": logged_in.gid}
    )
    logged_in.lab.run("falcon", ["nfs-cp", url, str(direct)], timeout=60)
    through_proxy = logged_in.read("allowed/own/data.bin")
    assert through_proxy is not None
    assert through_proxy == direct.read_bytes()
    assert len(through_proxy) == FILE_BYTES


def test_proxy_other_uid_refused(logged_in: ProxyLab) -> None:
    assert logged_in.read_refused(
        "uid_not_bound", "allowed/own/data.bin", uid=OTHER_UID
    )


def test_proxy_root_uid_refused(logged_in: ProxyLab) -> None:
    assert logged_in.read_refused("root", "allowed/own/data.bin", uid=0)


def test_proxy_without_login_refused(proxy_lab: ProxyLab) -> None:
    assert proxy_lab.read_refused("uid_not_bound", "allowed/own/data.bin")


def test_proxy_after_logout_refused(proxy_lab: ProxyLab) -> None:
    proxy_lab.login()
    assert proxy_lab.read("allowed/own/data.bin") is not None
    proxy_lab.logout()
    assert proxy_lab.read_refused("uid_not_bound", "allowed/own/data.bin")


def test_proxy_forbidden_export_cannot_be_mounted(logged_in: ProxyLab) -> None:
    before = logged_in.refusals("export")
    listing = logged_in.lab.run(
        "client", ["nfs-ls", logged_in.url("secret")], timeout=60, check=False
    )
    assert listing.returncode != 0
    assert "plans.txt" not in listing.stdout
    above = logged_in.lab.run(
        "client", ["nfs-ls", logged_in.url("")], timeout=60, check=False
    )
    assert above.returncode != 0
    assert logged_in.refusals("export") == before + 2
    allowed = logged_in.lab.run(
        "client", ["nfs-ls", logged_in.url("allowed")], timeout=60, check=False
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "own" in allowed.stdout


def test_proxy_export_list_filtered(logged_in: ProxyLab) -> None:
    lab = logged_in.lab
    call = message.encode_call(
        0x5A03, mount.MOUNT_PROGRAM, 3, mount.MountProc.EXPORT, b"",
        sys_cred(logged_in.uid, logged_in.gid),
    )  # fmt: skip
    direct = send_record(lab, "falcon", lab.config.falcon_ip, 20048, call)
    proxied = send_record(lab, "client", logged_in.bastion, 20048, call)

    def directories(reply: bytes) -> list[bytes]:
        parsed = message.parse_reply(reply)
        assert isinstance(parsed, AcceptedReply)
        entries = mount.parse_export_reply(reply[parsed.results_offset :])
        return [entry.directory for entry in entries]

    assert directories(direct) == [b"/export"]
    assert directories(proxied) == []


def test_proxy_foreign_handle_refused_in_getattr_and_readdir(
    logged_in: ProxyLab,
) -> None:
    lab = logged_in.lab
    config = lab.config
    secret = mnt_handle(
        lab, "falcon", config.falcon_ip, config.mnt_port, b"/export/secret", 0, 0
    )
    allowed = mnt_handle(
        lab, "client", logged_in.bastion, 20048, b"/export/allowed",
        logged_in.uid, logged_in.gid,
    )  # fmt: skip
    for proc in (nfs3.Nfs3Proc.GETATTR, nfs3.Nfs3Proc.READDIR):
        assert nfs3_status(logged_in, proc, allowed) is nfs3.Nfs3Stat.NFS3_OK
        assert nfs3_status(logged_in, proc, secret) is nfs3.Nfs3Stat.NFS3ERR_STALE


def test_proxy_unbound_uid_gets_auth_error(logged_in: ProxyLab) -> None:
    call = message.encode_call(
        0x5A04, mount.MOUNT_PROGRAM, 3, mount.MountProc.MNT,
        mount.encode_dirpath(b"/export/allowed"), sys_cred(OTHER_UID, OTHER_UID),
    )  # fmt: skip
    reply = message.parse_reply(
        send_record(logged_in.lab, "client", logged_in.bastion, 20048, call)
    )
    assert isinstance(reply, DeniedReply)
    assert reply.auth_stat is message.AuthStat.AUTH_BADCRED


def test_proxy_nfs4_refused_by_default(logged_in: ProxyLab) -> None:
    url = logged_in.lab.nfs_url(
        "allowed/own/data.bin", version=4, host=logged_in.bastion,
        params={"uid": logged_in.uid, "gid": logged_in.gid},
    )  # fmt: skip
    out = logged_in.work / "v4.bin"
    before = logged_in.refusals("nfs4_disabled")
    result = logged_in.lab.run("client", ["nfs-cp", url, str(out)], check=False)
    assert result.returncode != 0
    assert logged_in.refusals("nfs4_disabled") > before
    assert not out.exists() or out.read_bytes() == b""


def test_proxy_malformed_record_closes_only_that_connection(
    logged_in: ProxyLab,
) -> None:
    garbage = (0x80000000 | 8).to_bytes(4, "big") + b"\xff" * 8
    argv = [sys.executable, SEND_RECORD, logged_in.bastion, "2049", garbage.hex()]
    result = logged_in.lab.run("client", argv, timeout=30)
    assert result.stdout.strip() == ""
    assert logged_in.read("allowed/own/data.bin") == data_on_falcon(logged_in)


def test_proxy_redirected_connection_uses_original_destination(
    logged_in: ProxyLab,
) -> None:
    lab = logged_in.lab
    config = lab.config
    table = f"sgh_redirect_{secrets.token_hex(2)}"
    ports = f"{{ 111, 2049, {config.mnt_port} }}"
    match = f'iifname "veth-client" ip daddr {config.falcon_ip} tcp dport {ports}'
    rules = (
        f"table ip {table} {{\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        f"    {match} redirect to :{PROXY_PORT}\n"
        "  }\n"
        "}\n"
    )
    rules_file = logged_in.work / f"{table}.nft"
    rules_file.write_text(rules)
    lab.run("bastion", ["nft", "-f", str(rules_file)])
    try:
        out = logged_in.work / "redirected.bin"
        url = lab.nfs_url(
            "allowed/own/data.bin", params={"uid": logged_in.uid, "gid": logged_in.gid}
        )
        result = lab.run("client", ["nfs-cp", url, str(out)], timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == data_on_falcon(logged_in)
        log = (logged_in.work / "proxy.log").read_text()
        assert f"server={config.falcon_ip}:111" in log
        secret = lab.nfs_url("secret", params={"uid": logged_in.uid})
        listing = lab.run("client", ["nfs-ls", secret], timeout=60, check=False)
        assert listing.returncode != 0
    finally:
        lab.run("bastion", ["nft", "delete", "table", "ip", table], check=False)


def mnt_auth_stat(proxy_lab: ProxyLab, port: int) -> message.AuthStat | None:
    """Send MNT of the allowed export; return the AUTH_ERROR status, if any."""
    call = message.encode_call(
        0x5A05, mount.MOUNT_PROGRAM, 3, mount.MountProc.MNT,
        mount.encode_dirpath(b"/export/allowed"),
        sys_cred(proxy_lab.uid, proxy_lab.gid),
    )  # fmt: skip
    reply = message.parse_reply(
        send_record(proxy_lab.lab, "client", proxy_lab.bastion, port, call)
    )
    if isinstance(reply, DeniedReply):
        return reply.auth_stat
    return None


def test_proxy_binding_expires(proxy_lab: ProxyLab) -> None:
    lab = proxy_lab.lab
    text = proxy_config(
        lab.config, proxy_lab.work, proxy_lab.user, ttl_s=EXPIRY_TTL_S,
        ports=(EXPIRY_NFS_PORT, EXPIRY_MNT_PORT, EXPIRY_LOGIN_PORT),
    )  # fmt: skip
    process = start_proxy(lab, proxy_lab.work, "expiry", text)
    try:
        proxy_lab.login(EXPIRY_LOGIN_PORT)
        logged_in_at = time.monotonic()
        assert mnt_auth_stat(proxy_lab, EXPIRY_MNT_PORT) is None
        deadline = logged_in_at + EXPIRY_TTL_S + 20
        while mnt_auth_stat(proxy_lab, EXPIRY_MNT_PORT) is None:
            assert time.monotonic() < deadline, "binding did not expire"
        assert time.monotonic() - logged_in_at >= EXPIRY_TTL_S - 0.5
        assert (
            mnt_auth_stat(proxy_lab, EXPIRY_MNT_PORT) is message.AuthStat.AUTH_BADCRED
        )
    finally:
        stop(process)


def test_proxy_nfs4_enforced_paths(proxy_lab: ProxyLab) -> None:
    lab = proxy_lab.lab
    text = proxy_config(
        lab.config, proxy_lab.work, proxy_lab.user, ttl_s=600,
        ports=(NFS4_NFS_PORT, NFS4_MNT_PORT, NFS4_LOGIN_PORT),
    ).replace('nfs4 = "refuse"', 'nfs4 = "enforce"')  # fmt: skip
    process = start_proxy(lab, proxy_lab.work, "nfs4", text)
    params = {"nfsport": NFS4_NFS_PORT, "uid": proxy_lab.uid, "gid": proxy_lab.gid}
    try:
        proxy_lab.login(NFS4_LOGIN_PORT)
        url = lab.nfs_url(
            "allowed/own/data.bin", version=4, host=proxy_lab.bastion, params=params
        )
        out = proxy_lab.work / "v4-read.bin"
        result = lab.run("client", ["nfs-cp", url, str(out)], timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == data_on_falcon(proxy_lab)
        secret = lab.nfs_url("secret", version=4, host=proxy_lab.bastion, params=params)
        listing = lab.run("client", ["nfs-ls", secret], timeout=60, check=False)
        assert listing.returncode != 0
        assert "plans.txt" not in listing.stdout
        log = (proxy_lab.work / "nfs4.log").read_text()
        assert "reason=nfs4_path:" in log
    finally:
        stop(process)
