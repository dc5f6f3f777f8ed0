"""Health sampling and reporting.

:class:`HealthSampler` reads the unit's own Linux sources (psutil, ``/sys``, ``/proc``, the
kernel's clock discipline, the certificate on disk) and the hardware states into one
:class:`~vaka.protocol.messages.HealthPayload`. Each source tracks whether its last read
succeeded and logs only when that changes ("cpu temperature failed: ...", "cpu temperature:
recovered"); a failing source gives ``None`` and never an exception.

:class:`HealthReporter` publishes a sample at once, then every ``interval_s``, and soon after any
hardware state change or :meth:`HealthReporter.trigger`.
"""

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
from pydantic import ValidationError

from vaka import __version__
from vaka.agent.hw.base import StateSource
from vaka.agent.hw.camera import CameraPresence
from vaka.agent.hw.hardware import Hardware
from vaka.protocol.messages import HealthPayload, LinkQuality
from vaka.provisioning.pki import cert_expiry

log = logging.getLogger(__name__)

T = TypeVar("T")
Publish = Callable[[HealthPayload], Awaitable[None]]

#: Thermal zone types that measure the CPU or SoC (Raspberry Pi: ``cpu-thermal``).
CPU_ZONE_TYPES = re.compile(r"cpu|soc|x86_pkg_temp|tcpu|core", re.IGNORECASE)
#: ``/proc/net/wireless`` link quality is out of 70 with cfg80211 drivers.
WIFI_QUALITY_MAX = 70.0
STA_UNSYNC = 0x0040
TIME_ERROR = 5
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_IFF_UP = 0x1


# ---------------------------------------------------------------- Linux sources


def _in_range(what: str, value: float, low: float, high: float) -> float:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{what} {value!r} is outside {low}..{high}")
    return value


def _zone_number(zone: Path) -> int:
    digits = zone.name.removeprefix("thermal_zone")
    return int(digits) if digits.isdigit() else 1 << 30


def read_cpu_temperature(sys_root: Path = Path("/sys")) -> float | None:
    """Degrees Celsius of the first CPU/SoC thermal zone, or ``None`` if there is none."""
    zones = sorted((sys_root / "class" / "thermal").glob("thermal_zone*"), key=_zone_number)
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip()
        except OSError:
            continue
        if CPU_ZONE_TYPES.search(kind):
            raw = (zone / "temp").read_text().strip()
            return _in_range(f"{kind} temperature", int(raw) / 1000, -50, 150)
    return None


def _wireless(proc_root: Path) -> dict[str, tuple[float | None, float | None]]:
    """``{interface: (quality_pct, signal_dbm)}`` from ``/proc/net/wireless``."""
    try:
        lines = (proc_root / "net" / "wireless").read_text().splitlines()[2:]
    except FileNotFoundError:
        return {}
    found: dict[str, tuple[float | None, float | None]] = {}
    for line in lines:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 3:
            continue
        link, level = float(fields[1].rstrip(".")), float(fields[2].rstrip("."))
        if level > 0:  # some drivers report dBm as an unsigned byte
            level -= 256
        quality = min(100.0, max(0.0, link / WIFI_QUALITY_MAX * 100))
        found[name.strip()] = (quality, level if -150 <= level < 0 else None)
    return found


def _default_route_interface(proc_root: Path) -> str | None:
    try:
        lines = (proc_root / "net" / "route").read_text().splitlines()[1:]
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            return fields[0]
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _is_up(iface: Path) -> bool:
    if _read_text(iface / "type") == str(_ARPHRD_LOOPBACK):
        return False
    state = _read_text(iface / "operstate")
    if state == "up":
        return True
    if state == "unknown":  # tunnels and some drivers never say "up"
        flags = _read_text(iface / "flags") or "0"
        return bool(int(flags, 16) & _IFF_UP) and _read_text(iface / "carrier") == "1"
    return False


