"""Storage-free operation (DESIGN rule 1): a full night check with the agent in a read-only world.

The agent runs as a real ``vaka-agent --simulate`` process inside bubblewrap, with the view a
unit's ``vaka-agent.service`` gives it (``ProtectSystem=strict``, ``RuntimeDirectory=vaka``,
``ReadWritePaths=/var/lib/vaka/credentials``) made stricter still — even ``/tmp`` is read-only:

* ``--ro-bind / /``: the whole file system, the repository, the venv, ``$HOME``, ``/tmp`` and
  ``/var/tmp`` read-only;
* ``--tmpfs /run/vaka``: its runtime directory (working directory and ``LG_WD``, as in the unit),
  the rest of ``/run`` an empty read-only tmpfs;
* ``--bind CREDS CREDS``: its credentials directory (key, certificate, signed config);
* ``--bind DATA DATA``: its ``[update] download_dir`` on a disk, as on the A/B card (the
  ``vaka-data`` partition, ``ReadWritePaths=/var/lib/vaka/update``): persistent, but only for the
  updater's own files (``<sha256>.part``, ``<sha256>.bundle``, the install request), never
  personal data, and emptied once an install attempt is over;
* ``--dev /dev``, ``--proc /proc``, and the host's network namespace (the broker is on 127.0.0.1).

The unit enrols nothing (its key and certificate are already in CREDS), central pushes it a signed
config bundle (written as ``config.jws``), a night nurse dials it, receives the test pattern and
hangs up. Then:

* **what the agent can write**: every read-write mount in the agent's own ``mountinfo`` is
  CREDS, DATA or volatile (tmpfs, devpts, proc...); a probe in an identical sandbox gets
  ``EROFS`` in ``/``, ``/tmp``, ``/var/tmp``, ``$HOME``, the repository and the unit directory;
* **before/after listings of every place it can write**: CREDS (from the host, after the agent
  has exited) holds exactly the key and certificate it had, unchanged, plus ``config.jws``
  (mode 0600, no temporary file left); the volatile mounts (``/run/vaka``, ``/dev`` with
  ``/dev/shm``), walked through ``/proc/PID/root`` while the agent still runs after the call, hold
  exactly what a fresh sandbox holds; DATA holds nothing (a night check downloads nothing);
* **what it tried to write anywhere**: a Python audit hook in the agent process reports every
  open-for-writing, mkdir, rename, remove, chmod... with its path; none may be outside
  ``/run/vaka`` and CREDS, or in DATA under any name but the updater's (a bug that swallows
  ``EROFS`` silently would show up here). Writes from C code (OpenCV, libav, OpenSSL) are not
  seen by the hook; the mounts above cover them.

Why not diff the host's ``/tmp`` or the repository: other processes write there while the test
runs (other test sessions, benchmarks), so such a diff says nothing about the agent; in the
agent's view they are read-only mounts, which the ``mountinfo`` check and the probe prove.
"""

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, agent_config, audit_kinds, load_directory
from vaka.agent.config import CERT_FILE, KEY_FILE
from vaka.agent.config_store import CONFIG_FILE
from vaka.central.service import CentralService
from vaka.central.units.config_push import build_bundle, push_config
from vaka.devstack.broker import Broker
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.provisioning.bundles import load_config_key
from vaka.rtc.pattern import decode_pattern
from vaka.staff.client import StaffClient

REPO = Path(__file__).resolve().parent.parent
BWRAP = shutil.which("bwrap")
RUNTIME_DIR = Path("/run/vaka")
#: File systems whose content is gone at power-off: writing there is not "at rest".
VOLATILE_FS = {"tmpfs", "devtmpfs", "devpts", "proc", "sysfs", "mqueue", "cgroup", "cgroup2"}

