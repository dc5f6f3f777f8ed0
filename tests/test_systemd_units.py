"""The unit files in systemd/: exposure, offline verification, and the agent's stack in its sandbox.

* ``systemd-analyze security --offline=yes --threshold=N`` for every service (the agent at most
  1.5, others at most 2.0; the threshold is exposure x 10) and ``systemd-analyze verify`` for every
  unit, both against a throw-away root in a temporary directory that holds the host's own units
  (``sysinit.target`` and friends), ours, and stand-in executables for every ``Exec*=`` path.
* sysusers.d and tmpfiles.d applied to that root: the credentials directory ends up ``0700 vaka``.
* The agent's system-call sandbox, reproduced with libseccomp from the unit file's own
  ``SystemCallFilter=``, ``SystemCallErrorNumber=``, ``RestrictAddressFamilies=`` and
  ``ProtectClock=`` (systemd builds the same seccomp filters): the media and call stack (aiortc
  DTLS + SCTP, VP8/H.264 encoders, OpenCV) and the health readers must work inside it, and the
  reason ``MemoryDenyWriteExecute=`` is left out must still hold. Namespaces, mounts and the
  device ACL are not reproduced here (no service manager on this machine).
"""

import configparser
import ctypes
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vaka.agent.config import UpdateSection
from vaka.agent.hw.installer import RaucInstaller

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "systemd"
AGENT = "vaka-agent.service"
#: Highest exposure allowed per service: the agent 1.5, every other service 2.0.
LIMITS = {AGENT: 1.5}
OTHER_LIMIT = 2.0
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def services() -> list[str]:
    """Our service units."""
    return sorted(p.name for p in SYSTEMD.glob("*.service"))


def units() -> list[str]:
    """All our units (services, mounts, timers...)."""
    kinds = ("*.service", "*.mount", "*.timer", "*.path", "*.socket", "*.target")
    return sorted(p.name for kind in kinds for p in SYSTEMD.glob(kind))


def exec_paths(unit: Path) -> set[str]:
    """Absolute executables named by ``Exec*=`` lines (prefixes such as ``-`` stripped)."""
    paths = set()
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("Exec") and value.strip():
            command = value.strip().split()[0].lstrip("-@+!:|")
            if command.startswith("/"):
                paths.add(command)
    return paths


def host_unit_dir() -> Path:
    """The host's packaged units (``/usr/lib/systemd/system`` or ``/lib/systemd/system``)."""
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    pytest.skip("the host has no packaged systemd units to verify against")


def make_root(root: Path, peers: bool) -> Path:
    """A root for offline analysis: host units, ours in /etc, stand-in executables."""
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(host_unit_dir(), root / "usr/lib/systemd/system", symlinks=True)
    for name in ("bin", "sbin", "lib"):
        (root / "usr" / name).mkdir(exist_ok=True)
        (root / name).symlink_to(f"usr/{name}")
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name in units():
        shutil.copy(SYSTEMD / name, etc / name)
        for path in exec_paths(SYSTEMD / name):
            exe = root / path.lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\nexit 0\n")
            exe.chmod(0o755)
    for dropins in SYSTEMD.glob("*.d"):
        if dropins.name.rpartition(".")[0].rpartition(".")[2] in ("service", "mount", "timer"):
            shutil.copytree(dropins, etc / dropins.name)
    if peers:
        example = etc / f"{AGENT}.d/50-peers.conf.example"
        shutil.copy(example, example.with_suffix(""))
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``shipped``: the units as in the image; ``provisioned``: plus the peers drop-in."""
    return {
        "shipped": make_root(tmp_path_factory.mktemp("shipped"), peers=False),
        "provisioned": make_root(tmp_path_factory.mktemp("provisioned"), peers=True),
    }


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``systemd-analyze`` from a neutral directory (it reads drop-ins next to unit paths)."""
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "--no-pager", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_COLORS": "0"},
    )


