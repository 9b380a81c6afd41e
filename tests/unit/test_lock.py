"""Tests for the settings and messages of spoolgate.mbox.lock (no files)."""

from pathlib import Path

import pytest

from spoolgate.config import ConfigReader, build
from spoolgate.errors import ConfigError
from spoolgate.mbox.lock import (
    DEFAULT_ORDER,
    Busy,
    LockKind,
    LockSettings,
    _timeout,
)


def read_settings(table: dict[str, object]) -> LockSettings:
    reader = ConfigReader({"locking": table}, "t.toml")
    return build(reader, lambda r: LockSettings.from_config(r.table("locking")))


def config_error(table: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        read_settings(table)
    return str(info.value)


def test_settings_default_is_dotlock_then_fcntl() -> None:
    settings = read_settings({})
    assert settings.order == (LockKind.DOTLOCK, LockKind.FCNTL)
    assert settings == LockSettings()
    assert DEFAULT_ORDER == settings.order


def test_settings_default_stale_age_is_300_s() -> None:
    assert LockSettings().dotlock_stale_s == 300.0
    assert LockSettings().dotlock_refresh_s < LockSettings().dotlock_stale_s


def test_settings_custom_order_kept() -> None:
    settings = read_settings({"order": ["fcntl", "flock", "dotlock"]})
    assert settings.order == (LockKind.FCNTL, LockKind.FLOCK, LockKind.DOTLOCK)


def test_settings_all_keys_read() -> None:
    settings = read_settings(
        {
            "timeout_s": 2,
            "dotlock_stale_s": 60,
            "dotlock_refresh_s": 5.5,
            "dotlock_optional": True,
        }
    )
    assert settings.timeout_s == 2.0
    assert settings.dotlock_stale_s == 60.0
    assert settings.dotlock_refresh_s == 5.5
    assert settings.dotlock_optional is True


def test_settings_unknown_lock_rejected() -> None:
    message = config_error({"order": ["dotlock", "lockf"]})
    assert "t.toml: locking.order = ['dotlock', 'lockf']" in message
    assert "unknown lock 'lockf'" in message
    assert "dotlock, fcntl, flock" in message


def test_settings_duplicate_lock_rejected() -> None:
    message = config_error({"order": ["fcntl", "fcntl"]})
    assert "'fcntl' is listed twice" in message


def test_settings_empty_order_rejected() -> None:
    message = config_error({"order": []})
    assert "locking.order = []: must name at least one" in message


def test_settings_refresh_not_below_stale_rejected() -> None:
    message = config_error({"dotlock_stale_s": 10, "dotlock_refresh_s": 10})
    assert "locking.dotlock_refresh_s = 10.0" in message
    assert "must be less than dotlock_stale_s (10)" in message


def test_settings_negative_timeout_rejected() -> None:
    message = config_error({"timeout_s": -1})
    assert "locking.timeout_s = -1: must be >= 0.0" in message


def test_settings_unknown_key_rejected() -> None:
    message = config_error({"stale_s": 5})
    assert "locking.stale_s: unknown setting" in message


def test_timeout_message_names_dotlock_age_and_settings() -> None:
    busy = Busy(LockKind.DOTLOCK, "dotlock /var/mail/ann.lock", 40.2)
    error = _timeout(Path("/var/mail/ann"), LockSettings(timeout_s=2), busy, 2.01)
    message = str(error)
    assert message.startswith("cannot lock /var/mail/ann: ")
    assert "dotlock /var/mail/ann.lock held for 40 s" in message
    assert "(stale after 300 s; see locking.dotlock_stale_s)" in message
    assert "timed out after 2.0 s (see locking.timeout_s = 2)" in message


def test_timeout_message_names_fcntl_holder() -> None:
    busy = Busy(LockKind.FCNTL, "pid 4242")
    error = _timeout(Path("/var/mail/ann"), LockSettings(), busy, 30.0)
    assert "fcntl lock held by pid 4242" in str(error)
    assert "locking.timeout_s = 30" in str(error)
