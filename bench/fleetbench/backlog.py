"""Restart with a backlog, night checks and events: what must hold when central falls behind.

* **Events**: a unit of the bench's own (``EVENT_UNIT``) publishes an ``info`` event every
  ``1 / EVENT_RATE`` s from the steady window to the end of the drain, through central's kill;
  at the end every event the broker acknowledged must be in central's store (``events_lost``).
* **Night check**: a real ``vaka-agent --simulate`` nightcam and a staff client on the same
  broker and central; the set-up time (dial to the first decoded frame) before the backlog and
  during its drain.
* **Backlog**: central is killed (``kill -9``) while the fleet goes on publishing (faster, to
  fill the queue sooner) until ``--backlog`` health reports wait at the broker for central's
  persistent session; central is started again and the bench samples its RSS every 50 ms
  while it drains, dials a night check at once, and times the drain (until central has taken
  everything published since the kill).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .common import log

if TYPE_CHECKING:
    from vaka.staff.client import StaffClient

    from .phases import Bench

EVENT_UNIT = "u-bench-events"
EVENT_RATE = 20.0


class EventSource:
    """One unit publishing QoS 1 events on its own connection; remembers which were PUBACKed."""

    def __init__(self, bench: Bench) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from vaka.provisioning.tls import client_tls_context

        assert bench.stack is not None
        files = bench.pki.client(EVENT_UNIT)
        self.client = client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=EVENT_UNIT, protocol=mqtt.MQTTv5
        )
        client.tls_set_context(client_tls_context(files.server_ca, files.cert, files.key))
        self.port = bench.port
        # (paho's message info, event id); no lock shared with paho's callbacks (a publish
        # holding one while paho's thread calls back for it deadlocks)
        self.sent: list[tuple[Any, str]] = []
        #: event id -> (its number, when it was published): to place a lost one in the timeline
        self.published: dict[str, tuple[int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)

    def start(self) -> None:
        from .common import HOST

        self.client.connect(HOST, self.port, keepalive=30, clean_start=True)
        self.client.loop_start()
        self._thread.start()

    def _run(self) -> None:
        from vaka.protocol.messages import EventMessage, EventPayload, encode
        from vaka.protocol.topics import Channel, device_topic

        topic = device_topic(EVENT_UNIT, Channel.EVENTS)
        n = 0
        while not self._stop.wait(1 / EVENT_RATE):
            n += 1
            message = EventMessage(payload=EventPayload(kind="info", detail={"n": n}))
            self.published[message.id] = (n, time.time())
            self.sent.append((self.client.publish(topic, encode(message), qos=1), message.id))

    def stop(self) -> list[str]:
        """Stop publishing (safe twice); the ids the broker acknowledged."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(5)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(i.is_published() for i, _ in self.sent):
                time.sleep(0.1)
            self.client.disconnect()
            self.client.loop_stop()
        return [event_id for info, event_id in self.sent if info.is_published()]


async def night_check(staff: StaffClient) -> float:
    """One night check by a logged-in nurse: seconds from the dial to the first frame."""
    from vaka.staff.client import StaffError

    from ..callbench.common import CALL_TIMEOUT_S, UNIT

    started = time.perf_counter()
    for attempt in range(50):
        try:
            call = await asyncio.wait_for(staff.dial(UNIT, "night_check"), CALL_TIMEOUT_S)
            break
        except StaffError as err:  # the unit still ending the last call, or not yet seen
            if attempt == 49:
                raise
            log(f"night check: dial retried ({err})")
            await asyncio.sleep(0.2)
    try:
        await call.next_frame(timeout=CALL_TIMEOUT_S)
        took = time.perf_counter() - started
        # where the set-up's time went, from the staff side (ms from the dial)
        log(f"night check: {took * 1000:.0f} ms, steps {call.timings.as_ms()}")
        return took
    finally:
        await call.hangup()
        await asyncio.sleep(0.5)


async def logged_in_night_check(url: str, after_login: Callable[[], None] = lambda: None) -> float:
    """Log the bench nurse in at ``url`` (``after_login`` then runs), then one night check.

    The log-in's password check (argon2, 64 MiB for a moment) happens before ``after_login``,
    so RSS sampled from there on is what the backlog and the call cost, not the log-in.
    """
    from vaka.staff.client import StaffClient

    from ..callbench.common import PASSWORD, STAFF, TOTP_SECRET

    async with StaffClient(url) as staff:
        await staff.login(STAFF, PASSWORD, totp_secret=TOTP_SECRET)
        after_login()
        return await night_check(staff)


