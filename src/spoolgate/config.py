"""Read TOML configuration files into checked values.

Every part of spoolgate builds its frozen dataclasses with a
``ConfigReader``: it walks the parsed TOML by key path, checks types and
ranges, and collects every problem before raising one ``ConfigError``
that lists them all, each as ``FILE: key.path = value: what is allowed``.
Keys that no ``get_*`` call read are reported as unknown, so a typo never
passes silently.
"""

from __future__ import annotations

import math
import os
import stat
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from spoolgate.errors import ConfigError

T = TypeVar("T")

TOMLValue = object
TOMLTable = dict[str, object]


def load_toml(path: Path) -> TOMLTable:
    """Parse a TOML file; raise ConfigError if it is missing or invalid."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def check_secret_file(path: Path, setting: str) -> None:
    """Raise ConfigError unless ``path`` is a file not readable by group or others."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{setting} = {str(path)!r}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{setting} = {str(path)!r}: not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{setting} = {str(path)!r}: mode {stat.S_IMODE(st.st_mode):04o} lets "
            f"group or others read it; run: chmod 600 {path}"
        )


class ConfigReader:
    """Typed access to one parsed TOML table, collecting errors as it goes.

    Call the ``get_*`` methods for each known key, then ``finish()``,
    which raises one ConfigError naming every bad or unknown key.
    Sub-tables get their own reader through ``table()`` and share the
    error list.
    """

    def __init__(
        self,
        data: TOMLTable,
        source: str,
        prefix: str = "",
        errors: list[str] | None = None,
    ) -> None:
        self._data = data
        self._source = source
        self._prefix = prefix
        self._errors: list[str] = [] if errors is None else errors
        self._seen: set[str] = set()
        self._children: list[ConfigReader] = []

    @property
    def source(self) -> str:
        """The file name used in error messages."""
        return self._source

    def key_path(self, key: str) -> str:
        """Return the dotted path of ``key`` inside the file."""
        return f"{self._prefix}{key}"

    def error(self, key: str, value: object, problem: str) -> None:
        """Record one problem with the value of ``key``."""
        self._errors.append(
            f"{self._source}: {self.key_path(key)} = {value!r}: {problem}"
        )

    def has(self, key: str) -> bool:
        """Return True if ``key`` is present in this table."""
        return key in self._data

    def keys(self) -> Iterable[str]:
        """Return the keys present in this table."""
        return self._data.keys()

    def _get(self, key: str, kind: type[T], default: T, kind_name: str) -> T:
        self._seen.add(key)
        if key not in self._data:
            return default
        value = self._data[key]
        # bool is a subclass of int in Python, but not in TOML.
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]  # T is float here
        self.error(key, value, f"must be {kind_name}")
        return default

    def get_str(self, key: str, default: str) -> str:
        """Return a string value, or ``default`` if absent."""
        return self._get(key, str, default, "a string")

    def get_bool(self, key: str, default: bool) -> bool:
        """Return a boolean value, or ``default`` if absent."""
        return self._get(key, bool, default, "true or false")

    def get_int(
        self, key: str, default: int, *, min: int | None = None, max: int | None = None
    ) -> int:
        """Return an integer within ``[min, max]``, or ``default`` if absent."""
        value = self._get(key, int, default, "an integer")
        return self._check_range(key, value, default, min, max, value)

    def get_float(
        self,
        key: str,
        default: float,
        *,
        min: float | None = None,
        max: float | None = None,
    ) -> float:
        """Return a number within ``[min, max]``, or ``default`` if absent."""
        value = self._get(key, float, default, "a number")
        raw_value = self._data.get(key, value)
        if not math.isfinite(value):
            self.error(key, raw_value, "must be a finite number")
            return default
        return self._check_range(key, value, default, min, max, raw_value)

    def _check_range(
        self,
        key: str,
        value: T,
        default: T,
        low: object,
        high: object,
        raw_value: object,
    ) -> T:
        if low is not None and value < low:  # type: ignore[operator]
            self.error(key, raw_value, f"must be >= {low}")
            return default
        if high is not None and value > high:  # type: ignore[operator]
            self.error(key, raw_value, f"must be <= {high}")
            return default
        return value

    def get_choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        """Return a string that must be one of ``choices``."""
        allowed = list(choices)
        value = self.get_str(key, default)
        if value not in allowed:
            self.error(key, value, f"must be one of {', '.join(allowed)}")
            return default
        return value

    def get_str_list(self, key: str, default: Iterable[str]) -> tuple[str, ...]:
        """Return a list of strings as a tuple, or ``default`` if absent."""
        self._seen.add(key)
        if key not in self._data:
            return tuple(default)
        value = self._data[key]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        self.error(key, value, "must be a list of strings")
        return tuple(default)

    def get_path(self, key: str, default: str | None, base: Path) -> Path | None:
        """Return a path, relative paths taken from ``base`` (the config's folder)."""
        self._seen.add(key)
        if key not in self._data:
            return None if default is None else base / os.path.expanduser(default)
        value = self.get_str(key, "")
        if not value:
            self.error(key, value, "must be a non-empty path")
            return None
        return base / os.path.expanduser(value)

    def require(self, key: str) -> None:
        """Record an error if ``key`` is missing."""
        if key not in self._data:
            self._errors.append(
                f"{self._source}: {self.key_path(key)}: required setting is missing"
            )

    def table(self, key: str) -> ConfigReader:
        """Return a reader for the sub-table ``key`` (empty if absent)."""
        self._seen.add(key)
        value = self._data.get(key, {})
        if not isinstance(value, dict):
            self.error(key, value, "must be a table")
            value = {}
        child = ConfigReader(
            value, self._source, f"{self.key_path(key)}.", self._errors
        )
        self._children.append(child)
        return child

    def tables(self, key: str) -> list[ConfigReader]:
        """Return readers for an array of tables (``[[key]]``), empty if absent."""
        self._seen.add(key)
        value = self._data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.error(key, value, "must be an array of tables ([[...]])")
            return []
        children = []
        for i, item in enumerate(value):
            child = ConfigReader(
                item, self._source, f"{self.key_path(key)}[{i}].", self._errors
            )
            children.append(child)
            self._children.append(child)
        return children

    def unknown_keys(self) -> list[str]:
        """Return the dotted paths of keys no ``get_*`` call asked for."""
        found = [self.key_path(k) for k in self._data if k not in self._seen]
        for child in self._children:
            found.extend(child.unknown_keys())
        return found

    def finish(self) -> None:
        """Raise ConfigError listing every problem found, if there is any."""
        problems = list(self._errors)
        problems.extend(
            f"{self._source}: {key}: unknown setting" for key in self.unknown_keys()
        )
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def build(reader: ConfigReader, make: Callable[[ConfigReader], T]) -> T:
    """Run ``make`` on ``reader`` and raise the collected errors, if any."""
    result = make(reader)
    reader.finish()
    return result
