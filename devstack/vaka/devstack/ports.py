"""Loopback ports for the local stack: a free one, a preferred one if free, waiting for one."""

import random
import socket
import time
from pathlib import Path


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise :class:`TimeoutError`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, outside the kernel's ephemeral range.

    A listener on an ephemeral port can be taken, while it restarts, by a client's own outgoing
    connection to it (TCP self-connect on loopback); ports below the range avoid that.
    """
    low, _high = _ephemeral_range()
    for _ in range(200):
        port = random.randint(10_000, max(10_001, low - 1))
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_or_free(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing holds it on ``host`` now, else a free port (the demo's 8080)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, preferred))
        except OSError:
            return free_port(host)
        return preferred
