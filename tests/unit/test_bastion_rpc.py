"""Tests for the bastion's RPC policy wiring: config, nft rules, reloads."""

from __future__ import annotations

import datetime
import ipaddress
import runpy
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import ConfigError, RPCError
from spoolgate.rpc import mount
from spoolgate.rpc.message import AuthSys, MsgType, encode_auth_sys, encode_call
from spoolgate.rpc.record import Record, encode_record
from spoolgate.tunnel import keys, nft
from spoolgate.tunnel.bastion import kernel_rules, revoked_clients
from spoolgate.tunnel.config import ClientEntry, load_bastion_config
from spoolgate.tunnel.rpcpolicy import (
    Answer,
    ClientRule,
    Forward,
    PolicySettings,
    Refusal,
    RPCPolicy,
    UserIdentity,
    split_path,
)
from spoolgate.tunnel.rpcproxy import _Raw, _RecordSplitter

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
ANN = UserIdentity("ann", 1000, frozenset({1000}))
BOB = UserIdentity("bob", 1001, frozenset({1001}))

POLICY = """
[[policy.client]]
name = "alice"
exports = ["/export"]
"""


def write_bastion(
    tmp_path: Path, extra: str = "", *, bastion_extra: str = "", clients: int = 1
) -> Path:
    tmp_path.mkdir(exist_ok=True)
    if not (tmp_path / "bastion.key").exists():
        keys.write_key_pair(tmp_path, "bastion", now=NOW)
    text = (
        "[bastion]\n"
        'listen = "0.0.0.0:7443"\n'
        'key = "bastion.key"\ncert = "bastion.crt"\n'
        f"{bastion_extra}"
        "[tun]\n"
        'address = "10.231.9.1/24"\n'
        "[nfs]\n"
        'server = "10.231.3.2"\n'
        "mount_port = 20048\n"
    )
    for index, name in enumerate(["alice", "bob"][:clients]):
        if not (tmp_path / f"{name}.key").exists():
            keys.write_key_pair(tmp_path, name, now=NOW)
        pair_fp = keys.cert_fingerprint(keys.load_cert_pem(tmp_path / f"{name}.crt"))
        text += (
            "[[client]]\n"
            f'name = "{name}"\ncert = "{name}.crt"\n'
            f'fingerprint = "{pair_fp}"\n'
            f'address = "10.231.9.{index + 2}"\n'
        )
    path = tmp_path / "bastion.toml"
    path.write_text(text + extra)
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_bastion_config(path)
    return str(caught.value)


# -- config ---------------------------------------------------------------------


def test_bastion_config_without_policy_has_no_rpc(tmp_path: Path) -> None:
    config = load_bastion_config(write_bastion(tmp_path))
    assert config.rpc is None


def test_bastion_config_policy_enables_rpc(tmp_path: Path) -> None:
    config = load_bastion_config(write_bastion(tmp_path, POLICY))
    assert config.rpc is not None
    assert config.rpc.port == 7450
    assert config.rpc.login.host == "10.231.9.1"
    assert config.rpc.login.port == 7451
    assert [rule.name for rule in config.rpc.policy.clients] == ["alice"]


def test_bastion_config_enabled_without_policy(tmp_path: Path) -> None:
    extra = "[rpc_proxy]\nenabled = true\nport = 7000\n"
    config = load_bastion_config(write_bastion(tmp_path, extra))
    assert config.rpc is not None
    assert config.rpc.port == 7000
    assert config.rpc.policy.clients == ()


def test_bastion_config_bad_fingerprint_no_follow_on_error(tmp_path: Path) -> None:
    path = write_bastion(tmp_path, POLICY)
    text = path.read_text()
    start = text.index('fingerprint = "sha256:') + len('fingerprint = "sha256:')
    digit = "1" if text[start] != "1" else "2"
    path.write_text(text[:start] + digit + text[start + 1 :])
    message = config_error(path)
    assert "does not match" in message
    assert "names no [[client]] entry" not in message


def test_bastion_config_missing_cert_no_follow_on_error(tmp_path: Path) -> None:
    path = write_bastion(tmp_path, POLICY)
    (tmp_path / "alice.crt").unlink()
    message = config_error(path)
    assert "client[0].cert" in message
    assert "names no [[client]] entry" not in message


def test_bastion_config_errors_reported_together(tmp_path: Path) -> None:
    extra = (
        POLICY + '[[policy.client]]\nname = "mallory"\nexports = ["/x"]\n'
        'address = "10.231.9.9"\n'
        '[[rpc_proxy.listener]]\nlisten = "0.0.0.0:2049"\n'
        '[login]\nlisten = "10.0.0.1:7450"\n'
    )
    message = config_error(write_bastion(tmp_path, extra))
    assert "policy.client[1].name = 'mallory': names no [[client]] entry" in message
    assert "policy.client[1].address" in message
    assert "rpc_proxy.listener" in message
    assert "login.listen = '10.0.0.1:7450': the bastion's login service" in message
    assert "uses rpc_proxy.port (7450)" in message


