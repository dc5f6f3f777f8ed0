"""CPU and RSS sampling of the benchmark's processes (and of whatever else runs)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Proc:
    """A child process we sample with psutil."""

    name: str
    ps: psutil.Process

    def cpu_s(self) -> float:
        """CPU seconds so far, all threads (0 once gone).

        Read from ``/proc/PID/task/*/schedstat`` (nanoseconds) where available: psutil's
        ``cpu_times`` counts clock ticks (10 ms), too coarse for an idle agent.
        """
        total = 0
        try:
            for task in Path(f"/proc/{self.ps.pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            total = 0
        if total:
            return total / 1e9
        try:
            t = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def rss_mb(self) -> float:
        """Resident set size in MiB (0 once gone)."""
        try:
            return float(self.ps.memory_info().rss) / 2**20
        except psutil.Error:
            return 0.0


@dataclass
class Sampler:
    """CPU% (of one core) and RSS of process groups over a window."""

    groups: dict[str, list[Proc]]
    started: float = 0.0
    cpu0: dict[str, float] = field(default_factory=dict)
    sys0: Any = None
    rss: dict[str, list[float]] = field(default_factory=dict)
    others0: dict[int, tuple[str, float]] = field(default_factory=dict)

    @staticmethod
    def _everyone() -> dict[int, tuple[str, float]]:
        """CPU seconds of every process on the machine (to explain CPU that is not ours)."""
        out = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            t = proc.info["cpu_times"]
            if t is not None:
                out[proc.pid] = (str(proc.info["name"]), float(t.user + t.system))
        return out

    def start(self) -> None:
        """Begin a window."""
        self.started = time.monotonic()
        self.cpu0 = {g: sum(p.cpu_s() for p in ps) for g, ps in self.groups.items()}
        self.sys0 = psutil.cpu_times()
        self.others0 = self._everyone()
        self.rss = {g: [] for g in self.groups}

    def sample(self) -> None:
        """Record the current RSS of each group."""
        for g, ps in self.groups.items():
            self.rss[g].append(sum(p.rss_mb() for p in ps))

    def result(self) -> dict[str, Any]:
        """CPU% of one core and RSS (mean, max MiB) per group since :meth:`start`."""
        wall = time.monotonic() - self.started
        self.sample()
        cpu = {
            g: round(100 * (sum(p.cpu_s() for p in ps) - self.cpu0[g]) / wall, 2)
            for g, ps in self.groups.items()
        }
        sys1 = psutil.cpu_times()
        busy = (sum(sys1) - sys1.idle - sys1.iowait) - (
            sum(self.sys0) - self.sys0.idle - self.sys0.iowait
        )
        cpu["machine_busy"] = round(100 * busy / wall, 1)
        ours = sum(cpu[g] for g in self.groups)
        cpu["machine_unattributed"] = round(cpu["machine_busy"] - ours, 1)
        for part in ("softirq", "steal"):
            delta = getattr(sys1, part, 0.0) - getattr(self.sys0, part, 0.0)
            cpu[f"machine_{part}"] = round(100 * delta / wall, 1)
        rss = {
            g: {"mean": round(sum(v) / len(v), 1), "max": round(max(v), 1)}
            for g, v in self.rss.items()
            if v
        }
        ours_pids = {p.ps.pid for ps in self.groups.values() for p in ps}
        others: list[tuple[float, int, str]] = []
        for pid, (name, cpu_s) in self._everyone().items():
            if pid in ours_pids:
                continue
            pct = 100 * (cpu_s - self.others0.get(pid, (name, 0.0))[1]) / wall
            if pct >= 1.0:
                others.append((round(pct, 1), pid, name))
        others.sort(reverse=True)
        return {
            "wall_s": round(wall, 2),
            "cpu_pct_of_one_core": cpu,
            "rss_mb": rss,
            "other_processes": [{"pid": p, "name": n, "cpu_pct": c} for c, p, n in others[:5]],
        }
