"""``spoolgate tunnel``: relay packets between a tun device and the bastion.

The tun device is read whenever the loop sees it readable; a batch of
packets goes out as one TLS write. While no connection is up, packets read
from the device are dropped and counted, and the device with its routes
stays in place, so NFS clients see a stalled server rather than a vanished
route. Reconnects back off exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import random
import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spoolgate.errors import PinError, TunnelError, TunnelUnreachableError
from spoolgate.tunnel import tls, tun
from spoolgate.tunnel.config import TunnelConfig, load_tunnel_config
from spoolgate.tunnel.link import Link
from spoolgate.tunnel.policy import (
    CloseReason,
    Counters,
    DropReason,
    abbreviate_fingerprint,
    drop_delta,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.datetime.now(datetime.UTC)


def next_backoff(delay: float, maximum: float) -> float:
    """Return the delay after ``delay``: doubled, at most ``maximum``."""
    return min(delay * 2, maximum)


def jittered(delay: float, rng: random.Random) -> float:
    """Return a wait between half of ``delay`` and ``delay``.

    Spreading the waits keeps many clients that lost the same bastion from
    reconnecting in step.
    """
    return rng.uniform(delay / 2, delay)


class TunnelClient:
    """The client's relay loop: tun device <-> one link to the bastion."""

    def __init__(
        self,
        config: TunnelConfig,
        device: tun.PacketDevice,
        context: ssl.SSLContext,
        *,
        rng: random.Random,
        clock: Clock = utc_now,
    ) -> None:
        self.config = config
        self.device = device
        self.counters = Counters()
        self.connected = asyncio.Event()
        self.connections = 0
        self._context = context
        self._rng = rng
        self._clock = clock
        self._link: Link | None = None
        self._reading = False
        self._label = f"bastion={config.bastion_host}:{config.bastion_port}"

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, relay and reconnect until ``stop`` is set."""
        self._set_reading(True)
        delay = self.config.backoff_initial_s
        reporter = asyncio.create_task(self._report_drops(stop))
        try:
            while not stop.is_set():
                try:
                    link = await self._connect()
                except (OSError, TimeoutError, ssl.SSLError, TunnelError) as exc:
                    wait = jittered(delay, self._rng)
                    log.warning(
                        "%s connect failed, retry in %.1f s: %s", self._label, wait, exc
                    )
                    delay = next_backoff(delay, self.config.backoff_max_s)
                    await _wait_or_stop(stop, wait)
                    continue
                delay = self.config.backoff_initial_s
                await self._relay(link, stop)
        finally:
            reporter.cancel()
            self._set_reading(False)
            if self._link is not None:
                self._link.close(CloseReason.SHUTDOWN)

    async def _connect(self) -> Link:
        loop = asyncio.get_running_loop()
        config = self.config
        transport, link = await asyncio.wait_for(
            loop.create_connection(
                lambda: Link(config.mtu, config.timers, self._label),
                config.bastion_host,
                config.bastion_port,
                ssl=self._context,
                server_hostname="",
                ssl_handshake_timeout=config.connect_timeout_s,
            ),
            config.connect_timeout_s * 2,
        )
        try:
            ssl_object = transport.get_extra_info("ssl_object")
            der = tls.peer_certificate(ssl_object)
            tls.check_pin(der, [config.bastion_fingerprint], self._clock())
        except PinError as exc:
            transport.abort()
            raise PinError(f"bastion certificate rejected: {exc}") from exc
        # In TLS 1.3 the bastion checks our certificate after our side of the
        # handshake is done; its first frame is what proves it accepted us.
        try:
            await asyncio.wait_for(
                asyncio.shield(link.first_data), config.connect_timeout_s
            )
        except (TimeoutError, ConnectionError) as exc:
            transport.abort()
            raise TunnelUnreachableError(
                f"bastion closed the connection after the handshake ({exc!r}); "
                "is this client's certificate listed in the bastion's config?"
            ) from exc
        return link

    async def _relay(self, link: Link, stop: asyncio.Event) -> None:
        self._link = link
        self.connections += 1
        link.on_pause = self._on_pause
        link.start(self._write_to_device)

        self.connected.set()
        log.info(
            "%s tunnel up client_address=%s fingerprint=%s",
            self._label,
            self.config.address,
            abbreviate_fingerprint(self.config.bastion_fingerprint),
        )
        stopping = asyncio.ensure_future(stop.wait())
        waiters: set[asyncio.Future[Any]] = {stopping, link.closed}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

        if not link.closed.done():
            link.close(CloseReason.SHUTDOWN)
            await link.closed
        self.connected.clear()
        self._link = None
        self._set_reading(True)
        log.info(
            "%s tunnel down reason=%s bytes_in=%d bytes_out=%d",
            self._label,
            link.closed.result().value,
            link.bytes_in,
            link.bytes_out,
        )

    def _write_to_device(self, packets: list[bytes]) -> None:
        write = self.device.write
        failed = 0
        for packet in packets:
            if not write(packet):
                failed += 1
        if failed:
            self.counters.drop(DropReason.TUN_BUSY, failed)

    def _on_device_readable(self) -> None:
        packets = self.device.read_batch()
        if not packets:
            return
        link = self._link
        if link is None or link.is_closing():
            self.counters.drop(DropReason.DISCONNECTED, len(packets))
            return
        link.send(packets)

    def _on_pause(self, paused: bool) -> None:
        # Leave packets in the tun device's queue while TLS cannot take more.
        self._set_reading(not paused)

    def _set_reading(self, on: bool) -> None:
        loop = asyncio.get_running_loop()
        if on and not self._reading:
            loop.add_reader(self.device.fileno(), self._on_device_readable)
        elif not on and self._reading:
            loop.remove_reader(self.device.fileno())
        self._reading = on

    async def _report_drops(self, stop: asyncio.Event) -> None:
        interval = self.config.timers.drop_log_interval_s
        before = dict(self.counters.drops)
        while not stop.is_set():
            await _wait_or_stop(stop, interval)
            grown = drop_delta(before, self.counters.drops)
            if grown:
                fields = " ".join(f"{k}={v}" for k, v in sorted(grown.items()))
                log.warning(
                    "%s packets dropped in %.0f s: %s", self._label, interval, fields
                )
            before = dict(self.counters.drops)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def run_tunnel(config_path: Path) -> int:
    """Run ``spoolgate tunnel --config``: set up tun, relay until a signal."""
    config = load_tunnel_config(config_path)
    context = tls.client_context(config.cert, config.key)
    device = tun.open_tun(config.tun_name, config.mtu)
    try:
        interface = ipaddress.ip_interface(
            f"{config.address}/{config.address.max_prefixlen}"
        )
        tun.configure(config.tun_name, config.mtu, interface, config.routes)
        asyncio.run(_main(config, device, context))
    finally:
        device.close()
    return 0


async def _main(
    config: TunnelConfig, device: tun.PacketDevice, context: ssl.SSLContext
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = TunnelClient(config, device, context, rng=random.Random())
    await client.run(stop)
