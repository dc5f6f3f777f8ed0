"""The image recipe (image/): build the amd64 variant's card, check it offline, boot it in QEMU.

Slow (about three minutes here: Debian's packages with a kernel, the agent's wheels from PyPI, a
QEMU boot without KVM), and it needs root and the network, so it runs only with
``VAKA_IMAGE_TEST=1``: ``make image-test`` sets it, ``make test`` skips it. One build per module;
every test below looks at the same result:

* ``systemd-analyze verify --root=ROOTFS`` and ``systemd-analyze security --offline=yes
  --root=ROOTFS`` with the thresholds of tests/test_systemd_units.py (agent 1.5, others 2.0);
* the read-only layout: fstab (``ro`` root, tmpfs for /tmp, /var/tmp, /var/log), the credentials
  partition's mount unit, the card's three partitions and ``root=PARTUUID=`` in cmdline.txt;
* SSH off (ssh.service disabled, ssh.socket masked, no host keys in the image, keys only);
* journal volatile, no machine id, the board configuration and site files in place;
* the agent: ``chroot ROOTFS /opt/vaka/venv/bin/vaka-agent --help`` and its imports; the image's
  own agent, as its user ``vaka`` in a read-only view of the image's root, online in a real
  central over a real broker;
* the card booted under QEMU (kernel, read-only root, credentials partition, networkd, the site's
  firewall, vaka-agent.service with its whole sandbox): the unit comes online in central.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import Broker, central_config, unit_status, wait_for
from tests.test_systemd_units import LIMITS, OTHER_LIMIT, analyze, exposure, services, units
from vaka.agent.enrol import CERT_FILE, KEY_FILE
from vaka.central.broker import free_port
from vaka.central.service import CentralService
from vaka.provisioning.localpki import LocalPki

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "image" / "build.sh"
PROFILE = "nightcam"
UNIT = "u-image"
QEMU = shutil.which("qemu-system-x86_64")
#: What a QEMU guest with user-mode networking sees of this machine's loopback.
QEMU_HOST = "10.0.2.2"

pytestmark = [
    pytest.mark.slow,
    # The first test also waits for the build (module fixture): more than the default 120 s.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        os.environ.get("VAKA_IMAGE_TEST") != "1",
        reason="builds an image from Debian's packages (slow, root, network): make image-test",
    ),
]


@dataclass(frozen=True)
class Built:
    rootfs: Path
    disk: Path
    site: Path
    seconds: float
    log: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """This module's PKI: the broker's certificate also names the address a QEMU guest uses."""
    return LocalPki(
        tmp_path_factory.mktemp("image-pki"), broker_names=("localhost", "127.0.0.1", QEMU_HOST)
    ).ensure()


@pytest.fixture(scope="module")
def qemu_port() -> int:
    """The broker's port for the QEMU test, fixed at build time: the image's firewall, the agent's
    IPAddressAllow= drop-in and its agent.toml name it."""
    return free_port()


def site_nftables(port: int) -> str:
    """firmware_config's ruleset with this site's broker (the QEMU host) in its define lines."""
    text = (REPO / "firmware_config/common/nftables.conf").read_text()
    text = re.sub(r"(?m)^define BROKER_V4 = .*$", f"define BROKER_V4 = {{ {QEMU_HOST} }}", text)
    return re.sub(r"(?m)^define BROKER_PORTS = .*$", f"define BROKER_PORTS = {{ {port} }}", text)


def site_files(pki: LocalPki, directory: Path, port: int) -> Path:
    """A municipality's site directory: /etc/vaka (the generic agent.toml and the public half of
    the PKI) and its network (firewall ruleset, the agent's IP allow-list)."""
    directory.mkdir(parents=True)
    claim = pki.client("claim")
    shutil.copy(pki.server_ca_cert, directory / "server-ca.crt")
    shutil.copy(pki.ticket_keys()[1], directory / "ticket-key.pub.pem")
    shutil.copy(pki.config_keys()[1], directory / "config-key.pub.pem")
    shutil.copy(claim.cert, directory / "claim.crt")
    shutil.copy(claim.key, directory / "claim.key")
    (directory / "technician_keys").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBj4ZnG2T0n3pYVd3nR3cEaJm3N6M8kO5gQ0uQm3C9N7 tech\n"
    )
    (directory / "agent.toml").write_text(tomli_w.dumps(generic_config(port, QEMU_HOST)))
    (directory / "nftables.conf").write_text(site_nftables(port))
    (directory / "50-peers.conf").write_text(f"[Service]\nIPAddressAllow={QEMU_HOST}\n")
    return directory