def read_link(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> LinkQuality | None:
    """The link the unit most likely uses, or ``None`` when no interface is up.

    Among the up, non-loopback interfaces in ``/sys/class/net``: the one holding the default
    route first, then Wi-Fi ones (with signal from ``/proc/net/wireless``), then physical ones.
    """
    net = sys_root / "class" / "net"
    names = sorted(p.name for p in net.iterdir()) if net.is_dir() else []
    up = [name for name in names if name != "lo" and _is_up(net / name)]
    if not up:
        return None
    wireless = _wireless(proc_root)
    route = _default_route_interface(proc_root)

    def is_wifi(name: str) -> bool:
        return name in wireless or (net / name / "wireless").exists()

    def rank(name: str) -> tuple[bool, bool, bool, str]:
        return (name != route, not is_wifi(name), not (net / name / "device").exists(), name)

    name = min(up, key=rank)
    if is_wifi(name):
        quality, signal = wireless.get(name, (None, None))
        return LinkQuality(interface=name, kind="wifi", signal_dbm=signal, quality_pct=quality)
    ether = _read_text(net / name / "type") == str(_ARPHRD_ETHER)
    kind = "ethernet" if ether and (net / name / "device").exists() else "other"
    return LinkQuality(interface=name[:200], kind=kind)


class _Timex(ctypes.Structure):
    """The head of Linux's ``struct timex``; the tail is reserved space for the kernel to fill."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def kernel_clock_synced() -> bool:
    """Whether the kernel's clock is synchronised (``adjtimex`` read-only, no privileges needed).

    Raises :class:`OSError` (or :class:`AttributeError` without ``adjtimex``) when it cannot tell.
    """
    timex = _Timex()  # modes = 0: read only
    result = _libc().adjtimex(ctypes.byref(timex))
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"adjtimex failed with errno {errno}")
    return result != TIME_ERROR and not timex.status & STA_UNSYNC


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
        clock_synced: Callable[[], bool] = kernel_clock_synced,
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
        self._clock_synced = clock_synced
        self._status: dict[str, SourceStatus] = {}
        self._last_good: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def status(self) -> dict[str, bool | None]:
        """Per source: did its last read succeed (``None``: not read yet)."""
        return {name: s.ok for name, s in self._status.items()}

    def _read(self, name: str, source: Callable[[], T]) -> T | None:
        status = self._status.setdefault(name, SourceStatus(name))
        return status.read(source)

    def _required(self, name: str, source: Callable[[], float]) -> float:
        """For fields the schema requires: the last good value (or 0) while the source fails."""
        value = self._read(name, source)
        if value is None:
            return float(self._last_good.get(name, 0.0))
        self._last_good[name] = value
        return value

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
        return {
            "interval_s": self.interval_s,
            "uptime_s": self._required("uptime", _uptime),
            "load1": self._required("load", lambda: max(0.0, psutil.getloadavg()[0])),
            "mem_used_pct": self._required("memory", _memory_used),
            "cpu_temp_c": read("cpu temperature", lambda: read_cpu_temperature(self.sys_root)),
            "link": read("link", lambda: read_link(self.sys_root, self.proc_root)),
            "broker_rtt_ms": read("broker round-trip", self._rtt),
            "camera_present": None if camera is None else camera == CameraPresence.PRESENT.value,
            "shutter": read("shutter", lambda: _refreshed(hw.shutter)),
            "tv": read("tv", lambda: _refreshed(hw.display)),
            "clock_synced": read("clock sync", self._clock_synced) is True,
            "cert_expires_at": read("certificate", self._cert_expiry),
            "agent_version": __version__[:200],
            "config_version": read("config version", lambda: _count(self._config_version())) or 0,
            "refused_messages": read("refused messages", lambda: _count(self._refused())) or 0,
            "last_call": read("last call", self._last),
        }

    def _rtt(self) -> float | None:
        rtt = self._broker_rtt_ms()
        return None if rtt is None else _in_range("broker round-trip", float(rtt), 0, math.inf)

    def _cert_expiry(self) -> float | None:
        return None if self.cert_path is None else cert_expiry(self.cert_path)

    def _last(self) -> str | None:
        last = self._last_call()
        return None if last is None else str(last)[:200]


def _refreshed(device: StateSource[Any] | None) -> Any:
    """The device's state value after a refresh, ``None`` without a device."""
    return None if device is None else device.refresh().value


def _uptime() -> float:
    return max(0.0, time.time() - psutil.boot_time())


def _memory_used() -> float:
    return _in_range("memory use", psutil.virtual_memory().percent, 0, 100)


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