def exposure(root: Path, unit: str, limit: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    """The overall exposure figure and the run that checked it against ``limit``."""
    run = analyze(
        "security", "--offline=yes", f"--root={root}", f"--threshold={limit * 10:.0f}", unit
    )
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d)", run.stdout)
    assert match, f"no exposure figure for {unit}: {run.stdout[-500:]} {run.stderr}"
    return float(match.group(1)), run


# -- exposure and verification ------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["shipped", "provisioned"])
@pytest.mark.parametrize("unit", services())
def test_exposure_within_limit(roots: dict[str, Path], unit: str, variant: str) -> None:
    limit = LIMITS.get(unit, OTHER_LIMIT)
    figure, run = exposure(roots[variant], unit, limit)
    assert figure <= limit, f"{unit} ({variant}): exposure {figure} > {limit}\n{run.stdout}"
    assert run.returncode == 0, f"{unit}: systemd-analyze refused threshold {limit}: {run.stderr}"


def test_agent_exposure_figures(roots: dict[str, Path]) -> None:
    """The figures docs/hardening.md quotes: 1.2 shipped and provisioned (systemd 252)."""
    shipped, _ = exposure(roots["shipped"], AGENT, 1.5)
    provisioned, _ = exposure(roots["provisioned"], AGENT, 1.5)
    assert shipped <= 1.2 and provisioned <= 1.3
    run = analyze("security", "--offline=yes", f"--root={roots['provisioned']}", AGENT)
    assert "non-localhost entries" in run.stdout, "the peers drop-in is read"


def test_threshold_fails_an_unhardened_service(tmp_path: Path) -> None:
    """The check can fail: a plain service is far above the limit and the run says so."""
    root = make_root(tmp_path / "root", peers=False)
    plain = root / "etc/systemd/system/plain.service"
    plain.write_text("[Service]\nExecStart=/opt/vaka/venv/bin/vaka-agent\n")
    figure, run = exposure(root, "plain.service", OTHER_LIMIT)
    assert figure > 9 and run.returncode != 0


@pytest.mark.parametrize("unit", units())
def test_verify_is_clean(roots: dict[str, Path], unit: str) -> None:
    for variant in ("shipped", "provisioned"):
        run = analyze("verify", f"--root={roots[variant]}", unit)
        assert run.returncode == 0 and not run.stdout and not run.stderr, (
            f"{unit} ({variant}): {run.stdout}{run.stderr}"
        )


