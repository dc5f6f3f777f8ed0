"""A bad line without netem: delay in user space through a TUN device, loss in nftables.

This kernel has no ``tc netem``, so a router namespace sends the traffic of one link through a
TUN device instead, and a small process (``python -m vaka.devstack.impair DEVICE --delay-ms N``,
run inside the namespace) holds every packet for ``N`` ms before writing it back::

    from the impaired side ──▶ rule "iif side → table 100" ──▶ tun ──▶ this process (hold N ms)
    to the impaired side   ──▶ rule "to side's net → table 100" ─┘        │
                                                                         ▼ written back to tun
    rule "iif tun → main" ──▶ routed on by destination as usual

Each packet crosses the TUN device once per direction, so the delay applies once each way. Loss is
an nft rule on packets coming out of the device: ``numgen random mod 100 < P drop``.

:func:`impair_link` sets this up on a :class:`~vaka.devstack.netns.TestNet` router; the process
is stopped with the network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import struct
import subprocess
import sys

from vaka.devstack.netns import Namespace, TestNet, check_test_address

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
_TABLE = "100"
_MTU_READ = 65536


def impair_link(
    net: TestNet,
    router: Namespace,
    side_interface: str,
    side_network: str,
    *,
    delay_ms: float,
    loss_percent: int,
    device: str = "imp0",
) -> None:
    """Delay and drop what ``router`` forwards from and to ``side_interface``.

    :param side_network: the network behind ``side_interface`` (``a.b.c.d/len``), for the way
        back.
    :param delay_ms: added once in each direction.
    :param loss_percent: dropped in each direction, 0..100.
    """
    check_test_address(side_network)
    if not 0 <= loss_percent <= 100 or delay_ms < 0:
        raise ValueError("loss must be 0..100 % and delay not negative")
    router.ip("tuntap", "add", "dev", device, "mode", "tun")
    router.ip("link", "set", device, "up")
    for key in ("all", "default", device, side_interface):
        router.sysctl(f"net.ipv4.conf.{key}.rp_filter", "0")
    proc = net.start(
        router,
        sys.executable,
        "-m",
        "vaka.devstack.impair",
        device,
        "--delay-ms",
        str(delay_ms),
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"impairment process on {device} did not start")
    router.ip("route", "add", "default", "dev", device, "table", _TABLE)
    router.ip("rule", "add", "iif", device, "lookup", "main", "pref", "100")
    router.ip("rule", "add", "iif", side_interface, "lookup", _TABLE, "pref", "110")
    router.ip("rule", "add", "to", side_network, "lookup", _TABLE, "pref", "120")
    if loss_percent:
        router.run(
            "nft",
            "-f",
            "-",
            stdin=f"""
            table inet vaka_impair {{
              chain forward {{
                type filter hook forward priority -10; policy accept;
                iifname "{device}" numgen random mod 100 < {loss_percent} drop
              }}
            }}
            """,
        )


def _open_tun(device: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    ifr = struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


async def _forward(fd: int, delay_s: float) -> None:
    loop = asyncio.get_running_loop()

    def write(packet: bytes) -> None:
        # The namespace may be going away; a lost packet is what a bad line does anyway.
        with contextlib.suppress(OSError):
            os.write(fd, packet)

    def readable() -> None:
        while True:
            try:
                packet = os.read(fd, _MTU_READ)
            except BlockingIOError:
                return
            loop.call_later(delay_s, write, packet)

    loop.add_reader(fd, readable)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Attach to the TUN device, say ``ready``, and forward with the delay until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("device")
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args(argv)
    fd = _open_tun(args.device)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    asyncio.run(_forward(fd, args.delay_ms / 1000.0))


if __name__ == "__main__":
    main()
