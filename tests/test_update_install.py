"""The root helper that installs the agent's update bundle (image/overlay/usr/libexec/vaka/
update-install, run by vaka-update-install.service when the agent writes its request), on this
machine.

The script runs as it does on a unit; ``rauc`` and ``systemctl`` are stand-ins on ``PATH`` that log
their arguments (``rauc`` refuses with the text in a file, when there is one). The request is
written the way :class:`vaka.agent.hw.installer.RaucInstaller` writes it; the agent's side of
the exchange is tests/test_installer_helper.py.
"""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_systemd_units import SANDBOX, libseccomp_loads, sandbox_spec

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "image/overlay/usr/libexec/vaka/update-install"
NONCE = "0123456789abcdef0123456789abcdef"

FAKE_RAUC = """#!/bin/sh
echo "rauc $*" >>"$VAKA_TEST_CALLS"
if [ -f "$VAKA_TEST_REFUSAL" ]; then
  echo "installing $2: started"
  cat "$VAKA_TEST_REFUSAL" >&2
  exit 1
fi
echo "Installing $2 succeeded"
"""

FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >>"$VAKA_TEST_CALLS"
"""


@dataclass
class Unit:
    """A scratch unit: the agent's download directory, the helper's result directory, the calls."""

    directory: Path
    downloads: Path
    results: Path
    calls: Path
    refusal: Path

    def bundle(self, data: bytes = b"vaka-bundle 2.0\n" + b"x" * 4096) -> Path:
        path = self.downloads / f"{hashlib.sha256(data).hexdigest()}.bundle"
        path.write_bytes(data)
        return path

    def ask(self, bundle: str | Path, nonce: str = NONCE) -> None:
        tmp = self.downloads / ".install.request.tmp"
        tmp.write_text(f"nonce={nonce}\nbundle={bundle}\n")
        tmp.rename(self.downloads / "install.request")

    def run(self) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.directory / 'bin'}:{os.environ['PATH']}",
            "VAKA_UPDATE_DIR": str(self.downloads),
            "VAKA_RESULT_DIR": str(self.results),
            "VAKA_REBOOT_DELAY": "0",
            "VAKA_TEST_CALLS": str(self.calls),
            "VAKA_TEST_REFUSAL": str(self.refusal),
        }
        return subprocess.run(
            ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60
        )

    def result(self) -> dict[str, str]:
        text = (self.results / "install.result").read_text()
        return dict(line.split("=", 1) for line in text.splitlines())

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    (tmp_path / "bin").mkdir()
    for name, text in (("rauc", FAKE_RAUC), ("systemctl", FAKE_SYSTEMCTL)):
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    downloads = tmp_path / "run/vaka/update"
    downloads.mkdir(parents=True)
    return Unit(
        tmp_path, downloads, tmp_path / "run/vaka-update", tmp_path / "calls", tmp_path / "refusal"
    )


def test_a_good_request_installs_and_reboots(unit: Unit) -> None:
    bundle = unit.bundle()
    unit.ask(bundle)
    run = unit.run()
    assert run.returncode == 0, run.stderr
    assert unit.result() == {"nonce": NONCE, "result": "ok", "reason": "installed"}
    assert unit.called() == [f"rauc install {bundle}", "systemctl --no-block reboot"]
    assert (unit.results / "install.result").stat().st_mode & 0o777 == 0o644


def test_an_answered_request_is_not_installed_twice(unit: Unit) -> None:
    unit.ask(unit.bundle())
    assert unit.run().returncode == 0
    run = unit.run()
    assert run.returncode == 0, run.stderr
    assert "answered already" in run.stdout
    assert len([c for c in unit.called() if c.startswith("rauc")]) == 1


def test_no_request_does_nothing(unit: Unit) -> None:
    run = unit.run()
    assert run.returncode == 0, run.stderr
    assert "nothing to do" in run.stdout
    assert not (unit.results / "install.result").exists()
    assert unit.called() == []


def refused(unit: Unit, reason: str) -> None:
    run = unit.run()
    assert run.returncode == 0, run.stderr
    result = unit.result()
    assert result["result"] == "refused", result
    assert reason in result["reason"], result
    assert not any(c.startswith("systemctl") for c in unit.called()), unit.called()


def test_a_bundle_outside_the_download_directory_is_refused(unit: Unit) -> None:
    elsewhere = unit.directory / "elsewhere"
    elsewhere.mkdir()
    bundle = unit.bundle()
    moved = elsewhere / bundle.name
    bundle.rename(moved)
    unit.ask(moved)
    refused(unit, f"the bundle is not in {unit.downloads}")
    unit.ask(f"{unit.downloads}/../../{bundle.name}", nonce="1" * 32)
    refused(unit, "the bundle is not in")
    assert unit.called() == []


def test_a_name_that_is_not_a_sha256_is_refused(unit: Unit) -> None:
    bundle = unit.bundle()
    for nonce, name in (
        ("a" * 16, "update.raucb"),
        ("b" * 16, "install.request"),
        ("c" * 16, bundle.name.upper()),
        ("d" * 16, bundle.name[1:]),
    ):
        unit.ask(unit.downloads / name, nonce=nonce)
        refused(unit, "not named <sha256>.bundle")
        assert unit.result()["nonce"] == nonce
    assert unit.called() == []


def test_a_hash_mismatch_is_refused(unit: Unit) -> None:
    bundle = unit.bundle()
    bundle.write_bytes(bundle.read_bytes() + b"changed after the agent checked it")
    unit.ask(bundle)
    refused(unit, "SHA-256 is")
    assert unit.called() == []


def test_a_link_is_refused(unit: Unit) -> None:
    target = unit.bundle()
    link = unit.downloads / ("0" * 64 + ".bundle")
    link.symlink_to(target)
    unit.ask(link)
    refused(unit, "no bundle file")
    assert unit.called() == []


def test_a_bad_nonce_is_refused_without_echo(unit: Unit) -> None:
    unit.ask(unit.bundle(), nonce="$(reboot)")
    refused(unit, "no valid nonce")
    assert unit.result()["nonce"] == ""
    assert unit.called() == []


def test_a_rauc_refusal_comes_back_with_its_last_line(unit: Unit) -> None:
    unit.refusal.write_text(
        "rauc-Message: installing failed\n"
        "LastError: Failed to check bundle signature: signature verification failed\n\n"
    )
    bundle = unit.bundle()
    unit.ask(bundle)
    refused(
        unit,
        "rauc: LastError: Failed to check bundle signature: signature verification failed",
    )
    assert unit.called() == [f"rauc install {bundle}"]


def test_a_rauc_refusal_gives_its_last_error_not_the_line_naming_the_bundle(unit: Unit) -> None:
    bundle = unit.bundle()
    unit.refusal.write_text(
        " 40% Checking bundle failed.\n100% Installing failed.\n"
        "LastError: signature verification failed: unable to get local issuer certificate\n"
        f"Installing `{bundle}` failed\n"
    )
    unit.ask(bundle)
    refused(unit, "rauc: LastError: signature verification failed: unable to get local issuer")


def test_the_helper_works_inside_its_units_system_call_filter(unit: Unit) -> None:
    """The script and the tools it runs (sh, sed, sha256sum, mktemp, mv, sleep) within
    vaka-update-install.service's SystemCallFilter=, RestrictAddressFamilies= and
    MemoryDenyWriteExecute=, installed as systemd would (seccomp, kept across exec)."""
    if not libseccomp_loads():
        pytest.skip("libseccomp.so.2 is not available")
    spec = sandbox_spec(REPO / "systemd/vaka-update-install.service", mdwe=True)
    assert spec["families"] == [1]  # AF_UNIX only
    (unit.directory / "spec.json").write_text(json.dumps(spec))
    (unit.directory / "sandbox.py").write_text(SANDBOX)
    (unit.directory / "workload.py").write_text(
        "import os, sys\nos.execvp('sh', ['sh', sys.argv[1]])\n"
    )
    bundle = unit.bundle()
    unit.ask(bundle)
    env = {
        "PATH": f"{unit.directory / 'bin'}:{os.environ['PATH']}",
        "VAKA_UPDATE_DIR": str(unit.downloads),
        "VAKA_RESULT_DIR": str(unit.results),
        "VAKA_REBOOT_DELAY": "0",
        "VAKA_TEST_CALLS": str(unit.calls),
        "VAKA_TEST_REFUSAL": str(unit.refusal),
    }
    run = subprocess.run(
        [
            sys.executable,
            str(unit.directory / "sandbox.py"),
            str(unit.directory / "spec.json"),
            str(unit.directory / "workload.py"),
            str(SCRIPT),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert unit.result() == {"nonce": NONCE, "result": "ok", "reason": "installed"}
    assert unit.called() == [f"rauc install {bundle}", "systemctl --no-block reboot"]