def generic_config(port: int, host: str = "127.0.0.1") -> dict[str, object]:
    """The same agent.toml for every card of a profile (docs/install.md, "A unit")."""
    return {
        "unit": {"profile": PROFILE, "simulate": True},
        "broker": {
            "host": host,
            "port": port,
            "server_ca": "/etc/vaka/server-ca.crt",
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        "calls": {"ticket_key": "/etc/vaka/ticket-key.pub.pem"},
        "storage": {"credentials_dir": "/var/lib/vaka/credentials"},
        "trust": {"config_key": "/etc/vaka/config-key.pub.pem"},
        "enrolment": {"claim_cert": "/etc/vaka/claim.crt", "claim_key": "/etc/vaka/claim.key"},
        "media": {"ice_addresses": ["127.0.0.1"]},
    }


@pytest.fixture(scope="module")
def built(
    pki: LocalPki, qemu_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """The amd64 variant, built once for the module (and deleted afterwards, unless
    ``VAKA_IMAGE_KEEP=1``)."""
    if os.geteuid() != 0:
        pytest.skip("the image build needs root (mmdebstrap's root mode: chroot, file owners)")
    base = tmp_path_factory.mktemp("image")
    site = site_files(pki, base / "site", qemu_port)
    out = base / "out"
    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(BUILD), "amd64", "--site", str(site), "--out", str(out), "--disk", "--kernel"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "VAKA_PROFILE": PROFILE, "PYTHON": sys.executable},
    )
    seconds = time.monotonic() - started
    assert run.returncode == 0, f"{run.stderr[-4000:]}"
    print(f"\nimage: amd64 root file system and card built in {seconds:.0f} s\n{run.stderr}")
    try:
        yield Built(out / "rootfs", out / "vaka-amd64.img", site, seconds, run.stderr)
    finally:
        if os.environ.get("VAKA_IMAGE_KEEP") != "1":
            shutil.rmtree(out, ignore_errors=True)


