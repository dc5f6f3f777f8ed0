"""The load generator: thousands of simulated units (paho-mqtt clients) on one selector loop."""

from __future__ import annotations

import contextlib
import heapq
import random
import selectors
import signal
import ssl
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vaka.protocol import (
    Channel,
    HealthMessage,
    StateMessage,
    StatePayload,
    device_topic,
    encode,
)
from vaka.provisioning.localpki import ClientFiles, LocalPki
from vaka.provisioning.tls import client_tls_context

from .common import HOST
from .loadplan import WorkerPlan, health_payloads


class LoadWorker:
    """Many paho-mqtt clients on one selector loop, in one process."""

    def __init__(self, plan: WorkerPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.rng = random.Random(plan.seed)
        self.interval = plan.interval_s
        self.sel = selectors.DefaultSelector()
        n = len(plan.units)
        self.clients: list[mqtt.Client | None] = [None] * n
        self.fds: list[int] = [-1] * n
        self.bdseq: list[int] = [0] * n
        self.health_topics = [device_topic(u, Channel.HEALTH) for u in plan.units]
        self.state_topics = [device_topic(u, Channel.STATE) for u in plan.units]
        self.payloads = health_payloads(self.rng, plan.interval_s)
        self.due: list[tuple[float, int]] = []  # (monotonic due, unit) heap of health publishes
        self.connects: list[tuple[float, int, int]] = []  # (monotonic due, unit, attempt)
        self.writing: set[int] = set()
        self.inflight: dict[tuple[int, int], float] = {}
        self.counters: dict[str, int] = {
            "connected": 0,
            "connect_ok": 0,
            "connect_errors": 0,
            "connack_refused": 0,
            "disconnects": 0,
            "births": 0,
            "published": 0,
            "acked": 0,
            "ack_failures": 0,
        }
        self.errors: dict[str, int] = {}
        self.handshake_ms: list[float] = []
        self.ack_ms: list[float] = []
        self.late_ms: list[float] = []
        self.first_connack = 0.0
        self.last_connack = 0.0
        self.tls_version = ""
        self.running = True
        self.files: list[ClientFiles] = []
        self.online: list[bool] = [False] * n

    # -- setup

    def issue_certificates(self) -> float:
        """Issue this worker's unit certificates (one key and certificate file per unit)."""
        started = time.monotonic()
        local = LocalPki(Path(self.plan.pki_root))
        self.files = [local.client(unit) for unit in self.plan.units]
        return time.monotonic() - started

    # -- MQTT callbacks (userdata = unit index)

    def _on_connect(
        self,
        client: mqtt.Client,
        idx: int,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.counters["connack_refused"] += 1
            self._error(f"connack {reason}")
            return
        now = time.time()
        self.first_connack = self.first_connack or now
        self.last_connack = now
        self.online[idx] = True
        self.counters["connected"] += 1
        self.counters["connect_ok"] += 1
        unit = self.plan.units[idx]
        birth = StateMessage(payload=StatePayload(status="online", bdseq=self._bdseq(idx)))
        client.publish(self.state_topics[idx], encode(birth), qos=1, retain=True)
        self.counters["births"] += 1
        client.subscribe(
            [(device_topic(unit, Channel.SIGNAL_IN), 1), (device_topic(unit, Channel.CONFIG), 1)]
        )
        heapq.heappush(self.due, (time.monotonic() + self.rng.uniform(0, self.interval), idx))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        idx: int,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if self.clients[idx] is None:
            return
        self.clients[idx] = None
        if self.online[idx]:
            self.online[idx] = False
            self.counters["connected"] -= 1
        if self.running:
            self.counters["disconnects"] += 1
            self._error(f"disconnect {reason}")

    def _on_publish(
        self, client: mqtt.Client, idx: int, mid: int, reason: ReasonCode, props: Properties | None
    ) -> None:
        sent = self.inflight.pop((idx, mid), None)
        if reason.is_failure:
            self.counters["ack_failures"] += 1
            self._error(f"puback {reason}")
            return
        if sent is not None:
            self.counters["acked"] += 1
            self.ack_ms.append((time.monotonic() - sent) * 1000)

    def _on_socket_close(self, client: mqtt.Client, idx: int, sock: object) -> None:
        fd = self.fds[idx]
        if fd >= 0:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.sel.unregister(fd)
            self.writing.discard(idx)
            self.fds[idx] = -1

    def _bdseq(self, idx: int) -> int:
        """The birth sequence of unit ``idx``'s current session (will and birth share it)."""
        return self.bdseq[idx]

    def _error(self, what: str) -> None:
        self.errors[what[:80]] = self.errors.get(what[:80], 0) + 1

    # -- connections

    def _connect(self, idx: int, attempt: int) -> None:
        unit = self.plan.units[idx]
        files = self.files[idx]
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=unit,
            protocol=mqtt.MQTTv5,
            userdata=idx,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_close = self._on_socket_close
        client.connect_timeout = 10.0
        started = time.monotonic()
        try:
            client.tls_set_context(client_tls_context(files.server_ca, files.cert, files.key))
            self.bdseq[idx] = max(time.time_ns() // 1_000_000, self.bdseq[idx] + 1)
            offline = StateMessage(payload=StatePayload(status="offline", bdseq=self._bdseq(idx)))
            client.will_set(self.state_topics[idx], encode(offline), qos=1, retain=True)
            rc = client.connect(HOST, self.plan.port, keepalive=self.plan.keepalive_s)
            sock = client.socket()
            if sock is None:  # the broker closed the connection right after the handshake
                raise ConnectionError(f"closed after TLS handshake ({rc})")
        except (OSError, ssl.SSLError, ValueError) as err:
            self.counters["connect_errors"] += 1
            self._error(f"connect {type(err).__name__}: {err}")
            if attempt < 3:
                retry = time.monotonic() + 2.0 * (attempt + 1)
                heapq.heappush(self.connects, (retry, idx, attempt + 1))
            return
        self.handshake_ms.append((time.monotonic() - started) * 1000)
        if not self.tls_version and isinstance(sock, ssl.SSLSocket):
            self.tls_version = sock.version() or ""
        fd = sock.fileno()
        self.clients[idx] = client
        self.fds[idx] = fd
        self.sel.register(fd, selectors.EVENT_READ, idx)
        self._flush(idx, client)

    def _flush(self, idx: int, client: mqtt.Client) -> None:
        """Write what paho queued; watch for writability only while something is left."""
        if client.want_write():
            client.loop_write()
        fd = self.fds[idx]
        if fd < 0:
            return
        if client.want_write():
            if idx not in self.writing:
                self.sel.modify(fd, selectors.EVENT_READ | selectors.EVENT_WRITE, idx)
                self.writing.add(idx)
        elif idx in self.writing:
            self.sel.modify(fd, selectors.EVENT_READ, idx)
            self.writing.discard(idx)

    def _readable(self, idx: int) -> None:
        client = self.clients[idx]
        if client is None:
            return
        client.loop_read()
        sock = client.socket()
        # TLS may hold decrypted bytes that select() does not report.
        while sock is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
            client.loop_read()
            sock = client.socket()
        if self.clients[idx] is not None:
            self._flush(idx, client)

    # -- publishing

    def _publish_health(self, idx: int, due: float) -> None:
        client = self.clients[idx]
        if client is None:
            return
        now = time.monotonic()
        self.late_ms.append((now - due) * 1000)
        message = HealthMessage(payload=self.payloads[idx % len(self.payloads)])
        info = client.publish(self.health_topics[idx], encode(message), qos=1)
        self.counters["published"] += 1
        self.inflight[(idx, info.mid)] = now
        client.loop_misc()  # keepalive bookkeeping while we are here
        if self.clients[idx] is not None:
            self._flush(idx, client)
        heapq.heappush(self.due, (due + self.interval, idx))

    def _set_interval(self, interval: float) -> None:
        """Change the health interval of every unit, with a fresh random phase."""
        self.interval = interval
        now = time.monotonic()
        self.due = [(now + self.rng.uniform(0, interval), idx) for _, idx in self.due]
        heapq.heapify(self.due)

    # -- control

    def stats(self) -> dict[str, Any]:
        """Counters and the samples gathered since the last ``window`` request."""
        return {
            **self.counters,
            "errors": dict(self.errors),
            "handshakes": len(self.handshake_ms),
            "first_connack": self.first_connack,
            "last_connack": self.last_connack,
            "tls_version": self.tls_version,
            "pending_connects": len(self.connects),
        }

    def _control(self) -> None:
        try:
            request = self.conn.recv()
        except (EOFError, OSError):
            self.running = False
            return
        kind = request[0]
        if kind == "stats":
            self.conn.send(self.stats())
        elif kind == "window":
            self.conn.send(
                {
                    **self.stats(),
                    "ack_ms": self.ack_ms,
                    "late_ms": self.late_ms,
                    "handshake_ms": self.handshake_ms,
                }
            )
            self.ack_ms, self.late_ms, self.handshake_ms = [], [], []
        elif kind == "interval":
            self._set_interval(float(request[1]))
            self.conn.send(True)
        elif kind == "stop":
            self.running = False

    def run(self, t0_wall: float) -> None:
        """Ramp up from ``t0_wall`` then publish until told to stop."""
        start = time.monotonic() + (t0_wall - time.time())
        self.connects = [(start + slot, idx, 0) for idx, slot in enumerate(self.plan.slots)]
        heapq.heapify(self.connects)
        self.sel.register(self.conn.fileno(), selectors.EVENT_READ, -1)
        misc_cursor = 0
        next_misc = time.monotonic()
        while self.running:
            now = time.monotonic()
            done = 0
            while self.connects and self.connects[0][0] <= now and done < 8:
                _, idx, attempt = heapq.heappop(self.connects)
                self._connect(idx, attempt)
                done += 1
            while self.due and self.due[0][0] <= now:
                due, idx = heapq.heappop(self.due)
                self._publish_health(idx, due)
            if now >= next_misc:  # keepalive sweep: every client about every keepalive/4
                share = max(1, len(self.clients) * 2 // max(1, self.plan.keepalive_s))
                for _ in range(min(share, len(self.clients))):
                    client = self.clients[misc_cursor]
                    if client is not None:
                        client.loop_misc()
                        if self.clients[misc_cursor] is not None:
                            self._flush(misc_cursor, client)
                    misc_cursor = (misc_cursor + 1) % len(self.clients)
                next_misc = now + 0.5
            deadlines = [next_misc]
            if self.connects:
                deadlines.append(self.connects[0][0])
            if self.due:
                deadlines.append(self.due[0][0])
            timeout = max(0.0, min(min(deadlines) - time.monotonic(), 0.05))
            for key, mask in self.sel.select(timeout):
                idx = key.data
                if idx < 0:
                    self._control()
                    continue
                client = self.clients[idx]
                if client is None:
                    continue
                if mask & selectors.EVENT_READ:
                    self._readable(idx)
                if mask & selectors.EVENT_WRITE and self.clients[idx] is not None:
                    self._flush(idx, client)
        self._disconnect_all()

    def _disconnect_all(self) -> None:
        """Disconnect cleanly (no wills), so the fleet leaves without a storm of offline states."""
        for idx, client in enumerate(self.clients):
            if client is None:
                continue
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop_write()
            with contextlib.suppress(Exception):
                sock = client.socket()
                if sock is not None:
                    sock.close()
            self.clients[idx] = None


def worker_main(plan: WorkerPlan, conn: Connection) -> None:
    """Child process: issue certificates, wait for ``go``, then run the units."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = LoadWorker(plan, conn)
    setup_s = worker.issue_certificates()
    conn.send(("ready", setup_s))
    try:
        request = conn.recv()
    except EOFError:
        return
    if request[0] != "go":
        return
    worker.run(float(request[1]))
    with contextlib.suppress(OSError):
        conn.send(("stopped", worker.stats()))
