"""One TLS connection carrying tunnel frames: framing, keepalive, dead peer.

Both ``spoolgate tunnel`` and ``spoolgate bastion`` run a ``Link`` on top of
asyncio's TLS transport. A link stays inactive until its owner has checked
the peer's pin and called ``start``; bytes that arrive earlier are held
(bounded) and decoded at start, so nothing from an unchecked peer reaches a
tun device.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from spoolgate.errors import FrameError
from spoolgate.tunnel.config import Timers
from spoolgate.tunnel.frames import KEEPALIVE_FRAME, FrameDecoder, encode_batch
from spoolgate.tunnel.policy import CloseReason

log = logging.getLogger(__name__)

# Bytes accepted before the pin check finishes: a few full frames.
MAX_PENDING = 256 * 1024
# asyncio pauses our writers above this much unsent data per link.
WRITE_HIGH_WATER = 4 * 1024 * 1024

# Other reasons drop the connection at once, without a TLS close_notify.
_GRACEFUL = frozenset({CloseReason.SHUTDOWN, CloseReason.PEER_CLOSED})

PacketsCallback = Callable[[list[bytes]], None]


class Link(asyncio.Protocol):
    """Frames in, packets out, over one TLS transport."""

    def __init__(self, mtu: int, timers: Timers, label: str) -> None:
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[CloseReason] = (
            asyncio.get_running_loop().create_future()
        )
        self.bytes_in = 0
        self.bytes_out = 0
        self.packets_in = 0
        self.packets_out = 0
        self.first_data: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        self.writing_paused = False
        self.on_pause: Callable[[bool], None] | None = None
        self._decoder = FrameDecoder(mtu)
        self._timers = timers
        self._on_packets: PacketsCallback | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._close_reason = CloseReason.PEER_CLOSED
        self._last_rx = 0.0
        self._last_tx = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Store the transport; on the bastion ``start_tls`` sets it instead."""
        assert isinstance(transport, asyncio.Transport)
        self.attach(transport)

    def attach(self, transport: asyncio.Transport) -> None:
        """Use ``transport`` (the TLS transport) for this link."""
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        """Decode frames and hand packets on, or hold them until ``start``."""
        self._last_rx = asyncio.get_running_loop().time()
        if not self.first_data.done():
            self.first_data.set_result(None)
        if self._on_packets is None:
            self._hold(data)
            return
        try:
            packets = self._decoder.feed(data)
        except FrameError as exc:
            log.warning("%s bad frame, closing: %s", self.label, exc)
            self.close(CloseReason.BAD_FRAME)
            return
        if packets:
            self.packets_in += len(packets)
            self.bytes_in += sum(map(len, packets))
            self._on_packets(packets)

    def pause_writing(self) -> None:
        """Remember that the transport's buffer is full; tell the owner."""
        self.writing_paused = True
        if self.on_pause is not None:
            self.on_pause(True)

    def resume_writing(self) -> None:
        """Remember that the transport's buffer drained; tell the owner."""
        self.writing_paused = False
        if self.on_pause is not None:
            self.on_pause(False)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer and resolve ``closed`` with the reason."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        started = self._on_packets is not None
        if (
            exc is not None
            and started
            and self._close_reason is CloseReason.PEER_CLOSED
        ):
            log.info("%s connection lost: %s", self.label, exc)
        if not self.first_data.done():
            self.first_data.set_exception(ConnectionError("closed before any data"))
            # Mark the exception as retrieved, because no task may await this
            # future and asyncio would log it as never retrieved.
            self.first_data.exception()
        if not self.closed.done():
            self.closed.set_result(self._close_reason)

    # Used by the owner

    def start(self, on_packets: PacketsCallback) -> None:
        """Deliver packets to ``on_packets`` from now on; start keepalives."""
        loop = asyncio.get_running_loop()
        self._on_packets = on_packets
        self._last_rx = self._last_tx = loop.time()
        self._schedule_tick()
        pending, self._pending = self._pending, []
        self._pending_size = 0
        for data in pending:
            if self.is_closing():
                break
            self.data_received(data)

    def send(self, packets: Sequence[bytes]) -> None:
        """Frame ``packets`` and write them with one call."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(encode_batch(packets))
        self.packets_out += len(packets)
        self.bytes_out += sum(map(len, packets))
        self._last_tx = asyncio.get_running_loop().time()

    def send_keepalive(self) -> None:
        """Write one keepalive frame."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(KEEPALIVE_FRAME)
            self._last_tx = asyncio.get_running_loop().time()

    def buffered(self) -> int:
        """Return the bytes written but not yet sent."""
        if self.transport is None:
            return 0
        return self.transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        """Return True once the link is closing or closed."""
        return self.transport is None or self.transport.is_closing()

    def close(self, reason: CloseReason) -> None:
        """Close the connection; ``closed`` resolves with ``reason``."""
        if self.transport is not None and not self.transport.is_closing():
            self._close_reason = reason
            if reason not in _GRACEFUL:
                self.transport.abort()
            else:
                self.transport.close()
        elif self.transport is None and not self.closed.done():
            self.closed.set_result(reason)

    def _hold(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > MAX_PENDING:
            log.warning(
                "%s sent %d bytes before the pin check", self.label, MAX_PENDING
            )
            self.close(CloseReason.BAD_FRAME)

    def _schedule_tick(self) -> None:
        interval = min(self._timers.keepalive_s, self._timers.dead_peer_s) / 2
        self._timer = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_rx >= self._timers.dead_peer_s:
            log.warning(
                "%s dead peer: nothing received for %.1f s",
                self.label,
                now - self._last_rx,
            )
            self.close(CloseReason.DEAD_PEER)
            return
        if now - self._last_tx >= self._timers.keepalive_s:
            self.send_keepalive()
        self._schedule_tick()
