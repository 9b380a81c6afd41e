"""Admission of password checks: a few at a time, fair across addresses.

Password hashes are slow on purpose, so a flood of wrong passwords must
not hold every worker thread or make a good login wait behind it. The
gate runs at most ``slots`` checks at once in threads of its own, so
maildrop work in the default executor is never queued behind hashing.
Checks that wait for a slot are served round-robin by client address:
an address with no check pending waits for at most one check of each
other address that has checks waiting, plus those already running. One
address may have at most ``per_address`` checks waiting or running; more
are refused at once. A check whose client has left while it waited is
dropped without hashing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from spoolgate.errors import AuthBusyError

__all__ = ["AuthGate"]


class AuthGate:
    """Slots for password checks and the threads that run them."""

    def __init__(self, slots: int, per_address: int) -> None:
        self._slots = slots
        self._free = slots
        self._per_address = per_address
        self._pending: Counter[str] = Counter()
        # Insertion order is the round-robin order of addresses.
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self.executor = ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix="spoolgate-auth"
        )

    @property
    def slots(self) -> int:
        """How many checks may run at once."""
        return self._slots

    @property
    def per_address(self) -> int:
        """How many checks one address may have waiting or running."""
        return self._per_address

    @property
    def waiting(self) -> int:
        """The number of checks waiting for a slot."""
        return sum(map(len, self._queues.values()))

    @contextlib.asynccontextmanager
    async def slot(self, host: str, client_left: asyncio.Event) -> AsyncIterator[None]:
        """Hold one slot for a check from ``host`` while the block runs.

        Raises AuthBusyError when ``host`` has too many checks pending and
        ConnectionAbortedError when ``client_left`` is set before a slot is free.
        """
        if self._pending[host] >= self._per_address:
            raise AuthBusyError(
                f"too many password checks pending from {host} "
                f"({self._pending[host]}); try again after they finish"
            )
        self._pending[host] += 1
        try:
            await self._acquire(host, client_left)
            try:
                yield
            finally:
                self._release()
        finally:
            self._pending[host] -= 1
            if not self._pending[host]:
                del self._pending[host]

    async def _acquire(self, host: str, client_left: asyncio.Event) -> None:
        if client_left.is_set():
            raise ConnectionAbortedError("client left before its password check")
        if self._free:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(host, deque()).append(waiter)
        left_wait = asyncio.ensure_future(_until_set(client_left))
        granted = False
        try:
            await asyncio.wait({waiter, left_wait}, return_when="FIRST_COMPLETED")
            granted = waiter.done()
        finally:
            left_wait.cancel()
            if not waiter.done():
                waiter.cancel()
                self._discard(host, waiter)
            elif not granted:
                self._release()
        if not granted or client_left.is_set():
            if granted:
                self._release()
            raise ConnectionAbortedError("client left while its password check waited")

    def _release(self) -> None:
        """Hand the slot to the next address in turn, or free it."""
        while self._queues:
            host = next(iter(self._queues))
            queue = self._queues.pop(host)
            waiter = queue.popleft()
            if queue:
                self._queues[host] = queue
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _discard(self, host: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(host)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(waiter)
        if not queue:
            del self._queues[host]

    def close(self) -> None:
        """Let running checks finish in the background; start no new ones."""
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _until_set(event: asyncio.Event) -> None:
    await event.wait()
