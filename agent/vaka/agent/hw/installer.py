"""Installing a system update bundle into the other root slot, and rebooting into it, behind a
small interface: RAUC on a unit, a recording fake under ``--simulate``.

The agent hands an installer only a bundle whose every byte hashed to what central's signed order
named (:mod:`vaka.agent.updates`); RAUC then checks the bundle's own signature against the
keyring in the image and writes the slot block by block (``verity`` bundles). Which root runs is
read from the kernel's command line (``rauc.slot=A|B``, set by the boot loader) and the image's
``/etc/os-release`` (``IMAGE_VERSION=``).
"""

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vaka.errors import HardwareError

log = logging.getLogger(__name__)


class InstallFailed(HardwareError, RuntimeError):
    """The installer refused or failed to install a bundle; the message says why."""


@dataclass(frozen=True)
class Running:
    """What the unit runs: its root's version and the slot it booted (``None``: not known)."""

    version: str | None
    slot: str | None


class Installer:
    """Writes bundles into the other slot and reboots.

    An implementation **must** override :meth:`install`, :meth:`reboot` and :meth:`running`.
    :meth:`install` blocks (minutes on a real unit): call it off the event loop. It raises
    :class:`InstallFailed` with a reason a support person can act on.
    """

    name = "installer"

    def install(self, bundle: Path) -> None:
        """Install ``bundle`` into the slot not running now, and make it the next boot's."""
        raise NotImplementedError

    def reboot(self) -> None:
        """Restart the unit into the newly installed slot."""
        raise NotImplementedError

    def running(self) -> Running:
        """What runs now."""
        raise NotImplementedError


def _tail(text: str, limit: int = 160) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:limit]


class RaucInstaller(Installer):
    """RAUC through its command line (``rauc install``), which asks RAUC's D-Bus service."""

    def __init__(
        self,
        rauc: str = "rauc",
        reboot_command: tuple[str, ...] = ("systemctl", "reboot"),
        timeout_s: float = 1800,
        os_release: Path = Path("/etc/os-release"),
        cmdline: Path = Path("/proc/cmdline"),
    ) -> None:
        self.rauc = rauc
        self.reboot_command = reboot_command
        self.timeout_s = timeout_s
        self.os_release = os_release
        self.cmdline = cmdline

    def install(self, bundle: Path) -> None:
        try:
            done = subprocess.run(
                [self.rauc, "install", str(bundle)],
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise InstallFailed(f"rauc could not run: {err}") from None
        if done.returncode != 0:
            raise InstallFailed(f"rauc refused the bundle: {_tail(done.stderr or done.stdout)}")

    def reboot(self) -> None:
        try:
            subprocess.run(self.reboot_command, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            raise InstallFailed(f"reboot failed: {err}") from None

    def running(self) -> Running:
        return Running(_image_version(self.os_release), _booted_slot(self.cmdline))


def _image_version(os_release: Path) -> str | None:
    try:
        lines = os_release.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "IMAGE_VERSION":
            return value.strip().strip("\"'")[:64] or None
    return None


def _booted_slot(cmdline: Path) -> str | None:
    try:
        words = cmdline.read_text().split()
    except OSError:
        return None
    for word in words:
        if word.startswith("rauc.slot="):
            return word.removeprefix("rauc.slot=")[:8] or None
    return None
