"""The image recipe (image/), inside the built root: systemd's units offline, SSH, the agent.

The build and the skip condition are shared with tests/test_image.py (tests/imagetools.py): one
build per session, only with ``VAKA_IMAGE_TEST=1``.
"""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import tomli_w

from tests.test_systemd_units import LIMITS, OTHER_LIMIT, analyze, exposure, services, units
from vaka.agent.config import CERT_FILE, KEY_FILE
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.provisioning.localpki import LocalPki

# Before its import: the shared module's asserts rewritten, as in any pytest plugin.
pytest.register_assert_rewrite("tests.imagetools")

from tests.imagetools import (  # noqa: E402
    MARKS,
    REPO,
    UNIT,
    Built,
    generic_config,
    in_root,
    systemctl,
    vaka_ids,
)

pytest_plugins = ["tests.imagetools"]  # the build (fixture built) and its inputs, shared

pytestmark = MARKS


# -- systemd, offline, inside the image ------------------------------------------------------


def test_units_are_in_the_image_and_verify(built: Built) -> None:
    etc = built.rootfs / "etc/systemd/system"
    for name in units():
        assert (etc / name).read_bytes() == (REPO / "systemd" / name).read_bytes(), name
    ours = [*units(), "ssh.service"]  # ssh.service: Debian's, with our two drop-ins
    run = analyze("verify", "--man=no", f"--root={built.rootfs}", *ours)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr.strip() == "", run.stderr


@pytest.mark.parametrize("unit", services())
def test_exposure_within_limit_in_the_image(built: Built, unit: str) -> None:
    limit = LIMITS.get(unit, OTHER_LIMIT)
    figure, run = exposure(built.rootfs, unit, limit)
    assert figure <= limit, f"{unit}: exposure {figure} > {limit}\n{run.stdout}"
    assert run.returncode == 0, run.stderr


def test_services_enabled_and_disabled(built: Built) -> None:
    state = {
        name: systemctl(built, "is-enabled", name)
        for name in (
            "vaka-agent.service",
            "var-lib-vaka-credentials.mount",
            "vaka-technician-ssh.service",
            "vaka-mark-good.service",
            "vaka-update-install.path",
            "vaka-update-install.service",
            "nftables.service",
            "systemd-networkd.service",
            "systemd-resolved.service",
            "systemd-timesyncd.service",
            "ssh.service",
            "ssh.socket",
            "apt-daily.timer",
            "dpkg-db-backup.timer",
            "serial-getty@.service",
            "console-getty.service",
        )
    }
    assert state == {
        "vaka-agent.service": "enabled",
        "var-lib-vaka-credentials.mount": "enabled",
        "vaka-technician-ssh.service": "enabled",
        "vaka-mark-good.service": "enabled",
        "vaka-update-install.path": "enabled",
        # started by its path unit only, when the agent asks
        "vaka-update-install.service": "static",
        "nftables.service": "enabled",
        "systemd-networkd.service": "enabled",
        "systemd-resolved.service": "enabled",
        "systemd-timesyncd.service": "enabled",
        "ssh.service": "disabled",
        "ssh.socket": "masked",
        "apt-daily.timer": "masked",
        "dpkg-db-backup.timer": "masked",
        "serial-getty@.service": "masked",
        "console-getty.service": "masked",
    }
    assert systemctl(built, "get-default") == "multi-user.target"
    wants = built.rootfs / "etc/systemd/system/multi-user.target.wants"
    assert not any(p.name.startswith("ssh") for p in wants.iterdir())


def test_os_release_names_the_roots_version(built: Built) -> None:
    # The agent reports IMAGE_VERSION= and compares it with an update order's version.
    release = (built.rootfs / "usr/lib/os-release").read_text().splitlines()
    version = re.search(r'^version = "(.*)"$', (REPO / "agent/pyproject.toml").read_text(), re.M)
    assert version is not None
    assert f"IMAGE_VERSION={version.group(1)}" in release
    assert "IMAGE_ID=vaka-amd64" in release
    assert os.readlink(built.rootfs / "etc/os-release") == "../usr/lib/os-release"


