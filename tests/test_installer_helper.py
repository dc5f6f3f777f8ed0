"""The agent's installer on a unit (:class:`vaka.agent.hw.installer.RaucInstaller`) asking the
image's root helper, on this machine.

The helper is the real script (image/overlay/usr/libexec/vaka/update-install); a thread stands in
for ``vaka-update-install.path``, running it each time the request file changes, and ``rauc`` and
``systemctl`` are stand-ins on ``PATH`` (``rauc`` refuses with the text in a file, when there is
one). The helper's own refusals: tests/test_update_install.py.
"""

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vaka.agent.hw.installer import InstallFailed, RaucInstaller

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "image/overlay/usr/libexec/vaka/update-install"

FAKE_RAUC = """#!/bin/sh
echo "rauc $*" >>"$VAKA_TEST_CALLS"
if [ -f "$VAKA_TEST_REFUSAL" ]; then cat "$VAKA_TEST_REFUSAL" >&2; exit 1; fi
"""

FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >>"$VAKA_TEST_CALLS"
"""


@dataclass
class Helper:
    """The helper as a path unit would start it: on every change of the request file."""

    directory: Path
    downloads: Path
    result: Path
    calls: Path
    refusal: Path
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> None:
        request = self.downloads / "install.request"
        seen: tuple[int, int] | None = None
        while not self.stop.wait(0.02):
            try:
                stat = request.stat()
            except FileNotFoundError:
                continue
            if (stat.st_ino, stat.st_mtime_ns) == seen:
                continue
            seen = (stat.st_ino, stat.st_mtime_ns)
            self.runs.append(
                subprocess.run(
                    ["sh", str(SCRIPT)],
                    env={
                        "PATH": f"{self.directory / 'bin'}:{os.environ['PATH']}",
                        "VAKA_UPDATE_DIR": str(self.downloads),
                        "VAKA_RESULT_DIR": str(self.result.parent),
                        "VAKA_REBOOT_DELAY": "0",
                        "VAKA_TEST_CALLS": str(self.calls),
                        "VAKA_TEST_REFUSAL": str(self.refusal),
                    },
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            )

    def finished(self, runs: int, timeout_s: float = 30) -> None:
        """Wait until the helper has run ``runs`` times to its end: it answers ``ok`` first and
        reboots after, so the agent's answer comes before the reboot."""
        deadline = time.monotonic() + timeout_s
        while len(self.runs) < runs:
            assert time.monotonic() < deadline, f"the helper ran {len(self.runs)} times, not {runs}"
            time.sleep(0.02)

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def installer(
        self, os_release: Path = Path("/nonexistent"), cmdline: Path = Path("/nonexistent")
    ) -> RaucInstaller:
        return RaucInstaller(
            request_dir=self.downloads,
            result=self.result,
            timeout_s=30,
            poll_s=0.02,
            os_release=os_release,
            cmdline=cmdline,
        )


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[Helper]:
    (tmp_path / "bin").mkdir()
    for name, text in (("rauc", FAKE_RAUC), ("systemctl", FAKE_SYSTEMCTL)):
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    downloads = tmp_path / "run/vaka/update"
    downloads.mkdir(parents=True)
    made = Helper(
        tmp_path,
        downloads,
        tmp_path / "run/vaka-update/install.result",
        tmp_path / "calls",
        tmp_path / "refusal",
    )
    thread = threading.Thread(target=made.watch, daemon=True)
    thread.start()
    yield made
    made.stop.set()
    thread.join(timeout=70)


def bundle(downloads: Path, data: bytes = b"vaka-bundle 2.0\n" + b"x" * 4096) -> Path:
    path = downloads / f"{hashlib.sha256(data).hexdigest()}.bundle"
    path.write_bytes(data)
    return path


def test_an_install_through_the_helper_is_ok_and_the_helper_reboots(helper: Helper) -> None:
    installer = helper.installer()
    path = bundle(helper.downloads)
    installer.install(path)
    helper.finished(1)
    assert helper.called() == [f"rauc install {path}", "systemctl --no-block reboot"]
    # Answered: the request is gone (on the A/B card the directory is a disk partition).
    assert not (helper.downloads / "install.request").exists()
    installer.reboot()  # the helper's job: the agent asks nothing more
    assert helper.called()[-1] == "systemctl --no-block reboot"
    # A second install gets its own answer, not the first one's.
    second = bundle(helper.downloads, b"vaka-bundle 3.0\n")
    installer.install(second)
    helper.finished(2)
    assert helper.called()[-2:] == [f"rauc install {second}", "systemctl --no-block reboot"]


