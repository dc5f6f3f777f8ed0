"""The simulated installer: records what it was asked to install, with the bundle's SHA-256
and size as it saw them, and "reboots" by switching to the installed version and the other slot
(the agent keeps running, as if it had come up again in the new root)."""

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vaka.agent.hw.installer import Installer, InstallFailed, Running


@dataclass(frozen=True)
class Installed:
    """One install as the fake saw it."""

    at: float
    path: Path
    sha256: str
    size: int


class FakeInstaller(Installer):
    """A two-slot unit that installs instantly. ``refuse`` makes the next installs fail with
    that reason (as RAUC refuses a bundle signed by another key)."""

    def __init__(self, version: str = "1.0", slot: str = "A") -> None:
        self._running = Running(version, slot)
        self._lock = threading.Lock()
        self.refuse: str | None = None
        #: the next boot into a new slot fails its health deadline: the unit comes back on the
        #: slot and version it had (as boot counting does on a unit)
        self.fail_boot = False
        #: every install, oldest first
        self.installed: list[Installed] = []
        #: when :meth:`reboot` was called
        self.reboots: list[float] = []
        self._next: str | None = None
        self._came_back: str | None = None
        self._proven = False

    def install(self, bundle: Path) -> None:
        data = bundle.read_bytes()
        with self._lock:
            if self.refuse is not None:
                raise InstallFailed(self.refuse)
            self.installed.append(
                Installed(time.time(), bundle, hashlib.sha256(data).hexdigest(), len(data))
            )
            self._next = _version_in(data)

    def reboot(self) -> None:
        with self._lock:
            self.reboots.append(time.time())
            if self.fail_boot:
                self._came_back = (
                    f"the agent was not online on slot {_other(self._running.slot)} within its "
                    "health deadline (simulated)"
                )
                return
            self._running = Running(self._next or self._running.version, _other(self._running.slot))
            self._proven = False  # the new slot is on trial

    def mark_good(self) -> None:
        """Boot counting ends the booted slot's trial: the agent was online on it in time."""
        with self._lock:
            self._proven = True

    def proven(self) -> bool:
        return self._proven

    def running(self) -> Running:
        return self._running

    def came_back(self) -> str | None:
        return self._came_back


def _other(slot: str | None) -> str:
    return "B" if slot == "A" else "A"


def _version_in(data: bytes) -> str | None:
    """A fake bundle says its version on its first line: ``vaka-bundle <version>``."""
    first = data[:200].split(b"\n", 1)[0].decode(errors="replace").split()
    return first[1] if len(first) == 2 and first[0] == "vaka-bundle" else None