def test_verify_catches_mistakes(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", peers=False)
    agent = root / "etc/systemd/system" / AGENT
    agent.write_text(agent.read_text().replace("WatchdogSec=", "WatchdogSecs=", 1))
    (root / "opt/vaka/venv/bin/vaka-agent").unlink()
    run = analyze("verify", f"--root={root}", AGENT)
    assert "Unknown key 'WatchdogSecs'" in run.stderr
    assert "vaka-agent is not executable" in run.stderr
    assert run.returncode != 0


# -- what the agent's unit promises --------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``{key: [values...]}`` of a unit file's [Service] section, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_agent_unit_promises() -> None:
    s = unit_settings(SYSTEMD / AGENT)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["30s"] and s["Restart"] == ["always"]
    assert s["ExecStart"] == ["/opt/vaka/venv/bin/vaka-agent --config /etc/vaka/agent.toml"]
    assert s["User"] == ["vaka"] and "DynamicUser" not in s and "StateDirectory" not in s
    assert s["RuntimeDirectory"] == ["vaka"]
    assert s["ReadWritePaths"] == ["/var/lib/vaka/credentials"]
    assert s["ProtectSystem"] == ["strict"] and s["UMask"] == ["0077"]
    assert s["CapabilityBoundingSet"] == [""] and s["AmbientCapabilities"] == [""]
    assert s["DevicePolicy"] == ["closed"]
    assert s["IPAddressDeny"] == ["any"] and s["IPAddressAllow"] == ["localhost"]
    assert s["LimitCORE"] == ["0"], "no core files: the agent's memory may hold frames"
    assert "MemoryDenyWriteExecute" not in s and "ProcSubset" not in s  # see the sandbox tests


def test_update_helper_promises(roots: dict[str, Path]) -> None:
    """The root helper the agent asks to install a bundle (docs/image.md, "The agent asks RAUC"):
    its figure (0.9, docs/hardening.md) and the paths it shares with the agent's defaults."""
    helper = "vaka-update-install.service"
    figure, _ = exposure(roots["shipped"], helper, OTHER_LIMIT)
    assert figure <= 0.9
    s = unit_settings(SYSTEMD / helper)
    assert s["Type"] == ["oneshot"] and s["User"] == ["root"]
    assert s["ExecStart"] == ["/usr/libexec/vaka/update-install"]
    # Only reading past the agent's 0700 directory and its 0600 files; no other capability.
    assert s["CapabilityBoundingSet"] == ["CAP_DAC_READ_SEARCH"] and s["AmbientCapabilities"] == [
        ""
    ]
    assert s["PrivateNetwork"] == ["yes"] and s["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert s["RuntimeDirectory"] == ["vaka-update"] and s["RuntimeDirectoryMode"] == ["0755"]
    assert s["RuntimeDirectoryPreserve"] == ["yes"]
    assert "[Install]" not in (SYSTEMD / helper).read_text(), "started by its path unit only"

    watch = configparser.ConfigParser()
    watch.read(SYSTEMD / "vaka-update-install.path")
    downloads = UpdateSection().download_dir
    assert watch["Path"]["PathChanged"] == f"{downloads}/install.request"
    assert watch["Path"]["Unit"] == helper
    assert watch["Install"]["WantedBy"] == "multi-user.target"
    installer = RaucInstaller()
    assert installer.request_dir == downloads
    assert installer.result == Path("/run") / s["RuntimeDirectory"][0] / "install.result"
    # The agent reads the result: nothing in its sandbox hides /run/vaka-update.
    agent = unit_settings(SYSTEMD / AGENT)
    assert not any("/run" in path for path in agent.get("InaccessiblePaths", []))


#: RAUC's service as the image ships it (Debian's rauc has no units): the unit and its sandbox
#: drop-in (image/overlay), and the A/B card's drop-in for the download partition.
RAUC_UNITS = REPO / "image/overlay/etc/systemd/system"
AB_UNITS = REPO / "image/overlay-ab/etc/systemd/system"
#: rauc.service's exposure in its sandbox (docs/hardening.md): root with CAP_SYS_ADMIN is what
#: is left (loop and dm-verity devices, mounts, writing the other slot)
RAUC_LIMIT = 2.1


def rauc_root(root: Path, sandbox: bool, ab: bool) -> Path:
    """A root with the agent's units (``make_root``) and the image's rauc.service."""
    make_root(root, peers=False)
    etc = root / "etc/systemd/system"
    shutil.copy(RAUC_UNITS / "rauc.service", etc)
    if sandbox:
        shutil.copytree(RAUC_UNITS / "rauc.service.d", etc / "rauc.service.d")
    if ab:
        shutil.copytree(AB_UNITS, etc, dirs_exist_ok=True)
    for path in ("/usr/bin/rauc", "/usr/libexec/vaka/update-install"):
        exe = root / path.lstrip("/")
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return root


def test_rauc_runs_in_a_sandbox(tmp_path: Path) -> None:
    """rauc.service's drop-in takes from RAUC what it does not need: the figure, and that the
    bare unit (RAUC's own, 9.6) would not pass; on the A/B card the same with the download
    partition writable for it (it takes a bundle over: chown to root, write bits off)."""
    bare, _ = exposure(rauc_root(tmp_path / "bare", False, False), "rauc.service", 10.0)
    assert bare > 9
    for ab in (False, True):
        root = rauc_root(tmp_path / f"sandboxed-{ab}", True, ab)
        figure, run = exposure(root, "rauc.service", RAUC_LIMIT)
        assert figure <= RAUC_LIMIT, run.stdout
        verified = analyze("verify", f"--root={root}", "rauc.service")
        assert verified.returncode == 0 and not verified.stderr, verified.stderr
    s = unit_settings(RAUC_UNITS / "rauc.service.d/50-vaka-sandbox.conf")
    assert s["PrivateNetwork"] == ["yes"] and s["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert s["ProtectSystem"] == ["strict"] and s["DevicePolicy"] == ["closed"]
    assert s["ReadWritePaths"] == ["/run /var/lib/vaka/credentials /boot/firmware"]
    assert s["CapabilityBoundingSet"] == [
        "CAP_SYS_ADMIN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_CHOWN CAP_FOWNER"
    ]
    assert {"block-loop rw", "block-device-mapper rw", "char-misc rw"} <= set(s["DeviceAllow"])
    ab_dropin = unit_settings(AB_UNITS / "rauc.service.d/60-update-downloads.conf")
    assert ab_dropin["ReadWritePaths"] == ["-/var/lib/vaka/update"]


def test_the_ab_card_s_download_partition_units(tmp_path: Path) -> None:
    """The A/B card's mount and the drop-ins that point the agent, the helper and its path
    unit at it: they verify, and the agent's figure stays within its limit with them."""
    root = rauc_root(tmp_path / "ab", True, True)
    for unit in ("var-lib-vaka-update.mount", "vaka-update-install.path", AGENT):
        run = analyze("verify", f"--root={root}", unit)
        assert run.returncode == 0 and not run.stdout and not run.stderr, run.stdout + run.stderr
    figure, run = exposure(root, AGENT, LIMITS[AGENT])
    assert figure <= LIMITS[AGENT], run.stdout
    helper, run = exposure(root, "vaka-update-install.service", OTHER_LIMIT)
    assert helper <= 0.9, run.stdout
    mount = (AB_UNITS / "var-lib-vaka-update.mount").read_text().splitlines()
    assert "What=/dev/disk/by-partlabel/vaka-data" in mount
    assert "Options=nodev,nosuid,noexec,noatime,errors=remount-ro" in mount
    # The path unit watches the new place only (its list reset first).
    watch = (AB_UNITS / "vaka-update-install.path.d/60-update-downloads.conf").read_text()
    assert watch.splitlines()[-2:] == [
        "PathChanged=",
        "PathChanged=/var/lib/vaka/update/install.request",
    ]
    helper_dropin = unit_settings(
        AB_UNITS / "vaka-update-install.service.d/60-update-downloads.conf"
    )
    assert helper_dropin["Environment"] == ["VAKA_UPDATE_DIR=/var/lib/vaka/update"]
    agent = unit_settings(AB_UNITS / f"{AGENT}.d/60-update-downloads.conf")
    assert agent["ReadWritePaths"] == ["/var/lib/vaka/update"]


def test_board_watchdog_and_volatile_journal() -> None:
    manager = configparser.ConfigParser()
    manager.read(SYSTEMD / "system.conf.d/50-vaka-watchdog.conf")
    seconds = int(manager["Manager"]["RuntimeWatchdogSec"].removesuffix("s"))
    assert 0 < seconds <= 15, "bcm2835-wdt cannot time out later than about 15 s"
    journald = configparser.ConfigParser()
    journald.read(SYSTEMD / "journald.conf.d/50-vaka-volatile.conf")
    assert journald["Journal"]["Storage"] == "volatile"


@pytest.mark.skipif(
    not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")),
    reason="systemd-sysusers or systemd-tmpfiles is not installed",
)
def test_sysusers_and_tmpfiles_make_a_private_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    for tool, conf in (
        ("systemd-sysusers", "sysusers.d/vaka.conf"),
        ("systemd-tmpfiles", "tmpfiles.d/vaka.conf"),
    ):
        args = [tool, f"--root={tmp_path}"] + (["--create"] if "tmpfiles" in tool else [])
        run = subprocess.run([*args, str(SYSTEMD / conf)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    passwd = (tmp_path / "etc/passwd").read_text()
    match = re.search(r"^vaka:x:(\d+):(\d+):[^:]*:[^:]*:/usr/sbin/nologin$", passwd, re.M)
    assert match, passwd
    st = (tmp_path / "var/lib/vaka/credentials").stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o700, *map(int, match.groups()))


# -- the agent's system-call sandbox -------------------------------------------------------------

#: Installs seccomp filters like systemd's, then runs the workload (argv: spec.json workload.py).
SANDBOX = textwrap.dedent(
    """
    import ctypes, errno, json, runpy, sys
    spec = json.load(open(sys.argv[1]))
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]

    class Cmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

    ALLOW, EQ, GE, MASKED_EQ = 0x7FFF0000, 4, 5, 7
    def ERRNO(e): return 0x00050000 | e
    def rule(ctx, action, name, *cmps):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return
        arr = (Cmp * len(cmps))(*cmps) if cmps else None
        assert lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr) == 0, name

    # MemoryDenyWriteExecute= and RestrictAddressFamilies= (systemd's own rules)
    extra = lib.seccomp_init(ALLOW)
    if spec["mdwe"]:
        W, X = 2, 4
        rule(extra, ERRNO(errno.EPERM), "mmap", Cmp(2, MASKED_EQ, W | X, W | X))
        rule(extra, ERRNO(errno.EPERM), "mprotect", Cmp(2, MASKED_EQ, X, X))
        rule(extra, ERRNO(errno.EPERM), "pkey_mprotect", Cmp(2, MASKED_EQ, X, X))
        rule(extra, ERRNO(errno.EPERM), "shmat", Cmp(2, MASKED_EQ, 0o100000, 0o100000))
    families = set(spec["families"])
    for family in range(max(families) + 1):
        if family not in families:
            rule(extra, ERRNO(errno.EAFNOSUPPORT), "socket", Cmp(0, EQ, family, 0))
    rule(extra, ERRNO(errno.EAFNOSUPPORT), "socket", Cmp(0, GE, max(families) + 1, 0))
    assert lib.seccomp_load(extra) == 0
    # SystemCallFilter= (an allow-list) with SystemCallErrorNumber=
    allow = lib.seccomp_init(ERRNO(spec["errno"]))
    for name in spec["allow"]:
        rule(allow, ALLOW, name)
    assert lib.seccomp_load(allow) == 0
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)

#: What the agent does that a sandbox could break; prints a JSON summary.
WORKLOAD = textwrap.dedent(
    """
    import asyncio, errno, fractions, json, socket
    import av, cv2, numpy as np
    from aiortc import RTCPeerConnection
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from vaka.agent import sysinfo
    from vaka.agent.hw.clock import kernel_clock_synced
    from vaka.rtc.ice import configure_ice, rtc_configuration

    out = {}
    out["health"] = [sysinfo.read_load1() >= 0, 0 <= sysinfo.read_memory_used() <= 100,
                     sysinfo.read_uptime() > 0]
    try:
        out["adjtimex"] = str(kernel_clock_synced())
    except OSError as err:
        out["adjtimex"] = errno.errorcode[err.errno]
    for name in ("AF_PACKET", "AF_NETLINK", "AF_INET6"):
        try:
            socket.socket(getattr(socket, name), socket.SOCK_DGRAM).close()
            out[name] = "ok"
        except OSError as err:
            out[name] = errno.errorcode[err.errno]
    image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    out["clahe"] = cv2.createCLAHE(2.0, (8, 8)).apply(grey).shape == (480, 640)
    frame = av.VideoFrame.from_ndarray(image, format="bgr24")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    for mime in ("video/VP8", "video/H264"):
        encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000))
        out[mime] = len(encoder.encode(frame)[0]) > 0

    async def datachannel():
        configure_ice(["127.0.0.1"], gather_timeout_s=0.5)
        a, b = RTCPeerConnection(rtc_configuration()), RTCPeerConnection(rtc_configuration())
        got = asyncio.get_running_loop().create_future()
        channel = a.createDataChannel("probe")
        channel.on("open", lambda: channel.send("hello"))
        b.on("datachannel", lambda ch: ch.on("message", lambda m: got.done() or got.set_result(m)))
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        try:
            return await asyncio.wait_for(got, 2)
        finally:
            await a.close()
            await b.close()

    try:
        out["dtls"] = asyncio.run(datachannel())
    except Exception as err:
        out["dtls"] = type(err).__name__
    print(json.dumps(out))
    """
)

FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
#: ``run(mdwe)``: the workload's JSON summary and its stderr.
SandboxRun = Callable[[bool], tuple[dict[str, object], str]]


def syscall_groups() -> dict[str, list[str]]:
    """``systemd-analyze syscall-filter``: every @group and its members (names or @groups)."""
    run = analyze("syscall-filter")
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in run.stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(items: list[str], groups: dict[str, list[str]]) -> set[str]:
    """System call names of ``items`` (names and @groups, recursively)."""
    names: set[str] = set()
    for item in items:
        names |= expand(groups[item], groups) if item.startswith("@") else {item}
    return names


def sandbox_spec(unit: Path, mdwe: bool) -> dict[str, object]:
    """The seccomp part of ``unit``'s sandbox: allowed calls, errno, address families."""
    s = unit_settings(unit)
    groups = syscall_groups()
    lines = [v.split() for v in s["SystemCallFilter"]]
    assert lines and not lines[0][0].startswith("~"), "expected an allow-list first"
    allowed = expand(lines[0], groups)
    for words in lines[1:]:
        allowed -= expand([words[0].lstrip("~"), *words[1:]], groups)
    if s.get("ProtectClock") == ["yes"]:
        allowed -= expand(["@clock"], groups)
    errno_name = s.get("SystemCallErrorNumber", ["EPERM"])[0]
    return {
        "allow": sorted(allowed),
        "errno": getattr(errno, errno_name),
        "families": sorted(FAMILIES[f] for f in s["RestrictAddressFamilies"][0].split()),
        "mdwe": mdwe,
    }


def libseccomp_loads() -> bool:
    """Whether libseccomp can be loaded (the sandbox tests need it)."""
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return False
    return True


@pytest.fixture
def run_in_sandbox(tmp_path: Path) -> Iterator[SandboxRun]:
    """Runs the workload inside the agent unit's filters (with or without W^X memory)."""
    if not libseccomp_loads():
        pytest.skip("libseccomp.so.2 is not available")
    (tmp_path / "sandbox.py").write_text(SANDBOX)
    (tmp_path / "workload.py").write_text(WORKLOAD)

    def run(mdwe: bool) -> tuple[dict[str, object], str]:
        spec = tmp_path / f"spec-{mdwe}.json"
        spec.write_text(json.dumps(sandbox_spec(SYSTEMD / AGENT, mdwe)))
        proc = subprocess.run(
            [
                sys.executable,
                str(tmp_path / "sandbox.py"),
                str(spec),
                str(tmp_path / "workload.py"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert proc.returncode == 0 and proc.stdout, proc.stderr[-3000:]
        summary: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
        return summary, proc.stderr

    yield run


def test_agent_stack_works_inside_its_system_call_filter(run_in_sandbox: SandboxRun) -> None:
    summary, _ = run_in_sandbox(False)
    assert summary["dtls"] == "hello", "a DTLS + SCTP data channel between two aiortc peers"
    assert summary["video/VP8"] and summary["video/H264"] and summary["clahe"]
    assert summary["health"] == [True, True, True]
    assert summary["AF_NETLINK"] == "ok" and summary["AF_INET6"] == "ok"
    # What the filter takes away, proving it is in force:
    assert summary["AF_PACKET"] == "EAFNOSUPPORT"
    # ProtectClock= and @system-service deny adjtimex(), even read-only: the health report's
    # clock-sync reading needs another source under systemd (docs/hardening.md).
    assert summary["adjtimex"] == "EPERM"


def test_memory_deny_write_execute_would_break_calls(run_in_sandbox: SandboxRun) -> None:
    """Why the unit leaves MemoryDenyWriteExecute= out. When this fails, turn it on."""
    summary, stderr = run_in_sandbox(True)
    assert summary["video/VP8"] and summary["video/H264"], "encoders are fine with it"
    assert summary["dtls"] != "hello"
    assert "Cannot allocate write+execute memory for ffi.callback()" in stderr