#: Runs ``vaka-agent`` with an audit hook that reports every attempt to write a file (Python level).
LAUNCHER = r"""
import os, sys
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
ARGS = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,),
        "os.symlink": (1,), "os.link": (1,), "os.chmod": (0,), "os.chown": (0,),
        "os.truncate": (0,), "os.utime": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,),
        "shutil.move": (1,), "shutil.rmtree": (0,), "sqlite3.connect": (0,)}
def hook(event, args):
    try:
        if event == "open":
            path, mode, flags = args
            if not ((isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & WRITE):
                return
            paths = [path]
        elif event in ARGS:
            paths = [args[i] for i in ARGS[event]]
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)):
                where = os.path.abspath(os.fsdecode(path))
                sys.stderr.write(f"vaka-write-attempt {event} {where}\n")
    except Exception as err:  # never break the agent: say so instead
        sys.stderr.write(f"vaka-write-attempt {event} unknown ({err!r})\n")
sys.addaudithook(hook)
from vaka.agent.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: Runs :func:`probe_main` in a sandbox like the agent's.
PROBE = "import sys; from tests.test_storage_free import probe_main; sys.exit(probe_main())"


@dataclass(frozen=True)
class Mount:
    point: str
    writable: bool
    fstype: str


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts a process sees, the topmost one per mount point (later lines are on top)."""
    top: dict[str, Mount] = {}
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        point = fields[4].encode().decode("unicode_escape")  # \040 and friends
        options = fields[5].split(",")
        fstype = right.split()[0]
        if fstype == "nsfs":  # a namespace handle (`ip netns`), not storage anyone can write to
            continue
        top[point] = Mount(point, "rw" in options, fstype)
    return list(top.values())


def persistent_writable(mounts: list[Mount]) -> set[str]:
    """Mount points that are writable and would keep what is written after a power-off."""
    return {m.point for m in mounts if m.writable and m.fstype not in VOLATILE_FS}


def volatile_writable(mounts: list[Mount]) -> set[str]:
    """Writable mounts of RAM-backed file systems, except /proc (its files are the kernel's)."""
    return {
        m.point for m in mounts if m.writable and m.fstype in VOLATILE_FS and m.fstype != "proc"
    }


def listing(root: Path, hashes: bool = False) -> dict[str, str]:
    """Every entry under ``root``: relative path -> kind, size, mode and, if asked, a hash."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if hashes else ""
                entries[rel] = f"file {st.st_size} {oct(st.st_mode & 0o777)} {digest}".strip()
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                entries[rel] = f"link {os.readlink(path)}"
            else:
                entries[rel] = f"special {stat.S_IFMT(st.st_mode)}"
    return entries


def volatile_listing(root: Path, points: set[str]) -> dict[str, str]:
    """One listing of all volatile writable mounts, seen from ``root`` (``/proc/PID/root``)."""
    out: dict[str, str] = {}
    for point in sorted(points):
        base = root / point.lstrip("/")
        out[point] = "dir"
        for rel, kind in listing(base).items():
            out[f"{point}/{rel}"] = kind
    return out


def probe_main() -> int:
    """Inside a fresh sandbox: try to write in each place named in ``argv[1]`` (JSON list), and
    print (JSON) the outcomes, the writable mounts and a listing of the volatile ones."""
    tries = {}
    for place in json.loads(sys.argv[1]):
        target = os.path.join(place, ".vaka-storage-probe")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            tries[place] = errno.errorcode.get(err.errno or 0, str(err.errno))
        else:
            os.close(fd)
            os.unlink(target)
            tries[place] = "written"
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    volatile = volatile_writable(mounts)
    report = {
        "tries": tries,
        "persistent": sorted(persistent_writable(mounts)),
        "volatile": sorted(volatile),
        "listing": volatile_listing(Path("/"), volatile),
    }
    print(json.dumps(report))
    return 0


def bwrap_command(creds: Path, data: Path, command: list[str], *options: str) -> list[str]:
    """bubblewrap with the agent's view of the file system (see the module docstring)."""
    assert BWRAP is not None
    return [
        BWRAP,
        *options,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        # /run: an empty read-only tmpfs with the writable runtime directory in it
        "--tmpfs", "/run",
        "--tmpfs", str(RUNTIME_DIR),
        "--remount-ro", "/run",
        "--bind", str(creds), str(creds),
        "--bind", str(data), str(data),
        "--chdir", str(RUNTIME_DIR),
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--",
        *command,
    ]  # fmt: skip


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot build the sandbox here, or ``None`` if it can."""
    if BWRAP is None:
        return "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (make setup does)"
    probe = subprocess.run(
        [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/run",
         "--", "/bin/true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"bwrap cannot create its namespaces here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def sandbox_ok() -> None:
    problem = bwrap_problem()
    if problem is not None:
        pytest.skip(problem)


@dataclass
class SandboxedAgent:
    proc: subprocess.Popen[bytes]
    pid: int  # the agent itself, inside the sandbox (bwrap's child)
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def unit_files(broker: Broker, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The unit's configuration, its credentials directory with key and certificate in it, and
    its (empty) download directory on a disk."""
    unit_dir = tmp_path / "unit"
    creds = unit_dir / "credentials"
    creds.mkdir(parents=True, mode=0o700)
    data = unit_dir / "update"
    data.mkdir(mode=0o700)
    issued = broker.pki.client(UNIT)
    shutil.copy(issued.cert, creds / CERT_FILE)
    shutil.copy(issued.key, creds / KEY_FILE)
    (creds / KEY_FILE).chmod(0o600)
    config = agent_config(broker, UNIT)
    del config["broker"]["cert"], config["broker"]["key"]  # default: the credentials directory
    config["storage"] = {"credentials_dir": str(creds)}
    config["trust"] = {"config_key": str(broker.pki.config_keys()[1])}
    config["update"] = {"download_dir": str(data)}
    path = unit_dir / "agent.toml"
    path.write_text(tomli_w.dumps(config))
    return path, creds, data


