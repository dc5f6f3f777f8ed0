"""``[fleet]``: when a unit counts as degraded, and how much health history central keeps."""

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
    #: a unit's page shows its health history: the newest sample of each period of this length,
    #: for the last ``health_history_slots`` periods (2 hours by default)
    health_history_period_s: float = Field(default=300.0, gt=0)
    health_history_slots: int = Field(default=24, ge=1, le=1000)