def test_bastion_config_duplicate_policy_name_rejected(tmp_path: Path) -> None:
    message = config_error(write_bastion(tmp_path, POLICY + POLICY))
    assert "is used by another [[policy.client]]" in message


def test_bastion_config_enabled_false_with_policy_rejected(tmp_path: Path) -> None:
    extra = POLICY + "[rpc_proxy]\nenabled = false\n"
    message = config_error(write_bastion(tmp_path, extra))
    assert "rpc_proxy.enabled = False: contradicts" in message


def test_bastion_config_login_without_proxy_rejected(tmp_path: Path) -> None:
    message = config_error(write_bastion(tmp_path, "[login]\nttl_s = 60\n"))
    assert "login = '[login]': has no effect while the RPC proxy is off" in message


def test_bastion_config_rules_reloadable_rest_not(tmp_path: Path) -> None:
    first = load_bastion_config(write_bastion(tmp_path, POLICY))
    wider = POLICY.replace('["/export"]', '["/export", "/srv"]')
    second = load_bastion_config(write_bastion(tmp_path, wider))
    assert first.settings_needing_restart() == second.settings_needing_restart()
    moved = load_bastion_config(
        write_bastion(tmp_path, POLICY + "[rpc_proxy]\nport = 7000\n")
    )
    assert first.settings_needing_restart() != moved.settings_needing_restart()


# -- nftables ---------------------------------------------------------------------


def test_proxy_ruleset_redirects_and_forwards_nothing() -> None:
    script = nft.proxy_ruleset(
        "spoolgate_sgbast0", "sgbast0", ipaddress.ip_address("10.231.9.1"),
        ipaddress.ip_address("10.231.3.2"), [2049, 111, 20048], (7450, 7451),
    )  # fmt: skip
    assert (
        'iifname != "sgbast0" ip daddr 10.231.9.1 tcp dport { 7450, 7451 } drop'
        in script
    )
    assert (
        'iifname "sgbast0" ip daddr 10.231.3.2 tcp dport { 111, 2049, 20048 } '
        "redirect to :7450" in script
    )
    assert "type nat hook prerouting priority dstnat" in script
    assert "masquerade" not in script
    forward = script.split("chain forward")[1]
    assert 'iifname "sgbast0" drop' in forward
    assert 'oifname "sgbast0" drop' in forward
    assert "accept\n" not in forward


def test_kernel_rules_with_proxy_ignore_nat(tmp_path: Path) -> None:
    path = write_bastion(tmp_path, POLICY, bastion_extra="nat = false\n")
    rules = kernel_rules(load_bastion_config(path), frozenset({111, 2049, 20048}))
    assert rules is not None
    assert "redirect to :7450" in rules._script
    assert not rules._forwarding


def test_kernel_rules_without_proxy_honour_nat(tmp_path: Path) -> None:
    plain = kernel_rules(
        load_bastion_config(write_bastion(tmp_path)), frozenset({2049})
    )
    assert plain is not None
    assert "masquerade" in plain._script
    assert plain._forwarding
    path = write_bastion(tmp_path / "b", bastion_extra="nat = false\n")
    assert kernel_rules(load_bastion_config(path), frozenset({2049})) is None


# -- reload -------------------------------------------------------------------------


def entry(
    name: str, address: str, fingerprint: str = "sha256:" + "ab" * 32
) -> ClientEntry:
    return ClientEntry(name, fingerprint, ipaddress.ip_address(address), "")


def test_revoked_clients_changed_or_removed() -> None:
    old = (
        entry("alice", "10.0.0.2"),
        entry("bob", "10.0.0.3"),
        entry("eve", "10.0.0.4"),
    )
    new = (entry("alice", "10.0.0.2"), entry("bob", "10.0.0.9"))
    assert revoked_clients(old, new) == frozenset({"bob", "eve"})


def rules(*names: str, users: frozenset[str] | None = None) -> PolicySettings:
    return PolicySettings(
        tuple(ClientRule(n, (split_path(b"/export"),), users=users) for n in names)
    )


def mnt(uid: int) -> bytes:
    cred = encode_auth_sys(AuthSys(0, b"c", uid, uid))
    return encode_call(
        7, 100005, 3, mount.MountProc.MNT, mount.encode_dirpath(b"/export"), cred
    )


def test_policy_update_keeps_bindings_of_unchanged_client() -> None:
    policy = RPCPolicy(rules("alice", "bob"))
    policy.bind("alice", ANN, 0.0, 100.0)
    policy.update(rules("alice", "bob"))
    assert isinstance(policy.check_call("alice", mnt(1000), 1.0), Forward)


