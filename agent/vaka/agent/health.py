"""Health sampling and reporting.

:class:`HealthSampler` reads the unit's own Linux sources (:mod:`vaka.agent.sysinfo`: psutil,
``/sys``, ``/proc``), the hardware's clock (:mod:`vaka.agent.hw.clock`: the kernel's clock
discipline, or a fake on simulated hardware), the certificate on disk and the hardware states
into one
:class:`~vaka.protocol.messages.HealthPayload`. Each source tracks whether its last read
succeeded and logs only when that changes ("cpu temperature failed: ...", "cpu temperature:
recovered"); a failing source gives ``None`` and never an exception.

:class:`HealthReporter` publishes a sample at once, then every ``interval_s``, and soon after any
hardware state change or :meth:`HealthReporter.trigger`.
"""

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from vaka.agent import __version__
from vaka.agent.hw.base import StateSource
from vaka.agent.hw.camera import CameraPresence
from vaka.agent.hw.hardware import Hardware
from vaka.agent.hw.sound import SoundPresence
from vaka.agent.sysinfo import (
    in_range,
    read_cpu_temperature,
    read_link,
    read_load1,
    read_memory_used,
    read_uptime,
)
from vaka.protocol.messages import HealthPayload, PrivacyState
from vaka.provisioning.pki import cert_expiry

log = logging.getLogger(__name__)

T = TypeVar("T")
Publish = Callable[[HealthPayload], Awaitable[None]]


# ---------------------------------------------------------------- sampler


class SourceStatus:
    """Whether one health source's last read succeeded; logs only when that changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: ``None`` before the first read.
        self.ok: bool | None = None

    def read(self, source: Callable[[], T]) -> T | None:
        """``source()``, or ``None`` if it raised."""
        try:
            value = source()
        except Exception as err:
            if self.ok is not False:
                log.warning("%s failed: %s", self.name, str(err) or type(err).__name__)
            self.ok = False
            return None
        if self.ok is False:
            log.info("%s: recovered", self.name)
        self.ok = True
        return value


class HealthSampler:
    """Builds one :class:`HealthPayload` from the unit's sources; :meth:`sample` blocks.

    The callables are the agent's own figures (from the link, the config, the call machinery);
    they are called on the sampling thread and must be cheap and thread-safe to read.
    """

    def __init__(
        self,
        *,
        interval_s: float = 30.0,
        hardware: Hardware | None = None,
        cert_path: Path | None = None,
        broker_rtt_ms: Callable[[], float | None] = lambda: None,
        config_version: Callable[[], int] = lambda: 0,
        refused_messages: Callable[[], int] = lambda: 0,
        last_call: Callable[[], str | None] = lambda: None,
        link_outages: Callable[[], tuple[int, float | None]] = lambda: (0, None),
        privacy: Callable[[], PrivacyState | None] = lambda: None,
        clock_synced: Callable[[], bool] | None = None,
        sys_root: Path = Path("/sys"),
        proc_root: Path = Path("/proc"),
    ) -> None:
        if not 0 < interval_s <= 86_400:
            raise ValueError(f"health interval must be within 0..86400 s, got {interval_s}")
        self.interval_s = interval_s
        self.hardware = hardware or Hardware()
        self.cert_path = cert_path
        self.sys_root = sys_root
        self.proc_root = proc_root
        self._broker_rtt_ms = broker_rtt_ms
        self._config_version = config_version
        self._refused = refused_messages
        self._last_call = last_call
        #: a callable given wins over the hardware's clock (tests pin it)
        self._clock_synced = clock_synced or self.hardware.clock.synchronised
        self._link_outages = link_outages
        self._privacy = privacy
        self._status: dict[str, SourceStatus] = {}
        self._lock = threading.Lock()

    @property
    def status(self) -> dict[str, bool | None]:
        """Per source: did its last read succeed (``None``: not read yet)."""
        return {name: s.ok for name, s in self._status.items()}

    def _read(self, name: str, source: Callable[[], T]) -> T | None:
        status = self._status.setdefault(name, SourceStatus(name))
        return status.read(source)

    def sample(self) -> HealthPayload:
        """Read every source now. Never raises: a failing source gives ``None``."""
        with self._lock:
            fields = self._collect()
            try:
                return HealthPayload(**fields)
            except ValidationError as err:  # a bug in a check here, not a reason to stop
                log.error("health sample invalid, sending the basics only: %s", err)
                keep = ("interval_s", "uptime_s", "load1", "mem_used_pct", "clock_synced")
                return HealthPayload(
                    agent_version=__version__[:200],
                    config_version=0,
                    **{k: fields[k] for k in keep},
                )

    def _collect(self) -> dict[str, Any]:
        read, hw = self._read, self.hardware
        camera = read("camera", lambda: _refreshed(hw.camera))
        sound = read("sound", lambda: _refreshed(hw.sound))
        return {
            "interval_s": self.interval_s,
            "uptime_s": read("uptime", read_uptime),
            "load1": read("load", read_load1),
            "mem_used_pct": read("memory", read_memory_used),
            "cpu_temp_c": read("cpu temperature", lambda: read_cpu_temperature(self.sys_root)),
            "link": read("link", lambda: read_link(self.sys_root, self.proc_root)),
            "broker_rtt_ms": read("broker round-trip", self._rtt),
            "camera_present": None if camera is None else camera == CameraPresence.PRESENT.value,
            "sound_present": None if sound is None else sound == SoundPresence.PRESENT.value,
            "shutter": read("shutter", lambda: _refreshed(hw.shutter)),
            "tv": read("tv", lambda: _refreshed(hw.display)),
            "clock_synced": read("clock sync", self._clock_synced) is True,
            "cert_expires_at": read("certificate", self._cert_expiry),
            "agent_version": __version__[:200],
            "config_version": read("config version", lambda: _count(self._config_version())) or 0,
            "refused_messages": read("refused messages", lambda: _count(self._refused())) or 0,
            "last_call": read("last call", self._last),
            "privacy": read("privacy mode", self._privacy),
            **self._outages(),
            **self._system(),
        }

    def _system(self) -> dict[str, Any]:
        installer = self.hardware.installer
        running = None if installer is None else self._read("system", installer.running)
        if running is None:
            return {}
        return {"system_version": running.version, "slot": running.slot}

    def _outages(self) -> dict[str, Any]:
        outages = self._read("link outages", self._link_outages)
        if outages is None:
            return {}
        count, last_s = outages
        return {"link_outages": _count(count), "last_outage_s": last_s}

    def _rtt(self) -> float | None:
        rtt = self._broker_rtt_ms()
        return None if rtt is None else in_range("broker round-trip", float(rtt), 0, math.inf)

    def _cert_expiry(self) -> float | None:
        return None if self.cert_path is None else cert_expiry(self.cert_path)

    def _last(self) -> str | None:
        last = self._last_call()
        return None if last is None else str(last)[:200]


def _refreshed(device: StateSource[Any] | None) -> Any:
    """The device's state value after a refresh, ``None`` without a device."""
    return None if device is None else device.refresh().value


