"""Tests for spoolgate.tunnel.config, nft rules and the GETPORT codec."""

import datetime
import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.errors import ConfigError, TunnelError
from spoolgate.tunnel import getport, keys, nft
from spoolgate.tunnel.config import (
    load_bastion_config,
    load_tunnel_config,
    parse_endpoint,
)

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
PIN = "sha256:" + "ab" * 32


def write_tunnel(tmp_path: Path, extra: str = "", tun: str = "") -> Path:
    keys.write_key_pair(tmp_path, "alice", now=NOW)
    path = tmp_path / "tunnel.toml"
    path.write_text(
        "[tunnel]\n"
        'bastion = "192.0.2.10:7443"\n'
        f'bastion_fingerprint = "{PIN}"\n'
        'key = "alice.key"\ncert = "alice.crt"\n'
        f"{extra}"
        "[tun]\n"
        'address = "10.231.9.2"\n'
        'routes = ["10.231.3.2/32"]\n'
        f"{tun}"
    )
    return path


def write_bastion(tmp_path: Path, clients: str, extra: str = "") -> Path:
    if not (tmp_path / "bastion.key").exists():
        keys.write_key_pair(tmp_path, "bastion", now=NOW)
    path = tmp_path / "bastion.toml"
    path.write_text(
        "[bastion]\n"
        'listen = "0.0.0.0:7443"\n'
        'key = "bastion.key"\ncert = "bastion.crt"\n'
        f"{extra}"
        "[tun]\n"
        'address = "10.231.9.1/24"\n'
        "[nfs]\n"
        'server = "10.231.3.2"\n'
        f"{clients}"
    )
    return path


def client_table(pair: keys.KeyPair, name: str, address: str) -> str:
    return (
        "[[client]]\n"
        f'name = "{name}"\n'
        f'cert = "{pair.cert_path.name}"\n'
        f'fingerprint = "{pair.fingerprint}"\n'
        f'address = "{address}"\n'
    )


def test_tunnel_config_defaults(tmp_path: Path) -> None:
    config = load_tunnel_config(write_tunnel(tmp_path))
    assert (config.bastion_host, config.bastion_port) == ("192.0.2.10", 7443)
    assert config.bastion_fingerprint == PIN
    assert config.key == tmp_path / "alice.key"
    assert config.tun_name == "sgtun0"
    assert config.mtu == 1500
    assert config.routes == (ipaddress.ip_network("10.231.3.2/32"),)
    assert config.timers.keepalive_s == 10.0
    assert config.timers.dead_peer_s == 30.0
    assert config.backoff_max_s == 30.0


def test_tunnel_config_readable_key_rejected(tmp_path: Path) -> None:
    path = write_tunnel(tmp_path)
    (tmp_path / "alice.key").chmod(0o640)
    with pytest.raises(ConfigError, match=r"tunnel\.key = .*chmod 600"):
        load_tunnel_config(path)


def test_tunnel_config_reports_every_error(tmp_path: Path) -> None:
    path = write_tunnel(
        tmp_path,
        extra="keepalive_s = 40.0\ntypo = 1\n",
        tun='name = "a-very-long-interface-name"\nmtu = 100\n',
    )
    with pytest.raises(ConfigError) as info:
        load_tunnel_config(path)
    message = str(info.value)
    assert "tunnel.dead_peer_s = 30.0: must be > keepalive_s" in message
    assert "tunnel.typo: unknown setting" in message
    assert "tun.name = 'a-very-long-interface-name'" in message
    assert "tun.mtu = 100: must be >= 576" in message


def test_tunnel_config_missing_required_keys(tmp_path: Path) -> None:
    path = tmp_path / "tunnel.toml"
    path.write_text("[tunnel]\n[tun]\n")
    with pytest.raises(ConfigError) as info:
        load_tunnel_config(path)
    message = str(info.value)
    for key in ("tunnel.bastion", "tunnel.bastion_fingerprint", "tunnel.key",
                "tunnel.cert", "tun.address", "tun.routes"):  # fmt: skip
        assert f"{key}: required setting is missing" in message


def test_bastion_config_reads_clients(tmp_path: Path) -> None:
    alice = keys.write_key_pair(tmp_path, "alice", now=NOW)
    config = load_bastion_config(
        write_bastion(tmp_path, client_table(alice, "alice", "10.231.9.2"))
    )
    assert config.tun_interface == ipaddress.ip_interface("10.231.9.1/24")
    assert config.server == ipaddress.ip_address("10.231.3.2")
    assert (config.portmap_port, config.nfs_port, config.mount_port) == (111, 2049, 0)
    assert config.nat is True
    assert len(config.clients) == 1
    assert config.clients[0].fingerprint == alice.fingerprint
    assert config.clients[0].address == ipaddress.ip_address("10.231.9.2")


