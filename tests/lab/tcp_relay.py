"""Relay TCP ports from one address to another (standard library only).

Run in the bastion namespace of a lab started with LAB_FORWARD=0, it stands in
for the bastion software: the client connects to the bastion's address and the
relay opens its own connection to falcon, so falcon sees the bastion as client.

    python3 tcp_relay.py --listen 10.210.1.1 --target 10.210.2.2 \\
        --port 2049 --port 20048 --ready-file /tmp/relay.ready
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

CHUNK_BYTES = 256 * 1024


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def relay_one(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: str,
    port: int,
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(target, port)
    except OSError as exc:
        print(f"connect to {target}:{port} failed: {exc}", flush=True)
        client_writer.close()
        return
    await asyncio.gather(
        pump(client_reader, server_writer), pump(server_reader, client_writer)
    )


async def serve(listen: str, target: str, ports: list[int], ready_file: Path) -> None:
    servers = []
    for port in ports:

        async def handle(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            port: int = port,
        ) -> None:
            await relay_one(reader, writer, target, port)

        servers.append(await asyncio.start_server(handle, listen, port))
    ready_file.write_text("ready\n")
    print(f"relaying {listen} -> {target} ports {ports}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="address to listen on")
    parser.add_argument("--target", required=True, help="address to connect to")
    parser.add_argument(
        "--port", type=int, action="append", required=True, help="port (repeatable)"
    )
    parser.add_argument(
        "--ready-file", type=Path, required=True, help="written once listening"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target, args.port, args.ready_file))


if __name__ == "__main__":
    main()
