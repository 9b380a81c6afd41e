"""Tests for spoolgate.config: typed reads and collected errors."""

from pathlib import Path

import pytest

from spoolgate.config import ConfigReader, check_secret_file, load_toml
from spoolgate.errors import ConfigError


def test_reader_returns_typed_values_and_defaults() -> None:
    reader = ConfigReader({"port": 110, "name": "x", "on": True}, "t.toml")
    assert reader.get_int("port", 1) == 110
    assert reader.get_str("name", "") == "x"
    assert reader.get_bool("on", False) is True
    assert reader.get_float("delay_s", 2.5) == 2.5
    reader.finish()


def test_reader_collects_every_error_at_once() -> None:
    reader = ConfigReader({"port": "110", "delay_s": -1, "typo": 1}, "t.toml")
    reader.get_int("port", 110)
    reader.get_float("delay_s", 1.0, min=0)
    with pytest.raises(ConfigError) as info:
        reader.finish()
    message = str(info.value)
    assert "t.toml: port = '110': must be an integer" in message
    assert "t.toml: delay_s = -1: must be >= 0" in message
    assert "t.toml: typo: unknown setting" in message


def test_reader_bool_is_not_an_int() -> None:
    reader = ConfigReader({"port": True}, "t.toml")
    assert reader.get_int("port", 7) == 7
    with pytest.raises(ConfigError, match="must be an integer"):
        reader.finish()


def test_reader_nested_tables_report_key_paths() -> None:
    reader = ConfigReader({"pop3": {"port": 0}, "clients": [{"x": 1}]}, "t.toml")
    reader.table("pop3").get_int("port", 110, min=1)
    for client in reader.tables("clients"):
        client.get_str("name", "")
    with pytest.raises(ConfigError) as info:
        reader.finish()
    assert "pop3.port = 0: must be >= 1" in str(info.value)
    assert "clients[0].x: unknown setting" in str(info.value)


def test_load_toml_reports_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(path)


def test_load_toml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_toml(tmp_path / "nope.toml")


def test_secret_file_readable_by_group_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("secret")
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        check_secret_file(path, "tls.key")
    path.chmod(0o600)
    check_secret_file(path, "tls.key")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_reader_float_rejects_nan_and_infinity(value: float) -> None:
    reader = ConfigReader({"timeout_s": value}, "t.toml")
    assert reader.get_float("timeout_s", 30.0, min=0) == 30.0
    with pytest.raises(ConfigError, match="must be a finite number"):
        reader.finish()
