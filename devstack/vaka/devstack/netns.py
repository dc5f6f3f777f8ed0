"""Linux network namespaces for tests: hosts, routers, NAT, firewalls and broken links.

A :class:`TestNet` makes namespaces joined by veth pairs, gives them addresses, routes, NAT
(nftables masquerade) and egress firewalls, and removes every namespace it made when it closes —
which also removes their veth ends, routes, nft tables and TUN devices, since those live inside.
Closing is safe twice and runs from ``__exit__`` even when a test fails.

Only addresses from the ranges in :data:`TEST_NETWORKS` are ever given out or routed: the shared
address space (100.64.0.0/10, RFC 6598) and the benchmarking range (198.18.0.0/15, RFC 2544).
No namespace has a route to anything else, so nothing a test starts can reach a real network.

Namespace names are ``vkn<pid>x<n>-<role>``: the pid of the process that made them, so that
:func:`remove_leftovers` can remove what a crashed run left behind without touching a run that
is still going.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); :func:`netns_unavailable` says why not when a
test has to skip.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from vaka.errors import ConfigError

log = logging.getLogger(__name__)

TEST_NETWORKS = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("198.18.0.0/15"))
"""The only ranges a test network uses."""

PREFIX = "vkn"
_counter = itertools.count(1)

NatKind = Literal["cone", "symmetric"]


def check_test_address(address: str) -> ipaddress.IPv4Interface:
    """Parse ``a.b.c.d/len`` and refuse anything outside :data:`TEST_NETWORKS`."""
    interface = ipaddress.IPv4Interface(address)
    if not any(interface.network.subnet_of(net) for net in TEST_NETWORKS):  # type: ignore[arg-type]
        raise ConfigError(f"test networks use only 100.64.0.0/10 and 198.18.0.0/15, got {address}")
    return interface


def netns_unavailable() -> str | None:
    """Why this machine cannot build test networks, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"{PREFIX}{os.getpid()}xprobe"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(args: Sequence[str], *, stdin: str | None = None) -> str:
    result = subprocess.run(list(args), input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_namespace_processes(name: str) -> None:
    """Stop what still runs inside a namespace the tests made (their own children)."""
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split() if p.isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _delete_namespace(name: str) -> None:
    _kill_namespace_processes(name)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def remove_leftovers() -> list[str]:
    """Remove test namespaces whose making process is gone (a crashed run); returns their names."""
    removed = []
    for name in _namespaces():
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX) :].split("x", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _delete_namespace(name)
            removed.append(name)
    if removed:
        log.warning("removed %d leftover test namespaces: %s", len(removed), removed)
    return removed


@dataclass
class Namespace:
    """One network namespace: a host or a router."""

    name: str
    role: str
    interfaces: dict[str, ipaddress.IPv4Interface] = field(default_factory=dict)

    def exec_args(self, *args: str) -> list[str]:
        """``args`` run inside this namespace (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, stdin: str | None = None) -> str:
        """Run a command inside the namespace; raise :class:`ConfigError` when it fails."""
        return _run(self.exec_args(*args), stdin=stdin)

    def ip(self, *args: str) -> str:
        """``ip -n NAME args``."""
        return _run(["ip", "-n", self.name, *args])

    def address(self, interface: str) -> str:
        """The address (without prefix length) of ``interface``."""
        return str(self.interfaces[interface].ip)

    def sysctl(self, key: str, value: str) -> None:
        """Set a per-namespace sysctl (``net.*``)."""
        self.run("sysctl", "-q", "-w", f"{key}={value}")


class TestNet:
    """Namespaces, links and rules for one test; everything goes when it closes."""

    __test__ = False  # a test network, not a pytest test class

    def __init__(self) -> None:
        self.run_id = f"{PREFIX}{os.getpid()}x{next(_counter)}"
        self.namespaces: dict[str, Namespace] = {}
        self._processes: list[subprocess.Popen[bytes]] = []
        self._default_routes: dict[str, str] = {}
        self._closed = False

    def __enter__(self) -> TestNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, role: str, *, router: bool = False) -> Namespace:
        """A new namespace with ``lo`` up and IPv6 off (test networks are IPv4 only)."""
        if self._closed:
            raise ConfigError("test network is closed")
        ns = Namespace(f"{self.run_id}-{role}", role)
        _run(["ip", "netns", "add", ns.name])
        self.namespaces[role] = ns
        ns.ip("link", "set", "lo", "up")
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        if router:
            ns.sysctl("net.ipv4.ip_forward", "1")
        return ns

    def link(
        self, a: Namespace, a_if: str, a_addr: str, b: Namespace, b_if: str, b_addr: str
    ) -> None:
        """Join ``a`` and ``b`` with a veth pair and give each end its address (``x/len``)."""
        a_net, b_net = check_test_address(a_addr), check_test_address(b_addr)
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        for ns, ifname, addr in ((a, a_if, a_net), (b, b_if, b_net)):
            ns.ip("addr", "add", str(addr), "dev", ifname)
            ns.ip("link", "set", ifname, "up")
            ns.interfaces[ifname] = addr

    def default_route(self, ns: Namespace, via: str) -> None:
        """Send everything ``ns`` does not know through ``via`` (a neighbour on a test link)."""
        check_test_address(f"{via}/32")
        ns.ip("route", "add", "default", "via", via)
        self._default_routes[ns.name] = via

    def nat(
        self,
        router: Namespace,
        wan: str,
        *,
        kind: NatKind = "cone",
        allow_out: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        """Make ``router`` a NAT towards ``wan``, optionally a firewall that lets little out.

        * ``cone``: masquerade keeps the inside port where it can, so one inside socket has one
          outside address for every destination (endpoint-independent mapping) — hole punching
          works.
        * ``symmetric``: ``masquerade random,fully-random`` picks a new outside port for every
          destination: the address a STUN server saw is useless to anyone else, only TURN works.

        Inbound, only replies pass (``ct state established,related``), to the router itself as
        well: an unsolicited packet to the outside address would otherwise leave a conntrack
        entry that takes the port away from the inside host's mapping.

        :param allow_out: when given, only these ``(protocol, port)`` pairs (``"udp"``/``"tcp"``)
            may leave through ``wan``; a municipality's firewall typically allows
            ``[("udp", 3478), ("tcp", 443)]``.
        """
        flags = " random,fully-random" if kind == "symmetric" else ""
        if allow_out is None:
            out_rules = f'oifname "{wan}" accept'
        else:
            lines = []
            for proto, port in allow_out:
                if proto not in ("udp", "tcp") or not 0 < port < 65536:
                    raise ConfigError(
                        f"firewall rule must be udp/tcp and a port, got {proto} {port}"
                    )
                lines.append(f'oifname "{wan}" {proto} dport {port} accept')
            out_rules = "\n            ".join(lines)
        ruleset = f"""
        table ip vaka_nat {{
          chain postrouting {{
            type nat hook postrouting priority srcnat; policy accept;
            oifname "{wan}" masquerade{flags}
          }}
        }}
        table inet vaka_filter {{
          chain forward {{
            type filter hook forward priority filter; policy drop;
            ct state established,related accept
            iifname "{wan}" drop
            {out_rules}
          }}
          chain input {{
            type filter hook input priority filter; policy accept;
            iifname "{wan}" ct state established,related accept
            iifname "{wan}" drop
          }}
        }}
        """
        router.run("nft", "-f", "-", stdin=ruleset)

    def start(self, ns: Namespace, *args: str, **popen: object) -> subprocess.Popen[bytes]:
        """Start a process inside ``ns``; it is killed (by its pid) when the network closes."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(ns.exec_args(*args), **popen)  # type: ignore[call-overload]
        self._processes.append(proc)
        return proc

    def set_link(self, ns: Namespace, interface: str, up: bool) -> None:
        """Take a link down (its far end loses carrier too) or bring it back up.

        The kernel forgets the routes through an interface that goes down; bringing it up puts
        the namespace's default route back, as a home router does when its line returns.
        """
        ns.ip("link", "set", interface, "up" if up else "down")
        via = self._default_routes.get(ns.name)
        if up and via is not None:
            ns.ip("route", "replace", "default", "via", via)

    @contextlib.contextmanager
    def link_down(self, ns: Namespace, interface: str) -> Iterator[None]:
        """The link is down inside the ``with`` block and up again after it."""
        self.set_link(ns, interface, False)
        try:
            yield
        finally:
            if not self._closed:
                self.set_link(ns, interface, True)

    def close(self) -> None:
        """Stop the processes started here, then delete every namespace. Safe twice."""
        if self._closed:
            return
        self._closed = True
        for proc in self._processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3
        for proc in self._processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in reversed(list(self.namespaces.values())):
            _delete_namespace(ns.name)
        self.namespaces.clear()

    def existing(self) -> list[str]:
        """The namespaces of this network that still exist (empty after :meth:`close`)."""
        return [name for name in _namespaces() if name.startswith(self.run_id + "-")]