def test_policy_update_reset_drops_bindings() -> None:
    policy = RPCPolicy(rules("alice", "bob"))
    policy.bind("alice", ANN, 0.0, 100.0)
    policy.bind("bob", BOB, 0.0, 100.0)
    policy.update(rules("alice", "bob"), reset={"alice"})
    answer = policy.check_call("alice", mnt(1000), 1.0)
    assert isinstance(answer, Answer)
    assert answer.refusal is Refusal.UID_NOT_BOUND
    assert isinstance(policy.check_call("bob", mnt(1001), 1.0), Forward)


def test_policy_update_removed_client_unknown() -> None:
    policy = RPCPolicy(rules("alice", "bob"))
    policy.bind("bob", BOB, 0.0, 100.0)
    policy.update(rules("alice"))
    answer = policy.check_call("bob", mnt(1001), 1.0)
    assert isinstance(answer, Answer)
    assert answer.refusal is Refusal.UNKNOWN_CLIENT


def test_policy_update_narrower_users_drops_binding() -> None:
    policy = RPCPolicy(rules("alice"))
    policy.bind("alice", ANN, 0.0, 100.0)
    policy.bind("alice", BOB, 0.0, 100.0)
    policy.update(rules("alice", users=frozenset({"bob"})))
    assert [b.user.name for b in policy.bindings("alice", 1.0)] == ["bob"]


def test_bastion_config_process_default_separate(tmp_path: Path) -> None:
    config = load_bastion_config(write_bastion(tmp_path, POLICY))
    assert config.rpc is not None
    assert config.rpc.process == "separate"


def test_bastion_config_process_inline(tmp_path: Path) -> None:
    extra = POLICY + '[rpc_proxy]\nprocess = "inline"\n'
    config = load_bastion_config(write_bastion(tmp_path, extra))
    assert config.rpc is not None
    assert config.rpc.process == "inline"


def test_bastion_config_process_unknown_rejected(tmp_path: Path) -> None:
    extra = POLICY + '[rpc_proxy]\nprocess = "thread"\n'
    with pytest.raises(ConfigError, match=r"rpc_proxy\.process"):
        load_bastion_config(write_bastion(tmp_path, extra))


def _message(xid: int, body: bytes) -> bytes:
    return struct.pack(">II", xid, MsgType.REPLY) + body


def _passes_even(head: bytes) -> bool:
    return struct.unpack_from(">I", head)[0] % 2 == 0


@given(
    messages=st.lists(
        st.tuples(st.integers(0, 5), st.binary(max_size=40), st.integers(1, 20)),
        max_size=6,
    ),
    cuts=st.lists(st.integers(1, 30), max_size=20),
)
def test_splitter_any_cuts_keep_bytes_and_records(
    messages: list[tuple[int, bytes, int]], cuts: list[int]
) -> None:
    # Even xids pass through, unless the first fragment is too short to
    # show the header; the rest come out whole.
    stream = b"".join(encode_record(_message(x, b), f) for x, b, f in messages)
    splitter = _RecordSplitter(1 << 20, _passes_even)
    items = []
    position = 0
    for cut in [*cuts, len(stream)]:
        items += splitter.feed(stream[position : position + cut])
        position += cut
    raw = b"".join(item.data for item in items if isinstance(item, _Raw))
    whole = [item.payload for item in items if isinstance(item, Record)]
    passed = [(x, b, f) for x, b, f in messages if x % 2 == 0 and f >= 8]
    assert raw == b"".join(encode_record(_message(x, b), f) for x, b, f in passed)
    assert whole == [_message(x, b) for x, b, f in messages if (x, b, f) not in passed]


def test_splitter_passes_before_record_complete() -> None:
    record = encode_record(_message(2, b"\0" * 1000))
    splitter = _RecordSplitter(1 << 20, _passes_even)
    first = splitter.feed(record[:100])
    assert (
        b"".join(item.data for item in first if isinstance(item, _Raw))
        == (record[:100])
    )


def test_splitter_oversized_passed_record_rejected() -> None:
    splitter = _RecordSplitter(64, _passes_even)
    with pytest.raises(RPCError, match="exceeds the limit of 64"):
        splitter.feed(encode_record(_message(2, b"\0" * 100), 40))


# runpy warns that the module is already imported; that is expected here.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", ["rpcservices", "rpcproxy"])
def test_tunnel_logger_name_outside_import(module: str) -> None:
    # Both modules run with ``python -m``, so ``__name__`` is not the import
    # name; run_module with another run_name shows the same case.
    name = f"spoolgate.tunnel.{module}"
    # alter_sys puts the module in sys.modules, which dataclasses need.
    namespace = runpy.run_module(name, run_name="__child__", alter_sys=True)
    assert namespace["log"].name == name
