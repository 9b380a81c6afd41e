"""Send one ONC RPC record to HOST:PORT and print the reply record as hex.

Usage: send_record.py HOST PORT RECORD_HEX. Standard library only, so the
tests can run it inside a lab namespace.
"""

import socket
import struct
import sys


def main() -> None:
    host, port, record = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(record)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 4:
                size = struct.unpack(">I", data[:4])[0] & 0x7FFFFFFF
                if len(data) >= 4 + size:
                    break
    print(data.hex())


if __name__ == "__main__":
    main()
