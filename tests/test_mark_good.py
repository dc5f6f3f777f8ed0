"""Boot counting's decisions (image/overlay/usr/libexec/vaka/mark-good, run by
vaka-mark-good.service, and RAUC's post-install handler rauc-post-install), on this machine.

The scripts run as they do on a unit, with a real ``grub-editenv`` on a scratch ``grubenv``;
``rauc`` and ``systemctl`` are stand-ins on ``PATH`` that log their arguments (``systemctl show``
answers with the agent's status line from a file). The whole path in a booted card, with GRUB,
RAUC and the agent, is tests/test_image_rauc.py (QEMU, slow).
"""

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBEXEC = REPO / "image/overlay/usr/libexec/vaka"
GRUB_EDITENV = shutil.which("grub-editenv")

pytestmark = pytest.mark.skipif(
    GRUB_EDITENV is None, reason="needs grub-editenv (apt-get install grub-common)"
)

FAKE_RAUC = """#!/bin/sh
echo "rauc $*" >>"$VAKA_TEST_CALLS"
"""

FAKE_SYSTEMCTL = """#!/bin/sh
if [ "$1" = show ]; then
  cat "$VAKA_TEST_AGENT_STATUS"
else
  echo "systemctl $*" >>"$VAKA_TEST_CALLS"
fi
"""


