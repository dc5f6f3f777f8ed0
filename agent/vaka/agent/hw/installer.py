"""Installing a system update bundle into the other root slot, and rebooting into it, behind a
small interface: RAUC on a unit, a recording fake under ``--simulate``.

The agent hands an installer only a bundle whose every byte hashed to what central's signed order
named (:mod:`vaka.agent.updates`). On a unit the agent asks the image's root helper, which checks
the bundle's name and hash again; RAUC then checks the bundle's own signature against the keyring
in the image and writes the slot block by block (``verity`` bundles). Which root runs is read
from the kernel's command line (``rauc.slot=A|B``, set by the boot loader) and the image's
``/etc/os-release`` (``IMAGE_VERSION=``).
"""

import logging
import os
import secrets
import time
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

    def came_back(self) -> str | None:
        """Why the unit runs this slot again after the other one failed its trial (boot
        counting went back), as boot counting put it; ``None``: not known (yet)."""
        return None

    def proven(self) -> bool:
        """Whether boot counting has ended the booted slot's trial in this boot and marked it
        good (the step after ``running``); ``False``: not (yet), or no trial."""
        return False


class RaucInstaller(Installer):
    """RAUC through the image's root helper: RAUC's D-Bus service and systemd's reboot answer only
    root, and the agent runs sandboxed without privileges.

    The agent writes a request (a fresh nonce and the bundle's path) into its download directory,
    renamed into place whole; ``vaka-update-install.path`` starts the helper
    (``/usr/libexec/vaka/update-install``, as root), which accepts only ``<sha256>.bundle`` in
    that directory and checks the hash again, runs ``rauc install`` and answers in ``result``
    with the same nonce: ``ok``, or ``refused`` and why (RAUC's last line). After ``ok`` the
    helper reboots the unit itself, a few seconds later.
    """

    def __init__(
        self,
        request_dir: Path = Path("/run/vaka/update"),
        result: Path = Path("/run/vaka-update/install.result"),
        # longer than the helper's own limit (TimeoutStartSec=45min) and its reboot delay
        timeout_s: float = 3000,
        poll_s: float = 0.5,
        os_release: Path = Path("/etc/os-release"),
        cmdline: Path = Path("/proc/cmdline"),
        fallback: Path = Path("/run/vaka-boot/fallback"),
        proven_report: Path = Path("/run/vaka-boot/proven"),
    ) -> None:
        self.request_dir = request_dir
        self.result = result
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.os_release = os_release
        self.cmdline = cmdline
        self.fallback = fallback
        self.proven_report = proven_report

    def install(self, bundle: Path) -> None:
        nonce = secrets.token_hex(16)
        request = self.request_dir / "install.request"
        tmp = self.request_dir / f".install.request.{nonce}"
        try:
            tmp.write_text(f"nonce={nonce}\nbundle={bundle}\n")
            os.replace(tmp, request)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise InstallFailed(f"could not ask the install helper: {err}") from None
        log.info("asked the install helper to install %s (request %s)", bundle.name, nonce)
        answer = self._answer(nonce)
        # Answered: the request goes, so that the download directory holds nothing once the
        # install attempt is over (on the A/B card it is a disk partition). Without an answer it
        # stays: the helper may still be at work on it.
        request.unlink(missing_ok=True)
        if answer.get("result") == "ok":
            return
        reason = answer.get("reason") or "no reason given"
        if reason.startswith("rauc: "):
            raise InstallFailed(f"rauc refused the bundle: {reason.removeprefix('rauc: ')}")
        raise InstallFailed(f"the install helper refused the bundle: {reason}")

    def _answer(self, nonce: str) -> dict[str, str]:
        """The helper's result for ``nonce``; an older result is not this request's."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            answer = _read_result(self.result)
            if answer.get("nonce") == nonce:
                return answer
            if time.monotonic() >= deadline:
                raise InstallFailed(
                    f"no answer from the install helper within {self.timeout_s:.0f} s "
                    "(vaka-update-install.service)"
                )
            time.sleep(self.poll_s)

    def reboot(self) -> None:
        # The helper reboots the unit after an install it answered ``ok``: systemd's reboot is
        # root's, and the agent holds no rule that would let it ask.
        log.info("the install helper reboots the unit into the new slot")

    def running(self) -> Running:
        return Running(_image_version(self.os_release), _booted_slot(self.cmdline))

    def came_back(self) -> str | None:
        # vaka-mark-good writes it when the booted slot boots while the other is on trial.
        report = _read_result(self.fallback)
        if not report.get("cause") or report.get("booted") != _booted_slot(self.cmdline):
            return None
        return report["cause"]

    def proven(self) -> bool:
        # vaka-mark-good writes it when the booted slot's trial ends well (/run: this boot only).
        slot = _read_result(self.proven_report).get("slot")
        return slot is not None and slot == _booted_slot(self.cmdline)


def _read_result(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    answer: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            answer.setdefault(key, value[:240])
    return answer


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
