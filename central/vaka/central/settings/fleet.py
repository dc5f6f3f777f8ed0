"""``[fleet]``: when a unit counts as degraded."""

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """When a unit counts as degraded. Loaded from central's config (``[fleet]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    health_overdue_factor: float = Field(default=3.0, gt=1)
    cpu_temp_c: float = 80.0
    mem_used_pct: float = 90.0
    broker_rtt_ms: float = 2000.0
    cert_expiry_warning_h: float = 48.0
    link_quality_pct: float = 20.0