@dataclass
class Unit:
    """A scratch unit: its grubenv, kernel command line, agent status and the calls made."""

    directory: Path
    grubenv: Path
    cmdline: Path
    agent_status: Path
    calls: Path

    def env(self) -> dict[str, str]:
        """The grubenv's variables, as GRUB would load them."""
        assert GRUB_EDITENV is not None
        listed = subprocess.run(
            [GRUB_EDITENV, str(self.grubenv), "list"], capture_output=True, text=True, check=True
        ).stdout
        return dict(line.split("=", 1) for line in listed.splitlines())

    def setenv(self, *assignments: str) -> None:
        assert GRUB_EDITENV is not None
        subprocess.run([GRUB_EDITENV, str(self.grubenv), "set", *assignments], check=True)

    @property
    def fallback(self) -> Path:
        """Where mark-good says which slot failed its trial (``/run/vaka-boot/fallback``)."""
        return self.directory / "vaka-boot" / "fallback"

    @property
    def proven(self) -> Path:
        """Where mark-good says a trial ended well (``/run/vaka-boot/proven``)."""
        return self.directory / "vaka-boot" / "proven"

    def report(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.fallback.read_text().splitlines())

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def run(
        self, script: str, deadline: int = 600, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.directory / 'bin'}:{os.environ['PATH']}",
            "VAKA_GRUBENV": str(self.grubenv),
            "VAKA_CMDLINE": str(self.cmdline),
            "VAKA_HEALTH_DEADLINE": str(deadline),
            "VAKA_TEST_CALLS": str(self.calls),
            "VAKA_TEST_AGENT_STATUS": str(self.agent_status),
            "VAKA_FALLBACK_REPORT": str(self.fallback),
            "VAKA_PROVEN_REPORT": str(self.proven),
            **(extra or {}),
        }
        return subprocess.run(
            ["sh", str(LIBEXEC / script)], env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    assert GRUB_EDITENV is not None
    (tmp_path / "bin").mkdir()
    for name, text in (("rauc", FAKE_RAUC), ("systemctl", FAKE_SYSTEMCTL)):
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    made = Unit(
        tmp_path,
        tmp_path / "grubenv",
        tmp_path / "cmdline",
        tmp_path / "agent-status",
        tmp_path / "calls",
    )
    subprocess.run([GRUB_EDITENV, str(made.grubenv), "create"], check=True)
    made.setenv("ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=1")
    made.cmdline.write_text("BOOT_IMAGE=/boot/vmlinuz root=PARTUUID=x ro rauc.slot=B quiet\n")
    made.agent_status.write_text("link connecting\n")
    return made


def test_an_install_puts_the_written_slot_on_trial(unit: Unit) -> None:
    # RAUC numbers all slots; the targets are listed by number (here slot 2, bootname B).
    unit.setenv("VAKA_CAUSE=offline-600")  # an earlier trial's failure is no longer news
    run = unit.run(
        "rauc-post-install",
        extra={
            "RAUC_SLOTS": "1 2",
            "RAUC_TARGET_SLOTS": "2",
            "RAUC_SLOT_CLASS_1": "rootfs",
            "RAUC_SLOT_BOOTNAME_1": "A",
            "RAUC_SLOT_CLASS_2": "rootfs",
            "RAUC_SLOT_BOOTNAME_2": "B",
        },
    )
    assert run.returncode == 0, run.stderr
    assert unit.env()["VAKA_TRIAL"] == "B"
    assert "VAKA_CAUSE" not in unit.env()
    assert "slot B is on trial" in run.stdout


def test_a_proven_slot_is_marked_good_at_once_even_offline(unit: Unit) -> None:
    """No trial (the card's first root, or a root online since its install): good, whatever
    the network does; no wait, no reboot."""
    started = time.monotonic()
    run = unit.run("mark-good", deadline=30)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 10
    assert unit.called() == ["rauc status mark-good booted"]
    assert "slot B is proven" in run.stdout
    assert not unit.fallback.exists()  # nothing failed
    assert not unit.proven.exists()  # no trial ended: nothing for the agent to report


def test_a_trial_of_the_other_slot_does_not_count_for_this_one(unit: Unit) -> None:
    unit.setenv("VAKA_TRIAL=A")
    run = unit.run("mark-good", deadline=30)
    assert run.returncode == 0, run.stderr
    assert unit.called() == ["rauc status mark-good booted"]
    assert unit.env()["VAKA_TRIAL"] == "A"


def test_back_from_a_slot_marked_bad_the_unit_says_which_and_why(unit: Unit) -> None:
    """B boots while A is still on trial: A failed it. The cause saved when A was marked bad
    goes into the report the agent reads."""
    unit.setenv("VAKA_TRIAL=A", "VAKA_CAUSE=offline-60")
    run = unit.run("mark-good", deadline=30)
    assert run.returncode == 0, run.stderr
    assert unit.called() == ["rauc status mark-good booted"]
    assert unit.report() == {
        "failed": "A",
        "booted": "B",
        "cause": "the agent was not online on slot A within 60 s: slot A was marked bad",
    }
    assert unit.fallback.stat().st_mode & 0o777 == 0o644  # the agent reads it
    assert "back on slot B: the agent was not online on slot A within 60 s" in run.stdout


def test_back_from_a_trial_cut_short_the_unit_says_it_restarted(unit: Unit) -> None:
    unit.setenv("VAKA_TRIAL=A")
    run = unit.run("mark-good", deadline=30)
    assert run.returncode == 0, run.stderr
    assert unit.report()["failed"] == "A"
    assert "restarted before its agent was online on slot A" in unit.report()["cause"]


def test_a_slot_on_trial_is_good_once_the_agent_is_online(unit: Unit) -> None:
    unit.setenv("VAKA_TRIAL=B")
    unit.agent_status.write_text("link online\n")
    run = unit.run("mark-good", deadline=30)
    assert run.returncode == 0, run.stderr
    assert unit.called() == ["rauc status mark-good booted"]
    assert "VAKA_TRIAL" not in unit.env()
    assert "slot B marked good, its trial is over" in run.stdout
    # The agent reads it and reports the update's last step (marked_good).
    assert unit.proven.read_text() == "slot=B\n"
    assert unit.proven.stat().st_mode & 0o777 == 0o644


def test_a_slot_on_trial_whose_agent_stays_offline_is_marked_bad_and_left(unit: Unit) -> None:
    unit.setenv("VAKA_TRIAL=B")
    started = time.monotonic()
    run = unit.run("mark-good", deadline=3)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started >= 3
    assert unit.called() == ["rauc status mark-bad booted", "systemctl --no-block reboot"]
    assert unit.env()["VAKA_TRIAL"] == "B"  # still unproven, should GRUB ever come back to it
    assert unit.env()["VAKA_CAUSE"] == "offline-3"  # for slot A to report
    assert "not online within 3 s: slot B marked bad" in run.stdout
    assert not unit.proven.exists()


def test_nothing_is_counted_without_a_slot_on_the_kernel_command_line(unit: Unit) -> None:
    unit.cmdline.write_text("BOOT_IMAGE=/boot/vmlinuz root=LABEL=vaka-root ro\n")
    unit.setenv("VAKA_TRIAL=B")
    run = unit.run("mark-good", deadline=3)
    assert run.returncode == 0, run.stderr
    assert unit.called() == []