def _count(value: int) -> int:
    if value < 0:
        raise ValueError(f"count {value} is negative")
    return int(value)


# ---------------------------------------------------------------- reporter


class HealthReporter:
    """Publishes health at once, every ``interval_s``, and soon after any hardware change.

    Changes within ``debounce_s`` of each other go out as one report. :meth:`trigger` may be
    called from any thread.
    """

    def __init__(
        self,
        sampler: HealthSampler,
        *,
        interval_s: float = 30.0,
        hardware: Hardware | None = None,
        debounce_s: float = 0.2,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"health interval must be positive, got {interval_s}")
        self.sampler = sampler
        self.interval_s = interval_s
        self.hardware = hardware
        self.debounce_s = debounce_s
        #: How many reports were published successfully.
        self.published = 0
        #: The last payload published successfully.
        self.last: HealthPayload | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._publish_ok: bool | None = None

    def trigger(self) -> None:
        """Ask for a report now (debounced). Does nothing while :meth:`run` is not running."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return  # the first report of run() goes out at once anyway
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(wake.set)

    def _on_change(self, _state: object) -> None:
        self.trigger()

    async def run(self, publish: Publish) -> None:
        """Report until cancelled; a publish that fails is logged and the next one tried."""
        if self._loop is not None:
            raise RuntimeError("this health reporter is already running")
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        wake = self._wake
        sources = self.hardware.sources() if self.hardware else []
        unsubscribes = [source.subscribe(self._on_change) for source in sources]
        try:
            while True:
                wake.clear()
                await self._report(publish)
                try:
                    async with asyncio.timeout(self.interval_s):
                        await wake.wait()
                except TimeoutError:
                    continue
                await asyncio.sleep(self.debounce_s)
        finally:
            for unsubscribe in unsubscribes:
                unsubscribe()
            self._loop = self._wake = None

    async def _report(self, publish: Publish) -> None:
        try:
            payload = await asyncio.to_thread(self.sampler.sample)
        except Exception:
            log.exception("health sample failed")
            return
        try:
            await publish(payload)
        except Exception as err:
            if self._publish_ok is not False:
                log.warning("health publish failed: %s", str(err) or type(err).__name__)
            self._publish_ok = False
            return
        if self._publish_ok is False:
            log.info("health publish: recovered")
        self._publish_ok = True
        self.published += 1
        self.last = payload
