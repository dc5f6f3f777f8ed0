"""Round-trip time and loss of a path, measured with UDP echoes (the machine has no ``ping``).

``python -m vaka.devstack.linkprobe serve HOST PORT`` echoes every datagram back (run it inside
one namespace); ``python -m vaka.devstack.linkprobe probe HOST PORT --count N`` sends ``N``
numbered datagrams at ``--interval`` and prints one JSON line: sent, received, loss in percent
and the round-trip times' minimum, median and 95th percentile in milliseconds. Each probe is a
fresh datagram through every NAT and the bad line, as media is.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from typing import Any


def serve(host: str, port: int) -> None:
    """Echo datagrams until killed; print ``ready`` once bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        print("ready", flush=True)
        while True:
            data, addr = sock.recvfrom(2048)
            sock.sendto(data, addr)


def probe(host: str, port: int, count: int, interval: float, wait: float) -> dict[str, Any]:
    """Send ``count`` echoes ``interval`` apart, wait ``wait`` s for stragglers, and sum up."""
    sent: dict[int, float] = {}
    rtts: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        next_send = time.monotonic()
        deadline = next_send + count * interval + wait
        seq = 0
        while time.monotonic() < deadline:
            now = time.monotonic()
            if seq < count and now >= next_send:
                sock.sendto(seq.to_bytes(4, "big") + bytes(60), (host, port))
                sent[seq] = now
                seq += 1
                next_send += interval
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            number = int.from_bytes(data[:4], "big")
            if number in sent:
                rtts.append((time.monotonic() - sent.pop(number)) * 1000)
    received = len(rtts)
    ordered = sorted(rtts)
    return {
        "sent": count,
        "received": received,
        "loss_percent": round(100 * (count - received) / count, 1),
        "rtt_min_ms": round(ordered[0], 1) if ordered else None,
        "rtt_p50_ms": round(statistics.median(ordered), 1) if ordered else None,
        "rtt_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1) if ordered else None,
    }


def main(argv: list[str] | None = None) -> None:
    """``serve`` or ``probe``, as the module docstring says."""
    parser = argparse.ArgumentParser(description="UDP echo round-trip and loss")
    parser.add_argument("mode", choices=("serve", "probe"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--wait", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve(args.host, args.port)
    else:
        json.dump(probe(args.host, args.port, args.count, args.interval, args.wait), sys.stdout)
        print()


if __name__ == "__main__":
    main()
