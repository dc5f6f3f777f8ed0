"""What the unit's own Linux says about itself: temperature, link, uptime, memory.

Every reader raises (:class:`OSError`, :class:`ValueError`) when its source is unreadable or gives
an implausible value, and returns ``None`` only when the unit has no such thing (no CPU thermal
zone, no interface up). The health sampler turns a raise into ``None`` and logs the change.
Readers of ``/sys`` and ``/proc`` take their roots as arguments so that tests can hand them a
fake tree. All of them block briefly: call them off the event loop.
"""

import math
import re
import time
from pathlib import Path

import psutil

from vaka.protocol.messages import LinkQuality

#: Thermal zone types that measure the CPU or SoC (Raspberry Pi: ``cpu-thermal``).
CPU_ZONE_TYPES = re.compile(r"cpu|soc|x86_pkg_temp|tcpu|core", re.IGNORECASE)
#: ``/proc/net/wireless`` link quality is out of 70 with cfg80211 drivers.
WIFI_QUALITY_MAX = 70.0
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_IFF_UP = 0x1


def in_range(what: str, value: float, low: float, high: float) -> float:
    """``value`` if it is finite and within ``low..high``, else :class:`ValueError` naming it."""
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
            return in_range(f"{kind} temperature", int(raw) / 1000, -50, 150)
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


def read_uptime() -> float:
    """Seconds since boot."""
    return max(0.0, time.time() - psutil.boot_time())


def read_load1() -> float:
    """The one-minute load average."""
    return in_range("load average", psutil.getloadavg()[0], 0, math.inf)


def read_memory_used() -> float:
    """Percentage of memory in use."""
    return in_range("memory use", psutil.virtual_memory().percent, 0, 100)
