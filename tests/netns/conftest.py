"""Fixtures for tests in network namespaces: NFS labs that clean up after themselves.

Every lab gets a random prefix (sglXXXX) and random nets in 10.210.0.0/16, so
leftovers of an earlier run or labs of other test modules never collide.
Teardown deletes only the labs this session created, even when tests fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))

from lab import Lab, MakeLab, missing_requirements, random_config


@pytest.fixture(scope="session")
def lab_skip_reason() -> str | None:
    return missing_requirements()


@pytest.fixture(scope="session")
def make_lab(
    tmp_path_factory: pytest.TempPathFactory, lab_skip_reason: str | None
) -> Iterator[MakeLab]:
    """Return a function that brings up a new lab; all are torn down at the end.

    Call it as ``make_lab(forward=False)`` for a lab whose bastion does not
    route, so traffic from client to falcon must go through a relay. STEM
    and NET_BASE (``make_lab(stem="sgn", net_base="10.215")``) keep one
    module's labs apart from the others' in namespace names and addresses.
    """
    if lab_skip_reason:
        pytest.skip(lab_skip_reason)
    state_root = tmp_path_factory.mktemp("labs")
    labs: list[Lab] = []

    def make(
        *, forward: bool = True, stem: str = "sgl", net_base: str = "10.210"
    ) -> Lab:
        config = random_config(
            state_root, forward=forward, stem=stem, net_base=net_base
        )
        lab = Lab(config)
        labs.append(lab)
        lab.up()
        return lab

    try:
        yield make
    finally:
        for lab in reversed(labs):
            lab.down()


@pytest.fixture(scope="session")
def plain_lab(make_lab: MakeLab) -> Lab:
    """A session-wide lab whose bastion routes between client and falcon."""
    return make_lab(forward=True)