def start_night_check_unit(bench: Bench) -> None:
    """The directory (one nurse, one citizen's nightcam) in central, and the nightcam running."""
    from ..callbench.common import FPS, HOST, MAX_BITRATE_BPS, SMALL, UNIT
    from ..callbench.stack import directory_spec_data

    assert bench.stack is not None
    bench.ask_central("directory", directory_spec_data())
    bench.night_unit = bench.stack.spawn_unit(
        UNIT,
        "nightcam",
        media={
            "width": SMALL[0],
            "height": SMALL[1],
            "fps": FPS,
            "max_bitrate_bps": MAX_BITRATE_BPS,
            "ice_addresses": [HOST],
        },
    )
    deadline = time.monotonic() + 60
    unit = bench.night_unit
    while bench.ask_central("unit", UNIT)[0] != "online":
        if time.monotonic() > deadline or not unit.running:
            raise RuntimeError(f"the night-check unit did not come online: {unit.tail()}")
        time.sleep(0.2)


def restart_with_backlog(bench: Bench, backlog: int, fill_rate: float) -> dict[str, Any]:
    """Kill central, let ``backlog`` health reports queue, restart it and measure the drain."""
    import psutil

    from .measure import Proc

    a = bench.args
    connected = bench.total(bench.ask_workers("stats"), "connected")
    before = asyncio.run(logged_in_night_check(bench.central_urls[0]))
    log(f"backlog: night check before it {before * 1000:.0f} ms; killing central")
    published0 = bench.total(bench.ask_workers("stats"), "published")
    bench.kill_centrals()
    bench.ask_workers("interval", connected / fill_rate)
    deadline = time.monotonic() + backlog / fill_rate * 4 + 60
    queued = 0
    while queued < backlog and time.monotonic() < deadline:
        time.sleep(0.5)
        queued = bench.total(bench.ask_workers("stats"), "published") - published0
    bench.ask_workers("interval", a.interval)
    log(f"backlog: {queued} health reports published while central was away; restarting it")

    peak = {"rss_mb": 0.0}
    sampling = threading.Event()

    def sample(ps: Proc) -> None:
        while not sampling.is_set():
            peak["rss_mb"] = max(peak["rss_mb"], ps.rss_mb())
            time.sleep(0.05)

    restarted = time.monotonic()
    bench.start_centrals(bench.port)
    ready_s = time.monotonic() - restarted
    central = bench.central_ps[0]
    cpu0 = central.cpu_s()
    sampler = threading.Thread(target=sample, args=(central,), daemon=True)
    at_login: list[float] = []

    def logged_in() -> None:
        at_login.append(central.rss_mb())
        sampler.start()

    during = asyncio.run(logged_in_night_check(bench.central_urls[0], logged_in))
    gave_way = bench.central_stats()["calls_first"]
    log(f"backlog: night check during the drain {during * 1000:.0f} ms; health gave way {gave_way}")
    drained_s = None
    stats: dict[str, Any] = {}
    while time.monotonic() - restarted < 600:
        stats = bench.central_stats()
        published = bench.total(bench.ask_workers("stats"), "published") - published0
        if stats["accepted"] >= published - 5 and stats["pending"] == 0:
            drained_s = time.monotonic() - restarted
            break
        time.sleep(0.2)
    cpu_s = central.cpu_s() - cpu0
    sampling.set()
    if sampler.is_alive():
        sampler.join(1)
    with_ps = psutil.Process(central.ps.pid)
    out = {
        "queued_at_restart": queued,
        "central_ready_after_s": round(ready_s, 2),
        # from the restart until central has taken everything published since the kill
        "drain_s": None if drained_s is None else round(drained_s, 1),
        "drain_msg_s_after_ready": (
            None if not drained_s else round(stats["accepted"] / (drained_s - ready_s))
        ),
        "central_cpu_us_per_msg_in_drain": round(cpu_s / max(1, stats["accepted"]) * 1e6, 1),
        "central_rss_mb_after_login": round(at_login[0], 1) if at_login else None,
        "central_peak_rss_mb_from_the_dial": round(peak["rss_mb"], 1),
        "central_rss_mb_after": round(with_ps.memory_info().rss / 2**20, 1),
        "night_check_setup_ms_before": round(before * 1000),
        "night_check_setup_ms_during_drain": round(during * 1000),
    }
    log(f"backlog: {out}")
    return out
