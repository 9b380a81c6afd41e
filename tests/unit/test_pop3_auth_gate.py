"""AuthGate: slot count, fairness across addresses, limits, departed clients."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TypeVar

import pytest

from spoolgate.errors import AuthBusyError
from spoolgate.pop3.auth_gate import AuthGate

T = TypeVar("T")


def run(make: Callable[[AuthGate], Coroutine[object, object, T]], gate: AuthGate) -> T:
    try:
        return asyncio.run(make(gate))
    finally:
        gate.close()


async def hold(
    gate: AuthGate, host: str, order: list[str], release: asyncio.Event
) -> None:
    async with gate.slot(host, asyncio.Event()):
        order.append(host)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_gate_runs_at_most_slots_checks() -> None:
    async def scenario(gate: AuthGate) -> list[str]:
        order: list[str] = []
        release = asyncio.Event()
        tasks = [
            asyncio.create_task(hold(gate, f"h{n}", order, release)) for n in range(3)
        ]
        await settle()
        seen = list(order)
        release.set()
        await asyncio.gather(*tasks)
        return seen

    assert run(scenario, AuthGate(2, 5)) == ["h0", "h1"]


def test_gate_new_address_served_before_queued_ones() -> None:
    async def scenario(gate: AuthGate) -> list[str]:
        order: list[str] = []
        release = asyncio.Event()
        first = asyncio.create_task(hold(gate, "busy", order, release))
        await settle()
        flood = [
            asyncio.create_task(hold(gate, "busy", order, release)) for _ in range(3)
        ]
        await settle()
        good = asyncio.create_task(hold(gate, "good", order, release))
        await settle()
        release.set()
        await asyncio.gather(first, *flood, good)
        return order

    order = run(scenario, AuthGate(1, 10))
    assert order.index("good") <= 2


def test_gate_refuses_over_per_address_limit() -> None:
    async def scenario(gate: AuthGate) -> None:
        release = asyncio.Event()
        held = [asyncio.create_task(hold(gate, "a", [], release)) for _ in range(2)]
        await settle()
        with pytest.raises(AuthBusyError):
            async with gate.slot("a", asyncio.Event()):
                pass
        async with gate.slot("b", asyncio.Event()):
            pass
        release.set()
        await asyncio.gather(*held)

    run(scenario, AuthGate(4, 2))


def test_gate_skips_client_gone_while_waiting() -> None:
    async def scenario(gate: AuthGate) -> tuple[bool, int]:
        release = asyncio.Event()
        holder = asyncio.create_task(hold(gate, "a", [], release))
        await settle()
        client_left = asyncio.Event()
        ran = False

        async def check() -> None:
            nonlocal ran
            async with gate.slot("b", client_left):
                ran = True

        waiting = asyncio.create_task(check())
        await settle()
        client_left.set()
        with pytest.raises(ConnectionAbortedError):
            await waiting
        waiting_after = gate.waiting
        release.set()
        await holder
        async with gate.slot("c", asyncio.Event()):
            pass
        return ran, waiting_after

    assert run(scenario, AuthGate(1, 5)) == (False, 0)


def test_gate_cancelled_waiter_frees_no_slot_twice() -> None:
    async def scenario(gate: AuthGate) -> list[str]:
        order: list[str] = []
        release = asyncio.Event()
        holder = asyncio.create_task(hold(gate, "a", order, release))
        await settle()
        cancelled = asyncio.create_task(hold(gate, "b", order, release))
        await settle()
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        release.set()
        await holder
        second_release = asyncio.Event()
        tasks = [
            asyncio.create_task(hold(gate, f"c{n}", order, second_release))
            for n in range(2)
        ]
        await settle()
        seen = list(order)
        second_release.set()
        await asyncio.gather(*tasks)
        return seen

    assert run(scenario, AuthGate(1, 5)) == ["a", "c0"]
