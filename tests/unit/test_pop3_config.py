"""Tests for spoolgate.pop3.config: TOML to ServerConfig, and user names."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoolgate.errors import ConfigError, MboxError
from spoolgate.mbox.index import Variant
from spoolgate.pop3.config import (
    AuthBackend,
    MaildropConfig,
    check_maildrop_user,
    load_server_config,
)
from spoolgate.pop3.server import build_runtime


def write(tmp_path: Path, text: str) -> Path:
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    passwd.chmod(0o600)
    path = tmp_path / "pop3d.toml"
    path.write_text('[auth]\npasswd_file = "passwd"\n' + text)
    return path


def test_config_defaults_without_tls(tmp_path: Path) -> None:
    config = load_server_config(write(tmp_path, "[listen]\npop3s_port = -1\n"))
    assert config.listen.pop3_port == 110
    assert config.listen.pop3s_port is None
    assert config.tls is None
    assert config.auth.backend is AuthBackend.PASSWD
    assert config.auth.passwd_file == tmp_path / "passwd"
    assert config.idle_timeout_s == 600
    assert config.maildrop.mbox_path("ann") == Path("/var/mail/ann")
    assert config.maildrop.variant is Variant.MBOXO


def test_config_pop3s_without_tls_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"POP3S needs \[tls\]"):
        load_server_config(write(tmp_path, ""))


def test_config_lists_every_bad_key(tmp_path: Path) -> None:
    text = (
        "[listen]\npop3s_port = -1\n"
        '[maildrop]\nmbox = "/var/mail/fixed"\ncache = "relative/{user}"\n'
        '[pop3]\nidle_timeout_s = -5\ncolour = "blue"\n'
    )
    with pytest.raises(ConfigError) as failure:
        load_server_config(write(tmp_path, text))
    message = str(failure.value)
    assert "maildrop.mbox = '/var/mail/fixed': must contain {user}" in message
    assert "maildrop.cache = 'relative/{user}': must be an absolute path" in message
    assert "pop3.idle_timeout_s = -5: must be >= 0.1" in message
    assert "pop3.colour: unknown setting" in message


def test_config_template_other_placeholder_rejected(tmp_path: Path) -> None:
    text = '[listen]\npop3s_port = -1\n[maildrop]\nmbox = "/var/mail/{home}/{user}"\n'
    with pytest.raises(ConfigError, match="only the placeholder"):
        load_server_config(write(tmp_path, text))


def test_config_readable_passwd_file_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[listen]\npop3s_port = -1\n")
    (tmp_path / "passwd").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_server_config(path)


@pytest.mark.parametrize("user", ["", ".", "..", ".hidden", "a/b", "../etc", "a\0b"])
def test_maildrop_user_unsafe_rejected(user: str) -> None:
    with pytest.raises(MboxError):
        check_maildrop_user(user)
    with pytest.raises(MboxError):
        MaildropConfig().mbox_path(user)


def test_maildrop_user_plain_accepted() -> None:
    config = MaildropConfig(mbox="/srv/mail/{user}.mbox", cache="/srv/idx/{user}")
    assert config.mbox_path("ann.lee") == Path("/srv/mail/ann.lee.mbox")
    assert config.cache_dir("ann.lee") == Path("/srv/idx/ann.lee")


def test_config_line_and_buffer_limits_reach_protocol(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[listen]\npop3s_port = -1\n"
        "[pop3]\nmax_sasl_line_octets = 2000\nmax_buffered_octets = 100000\n",
    )
    protocol = build_runtime(load_server_config(path)).protocol
    assert protocol.max_sasl_line_octets == 2000
    assert protocol.max_buffered_octets == 100000


def test_config_login_delay_unknown_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[listen]\npop3s_port = -1\n[pop3]\nlogin_delay_s = 60\n")
    with pytest.raises(ConfigError, match="login_delay_s"):
        load_server_config(path)