@contextlib.asynccontextmanager
async def sandboxed_agent(
    config: Path, creds: Path, data: Path, log_path: Path
) -> AsyncIterator[SandboxedAgent]:
    """``vaka-agent --simulate`` inside bubblewrap; stopped with SIGTERM (an orderly stop)."""
    info_r, info_w = os.pipe()
    env = {
        **os.environ,
        # As vaka-agent.service sets them.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "LG_WD": str(RUNTIME_DIR),
    }
    command = [sys.executable, "-c", LAUNCHER, "--config", str(config), "--simulate"]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            bwrap_command(creds, data, command, "--info-fd", str(info_w)),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=(info_w,),
        )
    os.close(info_w)
    # bwrap writes {"child-pid": N} once the sandbox is set up (the host's pid: no pid namespace).
    with os.fdopen(info_r, "rb") as info:
        raw = await asyncio.wait_for(asyncio.to_thread(info.read), 15)
    pid = json.loads(raw)["child-pid"] if raw else None
    try:
        assert pid is not None, f"bwrap set up no sandbox; its log:\n{log_path.read_text()}"
        yield SandboxedAgent(proc, pid, log_path)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid or proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def write_attempts(log: str) -> list[tuple[str, str]]:
    """``(event, path)`` of every write the audit hook saw."""
    found = []
    for line in log.splitlines():
        if line.startswith("vaka-write-attempt "):
            _, event, path = line.split(" ", 2)
            found.append((event, path))
    return found


#: Devices that keep nothing (subprocess and logging open /dev/null for writing).
SINKS = {"/dev/null"}


#: The only names the agent writes in its download directory on a disk: a bundle's part and
#: whole file, named by its SHA-256, and the install request (written under a temporary name).
UPDATER_FILE = re.compile(
    r"[0-9a-f]{64}\.(part|bundle)|install\.request|\.install\.request\.[0-9a-f]{32}"
)


def allowed(path: str, creds: Path, data: Path) -> bool:
    """Whether the agent may write ``path``: its runtime directory, its credentials, a sink, and
    in its download directory the updater's own files only."""
    inside = any(path == str(p) or path.startswith(f"{p}/") for p in (RUNTIME_DIR, creds))
    if path == str(data) or path.startswith(f"{data}/"):
        name = path.removeprefix(f"{data}/")
        return path == str(data) or UPDATER_FILE.fullmatch(name) is not None
    return inside or path in SINKS


