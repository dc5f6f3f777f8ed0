"""``[passwords]``: how hard argon2id works on each password central hashes (staff and contacts).

A stored hash carries the cost it was made with, so a change needs no migration: stored hashes
still verify, and passwords set or loaded from then on are hashed at the new cost. The defaults
are argon2's own (RFC 9106's second recommendation: 3 passes over 64 MiB in 4 lanes, ~0.1 s here);
lower them only on a machine that cannot spare the memory for each log-in, or for throw-away
accounts (the local development stack, :mod:`vaka.devstack.central`).
"""

from typing import Self

from argon2 import PasswordHasher
from pydantic import BaseModel, ConfigDict, Field, model_validator


class PasswordHashing(BaseModel):
    """``[passwords]`` in central's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: passes over the memory
    time_cost: int = Field(default=3, ge=1, le=20)
    #: memory per hash, in KiB (also what each log-in holds for a moment)
    memory_kib: int = Field(default=64 * 1024, ge=8, le=4 * 1024 * 1024)
    #: lanes (threads) over that memory
    parallelism: int = Field(default=4, ge=1, le=16)

    @model_validator(mode="after")
    def _enough_memory_per_lane(self) -> Self:
        if self.memory_kib < 8 * self.parallelism:
            raise ValueError("memory_kib must be at least 8 KiB per lane (8 * parallelism)")
        return self

    def hasher(self) -> PasswordHasher:
        """An argon2id hasher at this cost."""
        return PasswordHasher(
            time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=self.parallelism
        )