def test_bastion_config_fingerprint_must_match_cert(tmp_path: Path) -> None:
    alice = keys.write_key_pair(tmp_path, "alice", now=NOW)
    table = client_table(alice, "alice", "10.231.9.2").replace(alice.fingerprint, PIN)
    with pytest.raises(
        ConfigError, match=r"client\[0\]\.fingerprint .* does not match"
    ):
        load_bastion_config(write_bastion(tmp_path, table))


def test_bastion_config_duplicate_address_rejected(tmp_path: Path) -> None:
    alice = keys.write_key_pair(tmp_path, "alice", now=NOW)
    bob = keys.write_key_pair(tmp_path, "bob", now=NOW)
    tables = client_table(alice, "alice", "10.231.9.2") + client_table(
        bob, "bob", "10.231.9.2"
    )
    with pytest.raises(ConfigError, match=r"client\[1\]\.address .* already taken"):
        load_bastion_config(write_bastion(tmp_path, tables))


def test_bastion_config_address_outside_network_rejected(tmp_path: Path) -> None:
    alice = keys.write_key_pair(tmp_path, "alice", now=NOW)
    table = client_table(alice, "alice", "10.99.0.2")
    with pytest.raises(ConfigError, match=r"must be inside 10\.231\.9\.0/24"):
        load_bastion_config(write_bastion(tmp_path, table))


def test_bastion_config_restart_settings_ignore_clients(tmp_path: Path) -> None:
    alice = keys.write_key_pair(tmp_path, "alice", now=NOW)
    with_client = load_bastion_config(
        write_bastion(tmp_path, client_table(alice, "alice", "10.231.9.2"))
    )
    without = load_bastion_config(write_bastion(tmp_path, ""))
    assert with_client.settings_needing_restart() == without.settings_needing_restart()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("host:1", ("host", 1)), ("[fd00::1]:7443", ("fd00::1", 7443))],
)
def test_parse_endpoint_valid(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["host", ":80", "host:0", "host:70000", "fd00::1:80"])
def test_parse_endpoint_invalid_raises(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_nft_ruleset_names_ports_and_networks() -> None:
    script = nft.ruleset(
        nft.table_name("sgbast0"),
        "sgbast0",
        ipaddress.ip_network("10.231.9.0/24"),
        ipaddress.ip_address("10.231.3.2"),
        [2049, 111, 20048],
    )
    assert "table inet spoolgate_sgbast0 {" in script
    assert (
        'iifname "sgbast0" ip daddr 10.231.3.2 tcp dport { 111, 2049, 20048 }' in script
    )
    assert "ip saddr 10.231.9.0/24 ip daddr 10.231.3.2 masquerade" in script
    assert script.startswith("add table inet spoolgate_sgbast0\ndelete table")


def test_nft_ruleset_forwards_to_tun_only_replies() -> None:
    script = nft.ruleset(
        "t", "sgbast0", ipaddress.ip_network("10.231.9.0/24"),
        ipaddress.ip_address("10.231.3.2"), [2049],
    )  # fmt: skip
    forward = script.split("chain forward")[1].split("chain postrouting")[0]
    lines = [line.strip() for line in forward.splitlines()]
    established = lines.index('oifname "sgbast0" ct state established,related accept')
    assert lines.index('oifname "sgbast0" drop') == established + 1


def test_nft_ruleset_ipv6_server_uses_ip6() -> None:
    script = nft.ruleset(
        "t", "tun0", ipaddress.ip_network("fd00:9::/64"),
        ipaddress.ip_address("fd00:3::2"), [2049],
    )  # fmt: skip
    assert "ip6 saddr fd00:9::/64 ip6 daddr fd00:3::2 masquerade" in script


def getport_reply(xid: int, port: int, accept_stat: int = 0) -> bytes:
    return struct.pack(">IIIIIII", xid, 1, 0, 0, 0, accept_stat, port)


def test_getport_call_layout() -> None:
    call = getport.encode_getport_call(7, getport.MOUNT_PROGRAM, 3)
    (mark,) = struct.unpack_from(">I", call)
    assert mark == 0x80000000 | (len(call) - 4)
    fields = struct.unpack_from(">14I", call, 4)
    assert fields[:6] == (7, 0, 2, 100000, 2, 3)
    assert fields[10:] == (100005, 3, 6, 0)


def test_getport_reply_returns_port() -> None:
    assert getport.decode_getport_reply(7, getport_reply(7, 20048)) == 20048


def test_getport_reply_wrong_xid_raises() -> None:
    with pytest.raises(TunnelError, match="xid 8"):
        getport.decode_getport_reply(7, getport_reply(8, 20048))


def test_getport_reply_failed_call_raises() -> None:
    with pytest.raises(TunnelError, match="accept_stat 1"):
        getport.decode_getport_reply(7, getport_reply(7, 0, accept_stat=1))


@given(st.binary(max_size=64))
def test_getport_reply_any_bytes_port_or_error(data: bytes) -> None:
    try:
        port = getport.decode_getport_reply(7, data)
    except TunnelError:
        return
    assert 0 <= port < 2**32
