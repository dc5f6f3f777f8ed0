"""The agent's composition: a real unit names its camera, the runner's order, the unit's call
state machine, and the display interface every TV implements."""

import asyncio
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vaka.agent.app import Agent
from vaka.agent.call.state import CallPhase, UnitCall
from vaka.agent.config import load_config
from vaka.agent.hw.display import TvState
from vaka.agent.hw.fake_cec import FakeCecBus, FakeCecDisplay
from vaka.agent.hw.fake_display import SimulatedDisplay
from vaka.agent.hw.fake_installer import FakeInstaller
from vaka.agent.hw.installer import RaucInstaller
from vaka.agent.media.settings import NO_CAMERA_SOURCE
from vaka.agent.profiles.backends import installer_for, media_settings
from vaka.agent.profiles.common import update_settings
from vaka.agent.runner import Part, Runner
from vaka.agent.watchdog import SystemdNotifier
from vaka.errors import ConfigError


def _config(tmp_path: Path, *, simulate: bool, media: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[unit]
id = "u-real-1"
profile = "nightcam"
simulate = {"true" if simulate else "false"}

[broker]
host = "127.0.0.1"
server_ca = "{tmp_path / "ca.crt"}"
cert = "{tmp_path / "unit.crt"}"
key = "{tmp_path / "unit.key"}"

[media]
width = 320
height = 240
{media}
"""
    )
    return path


def test_a_real_unit_without_a_camera_source_refuses_to_start(tmp_path: Path) -> None:
    config = _config(tmp_path, simulate=False)
    done = subprocess.run(
        [sys.executable, "-m", "vaka.agent.cli", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith(f"vaka-agent: {NO_CAMERA_SOURCE}")
    assert "media.source" in NO_CAMERA_SOURCE
    # In process too, before any device is touched.
    with pytest.raises(ConfigError, match=r"^\[media\] source is not set: set media\.source "):
        Agent(load_config(config))


def test_the_synthetic_source_only_under_simulate_or_when_configured(tmp_path: Path) -> None:
    simulated = media_settings(load_config(_config(tmp_path, simulate=True)))
    assert (simulated.source, simulated.audio) == ("synthetic", "synthetic")
    chosen = _config(tmp_path, simulate=False, media='source = "synthetic"')
    assert media_settings(load_config(chosen)).source == "synthetic"
    v4l2 = media_settings(load_config(_config(tmp_path, simulate=False, media='source = "v4l2"')))
    assert (v4l2.source, v4l2.audio) == ("v4l2", "none")


IDLE_PROBE = """
import sys
from pathlib import Path

from vaka.agent.app import Agent
from vaka.agent.config import load_config

for profile in ("nightcam", "tv"):
    path = Path(sys.argv[1])
    path.write_text(path.read_text().replace('profile = "nightcam"', f'profile = "{profile}"'))
    agent = Agent(load_config(path))
    assert agent.calls is not None and (profile == "nightcam") == (agent.tv is None)
    agent.hardware.close()
print(sorted({m.split(".")[0] for m in sys.modules} & {"aiortc", "av", "cv2", "aioice"}))
"""


def test_an_idle_unit_does_not_load_the_media_stack(tmp_path: Path) -> None:
    """Composing either profile imports neither aiortc, PyAV nor OpenCV: the first call does."""
    key = Ed25519PrivateKey.generate().public_key()
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ticket.pub").write_bytes(pem)
    calls = f'[calls]\nticket_key = "{tmp_path / "ticket.pub"}"\n'
    config = _config(tmp_path, simulate=True)
    config.write_text(config.read_text().replace("[media]", calls + "\n[media]"))
    done = subprocess.run(
        [sys.executable, "-c", IDLE_PROBE, str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


NIGHTCAM_PROBE = """
import sys
from pathlib import Path

import vaka.agent.cli
import vaka.agent.identity
from vaka.agent.app import Agent
from vaka.agent.config import load_config

Agent(load_config(Path(sys.argv[1]))).hardware.close()
heavy = {"numpy", "PIL", "qrcode", "dns.resolver"}
print(sorted(m for m in sys.modules if m in heavy or m.split(".")[0] in heavy - {"dns.resolver"}))
"""


def test_an_idle_nightcam_loads_no_drawing_or_dns_libraries(tmp_path: Path) -> None:
    """An enrolled nightcam's start imports neither NumPy, Pillow, the QR encoder (the TV's
    screen and the enrolment code) nor dnspython's resolver (paho's unused SRV look-ups): together
    about 30 MB of an idle unit's RSS."""
    config = _config(tmp_path, simulate=True)
    done = subprocess.run(
        [sys.executable, "-c", NIGHTCAM_PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the unit's call state -----------------------------------------------------------------------


class _Claims:
    purpose = "video_visit"


class _Session:  # what the state reads of a CallSession
    call_id = "call-1"
    claims = _Claims()


def test_unit_call_state_logs_each_change_and_emits_only_on_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = UnitCall()
    seen: list[CallPhase] = []
    unsubscribe = call.subscribe(seen.append)
    session: Any = _Session()
    with caplog.at_level(logging.INFO, logger="vaka.agent.call.state"):
        call.ringing("call-1", "video_visit")
        call.ringing("call-1", "video_visit")  # no change: no event
        call.connecting(session)
        call.in_call(session)
        assert call.busy and call.session is session and call.purpose == "video_visit"
        call.idle("video_visit: hung up by caller")
    assert seen == [CallPhase.RINGING, CallPhase.CONNECTING, CallPhase.IN_CALL, CallPhase.IDLE]
    assert [r.getMessage() for r in caplog.records] == [
        "unit call call-1: idle -> ringing",
        "unit call call-1: ringing -> connecting",
        "unit call call-1: connecting -> in_call",
        "unit call call-1: in_call -> idle",
    ]
    assert not call.busy and call.session is None and call.call_id is None
    assert call.last_result == "video_visit: hung up by caller"
    unsubscribe()
    call.requesting("u-1.abc")
    assert call.phase is CallPhase.REQUESTING and seen[-1] is CallPhase.IDLE


# -- the runner ----------------------------------------------------------------------------------


def _recording_parts(log: list[str], *, failing: str | None = None) -> list[Part]:
    def part(name: str) -> Part:
        async def start() -> None:
            log.append(f"start {name}")

        async def run() -> None:
            if name == failing:
                raise RuntimeError(f"{name} failed")
            await asyncio.Event().wait()

        async def stop() -> None:
            log.append(f"stop {name}")

        return Part(name, start=start, run=run, stop=stop)

    return [part("hardware"), part("link"), part("tv"), part("shutter")]


async def test_the_runner_starts_in_order_and_stops_in_reverse_when_cancelled() -> None:
    log: list[str] = []
    runner = Runner(_recording_parts(log), SystemdNotifier(), asyncio.Event())
    task = asyncio.create_task(runner.run())
    while len(log) < 4:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == [
        "start hardware",
        "start link",
        "start tv",
        "start shutter",
        "stop shutter",  # the shutter closes first
        "stop tv",
        "stop link",
        "stop hardware",
    ]


async def test_a_failing_part_stops_the_unit_in_order() -> None:
    log: list[str] = []
    until = asyncio.Event()
    runner = Runner(_recording_parts(log, failing="tv"), SystemdNotifier(), until)
    with pytest.raises(RuntimeError, match=r"^tv failed$"):
        await runner.run()
    assert log[4:] == ["stop shutter", "stop tv", "stop link", "stop hardware"]
    log.clear()
    until.set()  # decommissioned: a clean stop
    await Runner(_recording_parts(log), SystemdNotifier(), until).run()
    assert log[4:] == ["stop shutter", "stop tv", "stop link", "stop hardware"]


# -- the display interface -----------------------------------------------------------------------


async def test_every_display_has_poll_watch_and_device_changed() -> None:
    simulated = SimulatedDisplay(TvState.ON)
    assert await simulated.poll() is TvState.ON
    await asyncio.wait_for(simulated.watch(0.01), 1)  # reports its changes: nothing to watch
    simulated.device_changed(False)  # learns of it by itself: nothing changes
    assert simulated.state is TvState.ON
    bus = FakeCecBus(TvState.STANDBY)
    cec = FakeCecDisplay(bus)
    assert await cec.poll() is TvState.STANDBY
    cec.device_changed(False)
    assert cec.state is TvState.ABSENT


def test_a_simulated_unit_without_a_temporary_directory_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a read-only sandbox whose /tmp the agent's user cannot write (the image's test):
    # the updater's directory is named without probing /tmp (a probe writes a file, and raises
    # where there is no writable one), so the agent starts and writes nothing at start.
    def no_tempdir() -> str:
        raise FileNotFoundError(2, "No usable temporary directory found")

    monkeypatch.setattr(tempfile, "gettempdir", no_tempdir)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    config = load_config(_config(tmp_path, simulate=True))
    assert update_settings(config, "u1").download_dir == tmp_path / "tmp" / "vaka-update-u1"
    assert not (tmp_path / "tmp").exists()


def test_a_simulated_unit_on_real_slots_installs_through_rauc_from_the_images_directory(
    tmp_path: Path,
) -> None:
    """``[update] installer = "rauc"`` (a card in a virtual machine): simulated devices, but the
    root helper, which takes bundles only from ``/run/vaka/update``, and the note of the
    installed bundle on the credentials partition."""
    path = _config(tmp_path, simulate=True)
    assert isinstance(installer_for(load_config(path)), FakeInstaller)
    path.write_text(path.read_text() + '\n[update]\ninstaller = "rauc"\n')
    config = load_config(path)
    installer = installer_for(config)
    assert isinstance(installer, RaucInstaller)
    assert installer.request_dir == Path("/run/vaka/update")
    settings = update_settings(config, "u1")
    assert settings.download_dir == Path("/run/vaka/update")
    credentials = config.storage.credentials_dir
    expected = credentials / "update-installed" if credentials else None
    assert settings.installed_note == expected