def test_ssh_is_off_and_keys_only(built: Built) -> None:
    # sshd's effective configuration, with a throw-away host key (the image has none).
    key = built.rootfs / "tmp/test-host-key"
    (built.rootfs / "run/sshd").mkdir(exist_ok=True)
    try:
        made = in_root(
            built, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/tmp/test-host-key"
        )
        assert made.returncode == 0, made.stderr
        run = in_root(built, "/usr/sbin/sshd", "-T", "-h", "/tmp/test-host-key")
        assert run.returncode == 0, run.stderr
    finally:
        for path in (key, key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        (built.rootfs / "run/sshd").rmdir()
    effective = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"
    assert effective["allowusers"] == "technician"
    assert effective["authorizedkeysfile"] == "/etc/vaka/technician_keys"


# -- the agent in the image --------------------------------------------------------------------


def test_agent_runs_inside_the_image(built: Built) -> None:
    run = in_root(built, "/opt/vaka/venv/bin/vaka-agent", "--help")
    assert run.returncode == 0, run.stderr
    assert "--config" in run.stdout
    imports = in_root(
        built,
        "/opt/vaka/venv/bin/python",
        "-c",
        "import vaka.agent.app, aiortc, av, cv2, numpy, gpiozero, psutil, systemd.journal;"
        "import systemd.daemon; print(systemd.journal.__file__)",
    )
    assert imports.returncode == 0, imports.stderr
    # systemd-python is Debian's python3-systemd, seen through --system-site-packages.
    assert imports.stdout.strip().startswith("/usr/lib/python3/dist-packages/systemd/")
    # Nothing of central's in the unit's image (DESIGN: the agent installs without the server).
    for module in ("vaka.central", "vaka.staff", "vaka.devstack", "sqlalchemy", "pyotp", "tomli_w"):
        absent = in_root(built, "/opt/vaka/venv/bin/python", "-c", f"import {module}")
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, module


async def test_the_images_agent_comes_online_in_central(
    built: Built, image_pki: LocalPki, tmp_path: Path
) -> None:
    """The image's own Python, venv and agent, as user vaka, in a read-only copy of its root
    (bubblewrap), with this unit's key and certificate on a stand-in credentials partition.

    The broker is the image's PKI's: the card's site files trust that server CA."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed")
    async with LocalStack(tmp_path / "stack", pki=image_pki) as stack:
        broker = await asyncio.to_thread(stack.start_broker)
        central = await stack.start_central()
        await image_agent_comes_online(built, bwrap, broker, central, tmp_path)


async def image_agent_comes_online(
    built: Built, bwrap: str, broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    uid, gid = vaka_ids(built)
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    issued = broker.pki.client(UNIT)
    shutil.copy(issued.cert, creds / CERT_FILE)
    shutil.copy(issued.key, creds / KEY_FILE)
    for path in (creds, creds / CERT_FILE, creds / KEY_FILE):
        os.chown(path, uid, gid)
    config = tmp_path / "agent.toml"
    config.write_text(tomli_w.dumps(generic_config(broker.port)))
    config.chmod(0o644)
    log_path = tmp_path / "agent.log"
    info_r, info_w = os.pipe()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                bwrap,
                "--info-fd", str(info_w),
                "--ro-bind", str(built.rootfs), "/",
                "--dev", "/dev",
                "--proc", "/proc",
                "--ro-bind", "/sys", "/sys",
                "--tmpfs", "/run",
                "--tmpfs", "/run/vaka",
                "--tmpfs", "/tmp",
                "--remount-ro", "/run",
                "--ro-bind", str(config), "/etc/vaka/agent.toml",
                "--bind", str(creds), "/var/lib/vaka/credentials",
                "--chdir", "/run/vaka",
                "--die-with-parent",
                "--",
                "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                "/opt/vaka/venv/bin/vaka-agent", "--config", "/etc/vaka/agent.toml",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(info_w,),
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                "LG_WD": "/run/vaka",
            },
        )  # fmt: skip
    os.close(info_w)
    with os.fdopen(info_r, "rb") as info:
        raw = info.read()
    pid = json.loads(raw)["child-pid"] if raw else None
    try:
        assert pid is not None, log_path.read_text()
        await wait_for(
            lambda: unit_status(central, UNIT), 30, what=f"unit online\n{log_path.read_text()}"
        )
        assert await unit_status(central, UNIT) == "online"
        # The agent itself (setpriv execs it in place) runs as the image's vaka user.
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
        assert "vaka-agent" in Path(f"/proc/{pid}/cmdline").read_text()
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()
