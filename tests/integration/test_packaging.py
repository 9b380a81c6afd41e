"""Checks of ``pyproject.toml`` that a build would only warn about."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def load_pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)


def test_pyproject_license_is_spdx_string() -> None:
    # setuptools 77 and later warn on the older table form {text = ...}.
    assert load_pyproject()["project"]["license"] == "MIT"


def test_pyproject_requires_setuptools_with_spdx_support() -> None:
    requires = load_pyproject()["build-system"]["requires"]
    assert "setuptools>=77" in requires