def in_root(built: Built, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command of the image inside its root (chroot), with a clean environment."""
    return subprocess.run(
        ["chroot", str(built.rootfs), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"},
    )


def systemctl(built: Built, *args: str) -> str:
    run = subprocess.run(
        ["systemctl", f"--root={built.rootfs}", *args], capture_output=True, text=True, timeout=60
    )
    return run.stdout.strip()


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
            "nftables.service",
            "systemd-networkd.service",
            "systemd-resolved.service",
            "systemd-timesyncd.service",
            "ssh.service",
            "ssh.socket",
            "apt-daily.timer",
            "dpkg-db-backup.timer",
        )
    }
    assert state == {
        "vaka-agent.service": "enabled",
        "var-lib-vaka-credentials.mount": "enabled",
        "vaka-technician-ssh.service": "enabled",
        "nftables.service": "enabled",
        "systemd-networkd.service": "enabled",
        "systemd-resolved.service": "enabled",
        "systemd-timesyncd.service": "enabled",
        "ssh.service": "disabled",
        "ssh.socket": "masked",
        "apt-daily.timer": "masked",
        "dpkg-db-backup.timer": "masked",
    }
    assert systemctl(built, "get-default") == "multi-user.target"
    wants = built.rootfs / "etc/systemd/system/multi-user.target.wants"
    assert not any(p.name.startswith("ssh") for p in wants.iterdir())


# -- storage-free layout ------------------------------------------------------------------------


def fstab(built: Built) -> dict[str, tuple[str, str, list[str]]]:
    """Mount point -> (what, type, options) of every line in the image's /etc/fstab."""
    entries = {}
    for line in (built.rootfs / "etc/fstab").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            entries[fields[1]] = (fields[0], fields[2], fields[3].split(","))
    return entries


def test_fstab_has_the_read_only_layout(built: Built) -> None:
    table = fstab(built)
    what, kind, options = table["/"]
    assert (what, kind) == ("LABEL=vaka-root", "ext4") and "ro" in options and "rw" not in options
    for point in ("/tmp", "/var/tmp", "/var/log"):
        assert table[point][1] == "tmpfs", point
        assert {"nosuid", "nodev"} <= set(table[point][2]), point
    assert "noexec" in table["/var/log"][2]
    # The only writable disk partitions: the firmware (FAT, root only) and the credentials.
    disk_rw = {p for p, (_, kind, opts) in table.items() if kind != "tmpfs" and "ro" not in opts}
    assert disk_rw == {"/boot/firmware"}
    assert "umask=0077" in table["/boot/firmware"][2]
    assert not [p for p, (_, kind, _o) in table.items() if kind == "swap"]
    mount = (built.rootfs / "etc/systemd/system/var-lib-vaka-credentials.mount").read_text()
    assert "What=/dev/disk/by-label/vaka-cred" in mount
    assert "Where=/var/lib/vaka/credentials" in mount
    assert re.search(r"Options=.*\bnoexec\b", mount) and re.search(r"Options=.*\bnodev\b", mount)
    assert (built.rootfs / "var/lib/vaka/credentials").is_dir()
    requires = built.rootfs / "etc/systemd/system/vaka-agent.service.requires"
    assert (requires / "var-lib-vaka-credentials.mount").is_symlink()
    cmdline = (built.rootfs / "boot/firmware/cmdline.txt").read_text().split()
    assert "ro" in cmdline


def test_nothing_at_rest_in_the_image(built: Built) -> None:
    journald = built.rootfs / "etc/systemd/journald.conf.d/50-vaka-volatile.conf"
    assert "Storage=volatile" in journald.read_text()
    assert not (built.rootfs / "var/log/journal").exists()
    assert [p for p in (built.rootfs / "var/log").rglob("*") if p.is_file()] == []
    assert (built.rootfs / "etc/machine-id").read_text() == ""
    assert os.readlink(built.rootfs / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert list((built.rootfs / "etc/ssh").glob("ssh_host_*")) == []
    assert not list((built.rootfs / "var/cache/apt/archives").glob("*.deb"))
    resolv = built.rootfs / "etc/resolv.conf"
    assert os.readlink(resolv) == "../run/systemd/resolve/stub-resolv.conf"


def test_users_board_configuration_and_site(built: Built) -> None:
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (built.rootfs / "etc/passwd").read_text().splitlines()
    }
    assert passwd["vaka"][6] == "/usr/sbin/nologin" and int(passwd["vaka"][2]) < 1000
    assert "technician" in passwd
    fw = REPO / "firmware_config"
    same = {
        "boot/firmware/config.txt": fw / PROFILE / "config.txt",
        "boot/firmware/cmdline.txt": fw / PROFILE / "cmdline.txt",
        "etc/udev/rules.d/99-vaka.rules": fw / "common/udev/99-vaka.rules",
        "etc/nftables.conf": built.site / "nftables.conf",  # the site's addresses
        "etc/systemd/system/vaka-agent.service.d/50-peers.conf": built.site / "50-peers.conf",
        "etc/sysctl.d/90-vaka.conf": fw / "common/sysctl.d/90-vaka.conf",
        "etc/systemd/system.conf.d/50-vaka-watchdog.conf": (
            REPO / "systemd/system.conf.d/50-vaka-watchdog.conf"
        ),
        "etc/tmpfiles.d/vaka.conf": REPO / "systemd/tmpfiles.d/vaka.conf",
    }
    for inside, source in same.items():
        assert (built.rootfs / inside).read_bytes() == source.read_bytes(), inside
    etc_vaka = built.rootfs / "etc/vaka"
    vaka_gid = int(passwd["vaka"][3])
    assert etc_vaka.stat().st_gid == vaka_gid and etc_vaka.stat().st_mode & 0o777 == 0o750
    key = etc_vaka / "claim.key"
    assert key.stat().st_mode & 0o777 == 0o640 and key.stat().st_uid == 0
    assert (etc_vaka / "agent.toml").exists()


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


# -- the card -------------------------------------------------------------------------------------


def test_card_has_boot_root_and_credentials_partitions(built: Built) -> None:
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(built.disk)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["label"] == "dos"
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83"]
    sector = table.get("sectorsize", 512)
    labels = []
    for part in parts:
        probe = subprocess.run(
            ["blkid", "-p", "-o", "export", "-O", str(part["start"] * sector), str(built.disk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fields = dict(line.split("=", 1) for line in probe.splitlines() if "=" in line)
        labels.append((fields.get("TYPE"), fields.get("LABEL")))
    assert labels == [("vfat", "VAKA-BOOT"), ("ext4", "vaka-root"), ("ext4", "vaka-cred")]
    assert parts[2]["size"] * sector == 16 * 2**20  # a small credentials partition
    # cmdline.txt on the FAT names the root partition by this card's PARTUUID.
    cmdline = subprocess.run(
        ["mtype", "-i", f"{built.disk}@@{parts[0]['start'] * sector}", "::cmdline.txt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    disk_id = table["id"].removeprefix("0x")
    assert cmdline[0] == f"root=PARTUUID={disk_id}-02"
    assert "ro" in cmdline


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
    central_only = in_root(built, "/opt/vaka/venv/bin/python", "-c", "import sqlalchemy")
    assert central_only.returncode != 0


async def test_the_images_agent_comes_online_in_central(
    built: Built, broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    """The image's own Python, venv and agent, as user vaka, in a read-only copy of its root
    (bubblewrap), with this unit's key and certificate on a stand-in credentials partition."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed")
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


# -- stretch: boot the card under QEMU -----------------------------------------------------------


def card_with_identity(built: Built, directory: Path, pki: LocalPki) -> tuple[Path, str]:
    """A copy of the card whose credentials partition holds this unit's key and certificate (as
    enrolment would leave it), and the card's disk id."""
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(built.disk)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    card = directory / "card.img"
    subprocess.run(["cp", "--sparse=always", str(built.disk), str(card)], check=True)
    uid, gid = vaka_ids(built)
    creds = directory / "credentials"
    creds.mkdir(mode=0o700)
    issued = pki.client(UNIT)
    shutil.copy(issued.cert, creds / CERT_FILE)
    shutil.copy(issued.key, creds / KEY_FILE)
    for path in (creds / CERT_FILE, creds / KEY_FILE):
        os.chown(path, uid, gid)
    (creds / KEY_FILE).chmod(0o600)
    partition = directory / "credentials.ext4"
    with partition.open("wb") as blank:
        blank.truncate(16 * 2**20)
    subprocess.run(
        ["mkfs.ext4", "-q", "-L", "vaka-cred", "-m", "0", "-d", str(creds),
         "-E", f"root_owner={uid}:{gid}", str(partition)],
        check=True,
    )  # fmt: skip
    sector = table.get("sectorsize", 512)
    with card.open("r+b") as out:
        out.seek(table["partitions"][2]["start"] * sector)
        out.write(partition.read_bytes())
    return card, table["id"].removeprefix("0x")


def vaka_ids(built: Built) -> tuple[int, int]:
    """The image's vaka user and group ids."""
    for line in (built.rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "vaka":
            return int(fields[2]), int(fields[3])
    raise AssertionError("no vaka user in the image")


async def test_the_card_boots_under_qemu_and_the_unit_comes_online(
    built: Built, pki: LocalPki, qemu_port: int, tmp_path: Path
) -> None:
    """The whole card: kernel, read-only root, credentials partition by label, networkd, the
    site's firewall, vaka-agent.service with all its sandboxing, over QEMU's user network to a
    broker and central on this machine."""
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
    kernels = sorted((built.rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((built.rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        pytest.skip("the image was built without --kernel")
    card, disk_id = card_with_identity(built, tmp_path, pki)
    broker = Broker(pki, tmp_path / "broker", qemu_port)
    broker.start()
    central = CentralService(central_config(broker, tmp_path))
    console = tmp_path / "console.log"
    qemu: subprocess.Popen[bytes] | None = None
    try:
        await central.start()
        started = time.monotonic()
        qemu = subprocess.Popen(
            [
                QEMU,
                # TCG by default: /dev/kvm exists here but a KVM guest never starts (nested
                # virtualisation is not offered); VAKA_QEMU_ACCEL=kvm where it works.
                "-accel", os.environ.get("VAKA_QEMU_ACCEL", "tcg"),
                # Every CPU feature TCG emulates: numpy's wheels need x86-64-v2 (SSE4.2...) and
                # die with SIGILL on QEMU's default qemu64 model.
                "-cpu", "max",
                "-m", "1024", "-smp", "2",
                "-nodefaults", "-display", "none", "-no-reboot",
                "-serial", f"file:{console}",
                "-kernel", str(kernels[-1]), "-initrd", str(initrds[-1]),
                "-append", f"root=PARTUUID={disk_id}-02 ro rootwait console=ttyS0 "
                "systemd.journald.forward_to_console=1 systemd.log_color=0",
                "-drive", f"file={card},format=raw,if=virtio",
                "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
                # A hardware watchdog for systemd's RuntimeWatchdogSec= to drive.
                "-device", "i6300esb",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

        def tail() -> str:
            return console.read_text(errors="replace")[-6000:] if console.exists() else ""

        try:
            await wait_for(lambda: unit_status(central, UNIT), 600, 0.5, what="unit online")
        except AssertionError as err:
            raise AssertionError(f"{err}; the guest's console:\n{tail()}") from None
        print(f"\nqemu: unit online in central {time.monotonic() - started:.0f} s after power-on")
        assert await unit_status(central, UNIT) == "online"
        log = tail()
        assert "Failed to start vaka-agent.service" not in log, log
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        await central.stop()
        broker.stop()