def test_rauc_reads_slot_and_version_and_says_why_it_refused(
    helper: Helper, tmp_path: Path
) -> None:
    release = tmp_path / "os-release"
    release.write_text('ID=debian\nIMAGE_VERSION="2.1"\n')
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 root=PARTUUID=x rauc.slot=B quiet\n")
    helper.refusal.write_text("installing\nsignature verification failed\n")
    installer = helper.installer(os_release=release, cmdline=cmdline)
    running = installer.running()
    assert (running.version, running.slot) == ("2.1", "B")
    with pytest.raises(InstallFailed, match="rauc refused the bundle: signature verification"):
        installer.install(bundle(helper.downloads))
    assert not any(c.startswith("systemctl") for c in helper.called())
    nothing = RaucInstaller(os_release=tmp_path / "none", cmdline=tmp_path / "none").running()
    assert (nothing.version, nothing.slot) == (None, None)


def test_the_helpers_own_refusal_comes_back(helper: Helper) -> None:
    path = bundle(helper.downloads)
    path.write_bytes(b"not what the name says")
    with pytest.raises(InstallFailed, match=r"the install helper refused the bundle: .*SHA-256"):
        helper.installer().install(path)
    assert helper.called() == []
    assert not (helper.downloads / "install.request").exists()


def test_a_stale_result_is_not_taken_and_no_answer_times_out(tmp_path: Path) -> None:
    # No helper runs: an old result (another nonce) is on the disk.
    downloads = tmp_path / "update"
    downloads.mkdir()
    result = tmp_path / "install.result"
    result.write_text("nonce=00000000000000000000000000000000\nresult=ok\nreason=installed\n")
    installer = RaucInstaller(request_dir=downloads, result=result, timeout_s=1, poll_s=0.05)
    with pytest.raises(InstallFailed, match="no answer from the install helper within 1 s"):
        installer.install(bundle(downloads))
    request = (downloads / "install.request").read_text()
    assert request.startswith("nonce=") and f"bundle={downloads}/" in request
    assert [p.name for p in downloads.iterdir() if p.name.startswith(".")] == []


def test_a_request_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    installer = RaucInstaller(request_dir=tmp_path / "missing", result=tmp_path / "r")
    with pytest.raises(InstallFailed, match="could not ask the install helper"):
        installer.install(tmp_path / "missing" / ("0" * 64 + ".bundle"))


def test_rauc_says_why_it_came_back_only_on_the_slot_that_booted(tmp_path: Path) -> None:
    """vaka-mark-good's report of a failed trial (/run/vaka-boot/fallback), as the agent reads
    it: the cause when the report names the booted slot; nothing without a report."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("ro rauc.slot=B quiet\n")
    fallback = tmp_path / "fallback"
    rauc = RaucInstaller(request_dir=tmp_path, cmdline=cmdline, fallback=fallback)
    assert rauc.came_back() is None
    cause = "the agent was not online on slot A within 60 s: slot A was marked bad"
    fallback.write_text(f"failed=A\nbooted=B\ncause={cause}\n")
    assert rauc.came_back() == cause
    cmdline.write_text("ro rauc.slot=A quiet\n")  # a report from another boot of the other slot
    assert rauc.came_back() is None


def test_rauc_says_a_trial_ended_well_only_for_the_slot_that_booted(tmp_path: Path) -> None:
    """vaka-mark-good's report that the booted slot's trial is over (/run/vaka-boot/proven),
    as the agent reads it before it reports ``marked_good``."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("ro rauc.slot=B quiet\n")
    report = tmp_path / "proven"
    rauc = RaucInstaller(request_dir=tmp_path, cmdline=cmdline, proven_report=report)
    assert rauc.proven() is False  # no report: on trial, or proven before this boot
    report.write_text("slot=A\n")
    assert rauc.proven() is False  # another slot's
    report.write_text("slot=B\n")
    assert rauc.proven() is True
