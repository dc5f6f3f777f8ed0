"""MQTT clients side by side: the CPU paho, aiomqtt (paho under asyncio, what central uses) and
gmqtt spend per received QoS 1 message, on the same Mosquitto, over TLS with client
certificates, in one run.

Each client in turn (in alternating order, ``--rounds`` times) runs in a process of its own,
subscribes to every unit's health with QoS 1, and a publisher sends ``--messages`` health-sized
messages as fast as the broker takes them. The subscriber measures its own CPU time (user +
system, all threads) from the first message to the last. What a client spends here is the floor
central pays per message before any work of its own::

    .venv/bin/python -m bench.mqtt_clients --messages 30000 --rounds 2 --json clients.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import ssl
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from vaka.devstack.stack import LocalStack
from vaka.provisioning.tls import client_tls_context

HOST = "127.0.0.1"
TOPIC = "vaka/v1/dev/u-bench-{}/health"
FILTER = "vaka/v1/dev/+/health"
PAYLOAD = json.dumps({"v": 1, "type": "health", "payload": {"uptime_s": 1.0, "x": "y" * 200}})
CLIENTS = ("paho", "aiomqtt", "gmqtt")
Files = tuple[str, str, str]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Count:
    """Counts messages; CPU time and wall time from the first to the ``n``-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.first: tuple[float, float] | None = None
        self.result: dict[str, float] | None = None
        self.done = threading.Event()

    def one(self) -> None:
        self.seen += 1
        if self.first is None:
            self.first = (_cpu(), time.monotonic())
        if self.seen == self.n:
            cpu, wall = self.first
            per = max(1, self.n - 1)
            self.result = {
                "cpu_us_per_msg": (_cpu() - cpu) / per * 1e6,
                "msg_per_s": per / max(1e-9, time.monotonic() - wall),
            }
            self.done.set()


def _context(files: Files) -> ssl.SSLContext:
    return client_tls_context(Path(files[0]), Path(files[1]), Path(files[2]))


def _paho(conn: Connection, port: int, files: Files, n: int) -> None:
    count = _Count(n)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="central-sub", protocol=paho.MQTTv5)
    client.tls_set_context(_context(files))
    client.on_message = lambda *_: count.one()
    ready = threading.Event()
    client.on_subscribe = lambda *_: ready.set()
    client.on_connect = lambda c, *_: c.subscribe(FILTER, qos=1)
    client.connect(HOST, port, clean_start=True)
    client.loop_start()
    ready.wait(30)
    conn.send("ready")
    count.done.wait(600)
    conn.send(count.result)
    client.disconnect()
    client.loop_stop()


def _aiomqtt(conn: Connection, port: int, files: Files, n: int) -> None:
    import aiomqtt

    async def run() -> None:
        count = _Count(n)
        async with aiomqtt.Client(
            HOST, port, identifier="central-sub", protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=_context(files),
        ) as client:  # fmt: skip
            await client.subscribe(FILTER, qos=1)
            conn.send("ready")
            async for _ in client.messages:
                count.one()
                if count.done.is_set():
                    break
        conn.send(count.result)

    asyncio.run(run())


def _gmqtt(conn: Connection, port: int, files: Files, n: int) -> None:
    from gmqtt import Client
    from gmqtt.mqtt.constants import MQTTv50

    async def run() -> None:
        count = _Count(n)
        subscribed = asyncio.Event()
        client = Client("central-sub", clean_session=True)

        def on_message(*_: Any) -> int:
            count.one()
            return 0  # PUBACK: success

        client.on_message = on_message
        client.on_subscribe = lambda *_: subscribed.set()
        await client.connect(HOST, port, ssl=_context(files), version=MQTTv50)
        client.subscribe(FILTER, qos=1)
        await asyncio.wait_for(subscribed.wait(), 30)
        conn.send("ready")
        while not count.done.is_set():
            await asyncio.sleep(0.05)
        conn.send(count.result)
        await client.disconnect()

    asyncio.run(run())


SUBSCRIBERS = {"paho": _paho, "aiomqtt": _aiomqtt, "gmqtt": _gmqtt}


def _publish(port: int, files: Files, n: int) -> None:
    """``n`` QoS 1 messages over 100 units' topics, as fast as the broker acknowledges them."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="central-pub", protocol=paho.MQTTv5)
    client.tls_set_context(_context(files))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(HOST, port, clean_start=True)
    client.loop_start()
    infos = [client.publish(TOPIC.format(i % 100), PAYLOAD, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def measure(stack: LocalStack, name: str, n: int) -> dict[str, float]:
    """One client's figures for ``n`` messages."""
    port = stack.broker.port
    sub, pub = stack.pki.client("central-sub"), stack.pki.client("central-pub")
    sub_files = (str(sub.server_ca), str(sub.cert), str(sub.key))
    pub_files = (str(pub.server_ca), str(pub.cert), str(pub.key))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=SUBSCRIBERS[name], args=(child, port, sub_files, n), name=name)
    proc.start()
    if not parent.poll(60) or parent.recv() != "ready":
        raise RuntimeError(f"the {name} subscriber did not subscribe")
    _publish(port, pub_files, n)
    if not parent.poll(300):
        raise RuntimeError(f"the {name} subscriber did not receive all {n} messages")
    result: dict[str, float] = parent.recv()
    proc.join(30)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    with tempfile.TemporaryDirectory(prefix="vaka-clients-") as tmp:
        stack = LocalStack(Path(tmp), host=HOST, central_identities=("central-sub", "central-pub"))
        stack.start_broker()
        try:
            for round_ in range(args.rounds):
                order = CLIENTS if round_ % 2 == 0 else tuple(reversed(CLIENTS))
                for name in order:
                    runs[name].append(measure(stack, name, args.messages))
                    print(f"[clients] round {round_ + 1} {name}: {runs[name][-1]}", flush=True)
        finally:
            stack.close()
    best = {name: min(r["cpu_us_per_msg"] for r in rs) for name, rs in runs.items()}
    report = {
        "messages": args.messages,
        "rounds": args.rounds,
        "runs": runs,
        "cpu_us_per_msg_best": best,
        "ratio_to_paho": {name: best[name] / best["paho"] for name in CLIENTS},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    print(
        "mqtt clients: CPU per received QoS 1 message over TLS (best of "
        f"{args.rounds}): "
        + ", ".join(f"{n} {best[n]:.1f} µs ({best[n] / best['paho']:.2f} x paho)" for n in CLIENTS)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
