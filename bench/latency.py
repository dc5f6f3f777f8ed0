"""Latency of the picture: capture stamp → decoded at the staff member, per network path.

The unit's peer sends the test pattern of :mod:`vaka.rtc.pattern` at 640x480@15 (each frame
carries the wall-clock time it was drawn); the staff peer decodes every frame and subtracts that
stamp from the time it decoded it. Both are :mod:`vaka.devstack.netpeer` processes; all
namespaces share the host's clock, so the difference is the real source → decoded delay
(encode, packetise, network, jitter buffer, decode). The staff peer only receives, as in a
night check.

Cases, each a fresh test bed (:mod:`vaka.devstack.topology`) with its own coturn:

* ``loopback`` — both peers on the host over 127.0.0.1, no NAT, no relay: the bare baseline;
* ``direct`` — across the home NAT, a cone CGNAT and the municipality's NAT (srflx pair; STUN
  only, since with a relay on offer aioice may settle on it instead);
* ``relayed`` — a symmetric CGNAT forces the relay (relay pair, UDP to coturn);
* ``relayed-tls`` — the municipality lets only TCP 443 out: staff reaches coturn over TLS;
* ``impaired`` — ``direct`` with 150 ms delay each way and 5 % loss each way on the unit's line.

For each: set-up time (staff's ``createOffer`` → first decoded frame), the selected pair, and
the p50/p95 of the latency over ``--seconds`` after a 1 s warm-up; ratios to ``loopback`` when
it ran in the same invocation. One JSON object on stdout, one readable line per case on stderr::

    sudo .venv/bin/python bench/latency.py                 # all cases, 10 s each
    sudo .venv/bin/python bench/latency.py --cases loopback relayed --seconds 5

Needs root for the namespaces (``loopback`` alone does not). Figures: docs/benchmarks.md,
"Picture latency across networks", and docs/networks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make ``bench`` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vaka.devstack.netcall import PeerProcess, PeerSettings, connect_call
from vaka.devstack.netns import TestNet, remove_leftovers
from vaka.devstack.topology import (
    RELAY_IP,
    STAFF_IP,
    TCP_443_ONLY,
    UNIT_IP,
    Profile,
    Topology,
    build,
)
from vaka.devstack.turn import TurnServer, TurnSettings
from vaka.provisioning.localpki import LocalPki
from vaka.provisioning.turn import RelayEndpoint, Transport, turn_credential

WIDTH, HEIGHT, FPS = 640, 480, 15
WARM_UP_S = 1.0
SECRET = "bench-shared-secret-0123456789"

# case: (networks, the TURN URL both peers get besides STUN; None: STUN only)
PROFILES: dict[str, tuple[Profile, Transport | None]] = {
    "direct": (Profile("direct"), None),
    "relayed": (Profile("relayed", carrier_nat="symmetric"), "udp"),
    "relayed-tls": (Profile("relayed-tls", staff_allow_out=TCP_443_ONLY), "tls"),
    "impaired": (Profile("impaired", delay_ms=150, loss_percent=5), "udp"),
}
CASES = ("loopback", *PROFILES)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(unit: PeerProcess, staff: PeerProcess, seconds: float) -> dict[str, Any]:
    async with _running(unit, staff):
        setup = await connect_call(unit, staff, deadline_s=15.0)
        await asyncio.sleep(WARM_UP_S + seconds)
        report = await staff.report()
    window_start_ms = (setup.staff_first_frame_at + WARM_UP_S) * 1000
    latencies = [
        latency
        for stamp, latency in zip(report["stamps"], report["latencies_ms"], strict=True)
        if stamp >= window_start_ms
    ]
    return {
        "setup_s": round(setup.setup_s, 3),
        "pair": report["pair"],
        "frames_decoded": len(latencies),
        "expected_frames": round(seconds * FPS),
        "latency_p50_ms": round(_percentile(latencies, 0.5), 1) if latencies else None,
        "latency_p95_ms": round(_percentile(latencies, 0.95), 1) if latencies else None,
        "latency_mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }


@contextlib.asynccontextmanager
async def _running(*peers: PeerProcess) -> AsyncIterator[None]:
    try:
        await asyncio.gather(*(p.start() for p in peers))
        yield
    finally:
        await asyncio.gather(*(p.close() for p in peers))


def _settings(host: str, servers: list[dict[str, str]], *, send: bool) -> PeerSettings:
    return PeerSettings(
        host, servers, width=WIDTH, height=HEIGHT, fps=FPS, send=send, gather_timeout_s=3.0
    )


async def _loopback(work: Path, seconds: float) -> dict[str, Any]:
    unit = PeerProcess(None, "loopback-unit", _settings("127.0.0.1", [], send=True), work)
    staff = PeerProcess(None, "loopback-staff", _settings("127.0.0.1", [], send=False), work)
    return await _measure(unit, staff, seconds)


@contextlib.contextmanager
def _bed(profile: Profile, work: Path, pki: LocalPki, secret: Path) -> Iterator[Topology]:
    with TestNet() as net:
        topology = build(net, profile)
        settings = TurnSettings(
            listen_ip=RELAY_IP,
            secret_file=secret,
            work_dir=work / f"turn-{profile.name}",
            tls_port=443,
            cert=pki.broker_cert,
            key=pki.broker_key,
        )
        with TurnServer(settings, netns=topology.relay.name):
            yield topology


async def _networked(case: str, work: Path, seconds: float) -> dict[str, Any]:
    profile, staff_prefers = PROFILES[case]
    pki = LocalPki(work / "pki", broker_names=(RELAY_IP,)).ensure()
    secret = work / "turn-secret"
    secret.write_text(SECRET + "\n")
    credential = turn_credential(SECRET.encode(), f"bench-{case}", 300, RelayEndpoint(RELAY_IP))

    def servers(prefer: Transport | None) -> list[dict[str, str]]:
        entries = credential.ice_servers(prefer or "udp")[: 2 if prefer else 1]
        return [entry.as_dict() for entry in entries]

    env = {"SSL_CERT_FILE": str(pki.server_ca_cert)}
    with _bed(profile, work, pki, secret) as topology:
        unit = PeerProcess(
            topology.unit,
            f"{case}-unit",
            _settings(UNIT_IP, servers(staff_prefers and "udp"), send=True),
            work,
        )
        staff = PeerProcess(
            topology.staff,
            f"{case}-staff",
            _settings(STAFF_IP, servers(staff_prefers), send=False),
            work,
            env=env,
        )
        return await _measure(unit, staff, seconds)


def _line(case: str, result: dict[str, Any]) -> str:
    pair = result.get("pair") or {}
    ratio = result.get("p50_vs_loopback")
    return (
        f"{case:12s} setup {result['setup_s']:.2f} s  pair {pair.get('type', '?'):5s}"
        f" ({pair.get('relay_transport') or '-'})  latency p50 {result['latency_p50_ms']} ms"
        f"  p95 {result['latency_p95_ms']} ms  frames {result['frames_decoded']}"
        f"/{result['expected_frames']}" + (f"  p50 x{ratio} of loopback" if ratio else "")
    )


async def run(cases: list[str], seconds: float) -> dict[str, Any]:
    """Measure each case in turn; returns the JSON object the bench prints."""
    results: dict[str, Any] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="vaka-latency-") as tmp:
        work = Path(tmp)
        if any(c != "loopback" for c in cases):
            remove_leftovers()
        for case in cases:
            case_dir = work / case
            case_dir.mkdir()
            if case == "loopback":
                results[case] = await _loopback(case_dir, seconds)
            else:
                results[case] = await _networked(case, case_dir, seconds)
            base = results.get("loopback")
            for name, result in results.items():
                if base and name != "loopback" and base["latency_p50_ms"]:
                    p50 = result["latency_p50_ms"]
                    result["p50_vs_loopback"] = round(p50 / base["latency_p50_ms"], 2)
            print(_line(case, results[case]), file=sys.stderr, flush=True)
    return {
        "bench": "latency",
        "size": f"{WIDTH}x{HEIGHT}@{FPS}",
        "seconds": seconds,
        "warm_up_s": WARM_UP_S,
        "run_s": round(time.time() - started, 1),
        "cases": results,
    }


def main() -> None:
    """Parse the arguments, run the cases, print the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    # the baseline first, so every other case gets its ratio
    cases = sorted(args.cases, key=lambda c: c != "loopback")
    print(json.dumps(asyncio.run(run(cases, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