async def test_night_check_with_a_read_only_file_system_writes_nothing_at_rest(
    sandbox_ok: None,
    broker: Broker,
    central: CentralService,
    tmp_path: Path,
) -> None:
    config, creds, data = unit_files(broker, tmp_path)
    unit_dir = config.parent
    before_unit_dir = listing(unit_dir, hashes=True)

    # A fresh sandbox of the same shape: writes elsewhere refused, its writable mounts, and what
    # the volatile ones hold before an agent has run in them.
    elsewhere = ["/", "/tmp", "/var/tmp", str(Path.home()), str(REPO), str(unit_dir)]
    probe = subprocess.run(
        bwrap_command(creds, data, [sys.executable, "-c", PROBE, json.dumps(elsewhere)]),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert probe.returncode == 0, probe.stderr
    fresh = json.loads(probe.stdout)
    assert fresh["tries"] == dict.fromkeys(elsewhere, "EROFS"), fresh["tries"]
    assert fresh["persistent"] == sorted([str(creds), str(data)])
    volatile = set(fresh["volatile"])
    assert str(RUNTIME_DIR) in volatile and "/run" not in volatile, volatile

    await load_directory(central)
    log_path = tmp_path / "agent.log"
    async with sandboxed_agent(config, creds, data, log_path) as agent:
        await wait_for(lambda: unit_status(central, UNIT), 20, what=f"unit online\n{agent.log()}")
        # The agent's own view: the same writable mounts as the probe's.
        own_mounts = parse_mountinfo(Path(f"/proc/{agent.pid}/mountinfo").read_text())
        assert persistent_writable(own_mounts) == {str(creds), str(data)}
        assert volatile_writable(own_mounts) == volatile

        # Central pushes a signed config bundle: the one file the unit keeps besides its identity.
        bundle = build_bundle(
            UNIT, 1, "nightcam", broker.pki.ticket_keys()[1].read_text(), health_interval_s=20
        )
        key = load_config_key(broker.pki.config_keys()[0])
        await push_config(central, UNIT, bundle, key)
        await wait_for(lambda: (creds / CONFIG_FILE).exists(), 10, what="config.jws written")

        # The night check itself.
        async with StaffClient(central.url) as staff:
            await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
            call = await staff.dial(UNIT, "night_check")
            readings = 0
            while readings < 5:
                frame = await call.next_frame(timeout=10)
                if decode_pattern(frame.to_ndarray(format="bgr24")) is not None:
                    readings += 1
            # The first frames go out before the shutter opens: end the call once it is open.
            await wait_for(
                lambda: _has(central, call.call_id, "shutter_open"), 10, what="shutter open"
            )
            reason = await call.hangup()
        assert reason == "you hung up"
        await wait_for(
            lambda: _has(central, call.call_id, "shutter_closed"), 10, what="shutter closed"
        )
        # Its volatile mounts after the call, seen through /proc/PID/root while it still runs
        # (they vanish with it).
        after_volatile = volatile_listing(Path(f"/proc/{agent.pid}/root"), volatile)

    assert agent.proc.returncode == 0, agent.log()[-3000:]
    kinds = await audit_kinds(central, call.call_id)
    for expected in ("ticket_issued", "call_started", "shutter_open", "shutter_closed"):
        assert expected in kinds, kinds

    # The volatile mounts hold what a fresh sandbox holds: nothing was left in RAM files either.
    assert after_volatile == fresh["listing"], _diff(fresh["listing"], after_volatile)

    # The credentials directory: the same key and certificate, plus config.jws, nothing else.
    after_unit_dir = listing(unit_dir, hashes=True)
    added = {k: v for k, v in after_unit_dir.items() if before_unit_dir.get(k) != v}
    removed = set(before_unit_dir) - set(after_unit_dir)
    assert not removed, removed
    assert set(added) == {f"credentials/{CONFIG_FILE}"}, _diff(before_unit_dir, after_unit_dir)
    assert added[f"credentials/{CONFIG_FILE}"].startswith("file ")
    assert " 0o600" in added[f"credentials/{CONFIG_FILE}"]
    # The download directory: as empty as it was (the set above also says nothing was added).
    assert list(data.iterdir()) == []

    # What the agent tried to write, anywhere (Python level): only runtime dir and credentials.
    attempts = write_attempts(agent.log())
    outside = [(event, path) for event, path in attempts if not allowed(path, creds, data)]
    assert not outside, f"the agent tried to write outside its two places: {outside}"
    assert any(path.startswith(f"{creds}/") for _, path in attempts), "the hook saw nothing"


async def _has(central: CentralService, call_id: str, kind: str) -> bool:
    return kind in await audit_kinds(central, call_id)


def _diff(before: dict[str, str], after: dict[str, str]) -> str:
    lines = [f"+ {k}: {after[k]}" for k in sorted(set(after) - set(before))]
    lines += [f"- {k}: {before[k]}" for k in sorted(set(before) - set(after))]
    lines += [
        f"~ {k}: {before[k]} -> {after[k]}"
        for k in sorted(set(before) & set(after))
        if before[k] != after[k]
    ]
    return "\n".join(lines) or "no difference"
