#!/usr/bin/env python3
"""Tiny ONC-RPC probe for the NFS lab (stdlib only).

Sends one call to portmapper/MOUNT/NFS over TCP (with record marking) or UDP,
with an AUTH_SYS credential of your choice, and prints the decoded reply.

Examples (run inside the client namespace, e.g. `ip netns exec sgl-client ...`):
  python3 rpc-probe.py 10.210.2.2 getport --prog 100005 --vers 3 --udp
  python3 rpc-probe.py 10.210.2.2 mnt /export --udp --uid 1000 --gid 1000
  python3 rpc-probe.py 10.210.2.2 mnt /export --tcp
  python3 rpc-probe.py 10.210.2.2 export --tcp
  python3 rpc-probe.py 10.210.2.2 null --prog 100003 --vers 3 --port 2049
"""

import argparse
import os
import socket
import struct
import sys
import time

PMAP_PROG, MOUNT_PROG, NFS_PROG = 100000, 100005, 100003
AUTH_NONE, AUTH_SYS = 0, 1


def xdr_opaque(data: bytes) -> bytes:
    pad = (4 - len(data) % 4) % 4
    return struct.pack(">I", len(data)) + data + b"\0" * pad


def auth_sys(uid: int, gid: int, gids, machine: str) -> bytes:
    body = struct.pack(">I", int(time.time()) & 0xFFFFFFFF)
    body += xdr_opaque(machine.encode())
    body += struct.pack(">II", uid, gid)
    body += struct.pack(">I", len(gids)) + b"".join(struct.pack(">I", g) for g in gids)
    return struct.pack(">I", AUTH_SYS) + xdr_opaque(body)


def build_call(xid, prog, vers, proc, cred: bytes, args: bytes) -> bytes:
    hdr = struct.pack(">IIIIII", xid, 0, 2, prog, vers, proc)
    verf = struct.pack(">II", AUTH_NONE, 0)
    return hdr + cred + verf + args


def send_tcp(host, port, msg, timeout, privileged):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if privileged:
        bind_reserved(s)
    s.connect((host, port))
    s.sendall(struct.pack(">I", 0x80000000 | len(msg)) + msg)
    out = b""
    while True:
        hdr = recv_exact(s, 4)
        (mark,) = struct.unpack(">I", hdr)
        out += recv_exact(s, mark & 0x7FFFFFFF)
        if mark & 0x80000000:
            break
    s.close()
    return out


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


def send_udp(host, port, msg, timeout, privileged):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    if privileged:
        bind_reserved(s)
    s.sendto(msg, (host, port))
    data, _ = s.recvfrom(65536)
    s.close()
    return data


def bind_reserved(s):
    for port in range(1023, 600, -1):
        try:
            s.bind(("0.0.0.0", port))
            return
        except OSError:
            continue
    raise OSError("no reserved port free")


def parse_reply(data, xid):
    rxid, mtype, stat = struct.unpack(">III", data[:12])
    if rxid != xid or mtype != 1:
        raise ValueError(f"unexpected reply xid={rxid:#x} type={mtype}")
    if stat != 0:  # MSG_DENIED
        rej = struct.unpack(">I", data[12:16])[0]
        detail = struct.unpack(">I", data[16:20])[0] if len(data) >= 20 else None
        return f"MSG_DENIED reject_stat={rej} detail={detail}", b""
    _vflav, vlen = struct.unpack(">II", data[12:20])
    off = 20 + vlen + (4 - vlen % 4) % 4
    (accept,) = struct.unpack(">I", data[off : off + 4])
    names = {
        0: "SUCCESS",
        1: "PROG_UNAVAIL",
        2: "PROG_MISMATCH",
        3: "PROC_UNAVAIL",
        4: "GARBAGE_ARGS",
        5: "SYSTEM_ERR",
    }
    return names.get(accept, str(accept)), data[off + 4 :]


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("host")
    ap.add_argument(
        "call", choices=["null", "getport", "mnt", "umnt", "export", "dump"]
    )
    ap.add_argument("path", nargs="?", default="/export")
    ap.add_argument("--udp", action="store_true", help="use UDP (default TCP)")
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument(
        "--port",
        type=int,
        help="target port (default: 111 for getport, 20048 for mount calls)",
    )
    ap.add_argument("--prog", type=int, default=MOUNT_PROG)
    ap.add_argument("--vers", type=int, default=3)
    ap.add_argument("--uid", type=int, default=0)
    ap.add_argument("--gid", type=int, default=0)
    ap.add_argument("--gids", default="", help="comma separated auxiliary gids")
    ap.add_argument("--machine", default=socket.gethostname())
    ap.add_argument("--auth-none", action="store_true")
    ap.add_argument(
        "--privileged", action="store_true", help="bind a source port < 1024"
    )
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()

    gids = [int(g) for g in a.gids.split(",") if g]
    cred = (
        struct.pack(">II", AUTH_NONE, 0)
        if a.auth_none
        else auth_sys(a.uid, a.gid, gids, a.machine)
    )
    xid = int.from_bytes(os.urandom(4), "big")
    if a.call == "getport":
        prot = 17 if a.udp else 6
        msg = build_call(
            xid, PMAP_PROG, 2, 3, cred, struct.pack(">IIII", a.prog, a.vers, prot, 0)
        )
        port = a.port or 111
    elif a.call == "null":
        msg = build_call(xid, a.prog, a.vers, 0, cred, b"")
        default_ports = {PMAP_PROG: 111, NFS_PROG: 2049}
        port = a.port or default_ports.get(a.prog, 20048)
    else:
        proc = {"mnt": 1, "dump": 2, "umnt": 3, "export": 5}[a.call]
        args = xdr_opaque(a.path.encode()) if a.call in ("mnt", "umnt") else b""
        msg = build_call(xid, MOUNT_PROG, a.vers, proc, cred, args)
        port = a.port or 20048
    send = send_udp if a.udp else send_tcp
    reply = send(a.host, port, msg, a.timeout, a.privileged)
    status, body = parse_reply(reply, xid)
    print(f"{'UDP' if a.udp else 'TCP'} {a.host}:{port} {a.call}: rpc={status}", end="")
    if status != "SUCCESS":
        print()
        return 1
    if a.call == "getport":
        print(f" port={struct.unpack('>I', body[:4])[0]}")
    elif a.call == "mnt":
        (mstat,) = struct.unpack(">I", body[:4])
        if mstat != 0:
            print(f" mountstat3={mstat}")
            return 2
        (fhlen,) = struct.unpack(">I", body[4:8])
        fh = body[8 : 8 + fhlen]
        off = 8 + fhlen + (4 - fhlen % 4) % 4
        (nfl,) = struct.unpack(">I", body[off : off + 4])
        flavors = struct.unpack(f">{nfl}I", body[off + 4 : off + 4 + 4 * nfl])
        print(f" mountstat3=0 fh({fhlen})={fh.hex()} auth_flavors={list(flavors)}")
    elif a.call == "export":
        names, off = [], 0
        while struct.unpack(">I", body[off : off + 4])[0] == 1:
            (n,) = struct.unpack(">I", body[off + 4 : off + 8])
            names.append(body[off + 8 : off + 8 + n].decode())
            off += 8 + n + (4 - n % 4) % 4
            while struct.unpack(">I", body[off : off + 4])[0] == 1:  # groups list
                (g,) = struct.unpack(">I", body[off + 4 : off + 8])
                off += 8 + g + (4 - g % 4) % 4
            off += 4
        print(f" exports={names}")
    else:
        print(f" body={body.hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
