"""Tests for reading the RPC proxy and policy settings from TOML tables."""

from __future__ import annotations

import re
import tomllib

import pytest

from spoolgate.config import ConfigReader, build
from spoolgate.errors import ConfigError
from spoolgate.rpc.message import AuthFlavor
from spoolgate.tunnel.rpcpolicy import NFS4Mode
from spoolgate.tunnel.rpcproxy import Listener, ProxyConfig, read_proxy_config

FULL = """
[rpc_proxy]
nfs4 = "enforce"
handle_table_size = 1000
reserved_source_port = false

[[rpc_proxy.listener]]
listen = "10.0.0.1:2049"
upstream = "10.0.0.2:2049"

[[rpc_proxy.listener]]
listen = "0.0.0.0:7450"

[[policy.client]]
name = "alice"
address = "10.231.9.2"
exports = ["/export", "/srv/nfs/"]
users = ["ann", "bob"]
allow_root = true
flavors = ["sys", "none"]

[[policy.client]]
name = "eve"
exports = ["/other"]

[[policy.user]]
name = "bob"
exports = ["/export/bob"]
"""


def read(text: str) -> ProxyConfig:
    return build(ConfigReader(tomllib.loads(text), "test.toml"), read_proxy_config)


def test_read_full_config() -> None:
    config = read(FULL)
    assert config.policy.nfs4 is NFS4Mode.ENFORCE
    assert config.policy.handle_table_size == 1000
    assert not config.proxy.reserved_source_port
    assert config.listeners == (
        Listener("10.0.0.1", 2049, ("10.0.0.2", 2049)),
        Listener("0.0.0.0", 7450, None),
    )
    alice, eve = config.policy.clients
    assert alice.exports == ((b"export",), (b"srv", b"nfs"))
    assert alice.users == frozenset({"ann", "bob"})
    assert alice.allow_root
    assert alice.flavors == frozenset({AuthFlavor.AUTH_SYS, AuthFlavor.AUTH_NONE})
    assert eve.users is None
    assert not eve.allow_root
    assert eve.flavors == frozenset({AuthFlavor.AUTH_SYS})
    assert config.policy.user_exports == {"bob": ((b"export", b"bob"),)}
    assert config.addresses == {"10.231.9.2": "alice"}


def test_read_defaults() -> None:
    config = read("")
    assert config.policy.nfs4 is NFS4Mode.REFUSE
    assert config.policy.clients == ()
    assert config.proxy.reserved_source_port
    assert config.listeners == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[rpc_proxy]\nnfs4 = "maybe"', "rpc_proxy.nfs4"),
        ("[rpc_proxy]\nhandle_table_size = 1", "handle_table_size"),
        ('[[rpc_proxy.listener]]\nlisten = "nohost"', "listener[0].listen"),
        ('[[rpc_proxy.listener]]\nupstream = "a:1"', "listen: required"),
        ('[[policy.client]]\nname = "a"\nexports = ["/x/../y"]', "exports"),
        ('[[policy.client]]\nname = "a"\nexports = ["relative"]', "absolute"),
        (
            '[[policy.client]]\nname = "a"\nexports = ["/x"]\nflavors = ["krb"]',
            "flavors",
        ),
        ('[[policy.client]]\nname = "a"\nexports = ["/x"]\naddress = "x"', "address"),
        ('[[policy.client]]\nname = "a"', "exports: required"),
        ('[[policy.client]]\nname = "a"\nexports = ["/x"]\ncolour = 1', "colour"),
    ],
)
def test_read_bad_settings_named(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        read(text)
