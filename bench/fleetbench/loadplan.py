"""What one load-generator process is told to do, and the health samples its units send."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from vaka.protocol import HealthPayload, LinkQuality


@dataclass(frozen=True)
class WorkerPlan:
    """What one load-generator process does."""

    index: int
    units: tuple[str, ...]
    #: connection slot of each unit, seconds after the common start
    slots: tuple[float, ...]
    port: int
    #: the :class:`LocalPki` directory (already created) that issues the units' certificates
    pki_root: str
    interval_s: float
    keepalive_s: int
    seed: int


def health_payloads(rng: random.Random, interval_s: float, count: int = 32) -> list[HealthPayload]:
    """A few realistic health samples (the fields a nightcam agent fills in)."""
    expires = time.time() + 7 * 86400
    return [
        HealthPayload(
            interval_s=interval_s,
            uptime_s=round(rng.uniform(60, 864_000), 1),
            load1=round(rng.uniform(0.0, 1.5), 2),
            mem_used_pct=round(rng.uniform(20, 60), 1),
            cpu_temp_c=round(rng.uniform(38, 62), 1),
            link=LinkQuality(
                interface="wlan0",
                kind="wifi",
                signal_dbm=round(rng.uniform(-80, -40)),
                quality_pct=round(rng.uniform(40, 100)),
            ),
            broker_rtt_ms=round(rng.uniform(5, 60), 1),
            camera_present=True,
            shutter="closed",
            clock_synced=True,
            cert_expires_at=expires,
            agent_version="0.1.0",
            config_version=1,
        )
        for _ in range(count)
    ]
