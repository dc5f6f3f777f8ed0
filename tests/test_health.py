"""Health sampling from real and fake Linux trees, and the reporter's timing."""

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from vaka.agent import __version__, health
from vaka.agent.health import HealthReporter, HealthSampler
from vaka.agent.hw.clock import KernelClock, kernel_clock_synced
from vaka.agent.hw.fake_camera import SimulatedCameraDevice
from vaka.agent.hw.fake_clock import FakeClock
from vaka.agent.hw.hardware import Hardware, simulated
from vaka.agent.sysinfo import read_cpu_temperature, read_link
from vaka.protocol.messages import HealthMessage, HealthPayload, LinkQuality, decode, encode
from vaka.provisioning import pki

WIRELESS = """\
Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 wlan0: 0000   56.  -54.  -256        0      0      0      0     11        0
"""
ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
{iface}\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
{iface}\t0002A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def add_zone(sys_root: Path, number: int, kind: str, millidegrees: str) -> Path:
    zone = sys_root / "class" / "thermal" / f"thermal_zone{number}"
    write(zone / "type", kind + "\n")
    write(zone / "temp", millidegrees + "\n")
    return zone / "temp"


def add_iface(
    sys_root: Path, name: str, operstate: str, *, kind: int = 1, physical: bool = True
) -> None:
    iface = sys_root / "class" / "net" / name
    write(iface / "operstate", operstate + "\n")
    write(iface / "type", f"{kind}\n")
    if physical:
        (iface / "device").mkdir()


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    sys_root, proc_root = tmp_path / "sys", tmp_path / "proc"
    add_iface(sys_root, "lo", "unknown", kind=772, physical=False)
    (proc_root / "net").mkdir(parents=True)
    return sys_root, proc_root


def fake_sampler(roots: tuple[Path, Path], **kwargs: object) -> HealthSampler:
    sys_root, proc_root = roots
    options: dict[str, object] = {"clock_synced": lambda: True, **kwargs}
    return HealthSampler(sys_root=sys_root, proc_root=proc_root, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Linux sources


def test_cpu_temperature_from_the_cpu_zone(roots: tuple[Path, Path]) -> None:
    sys_root, _ = roots
    add_zone(sys_root, 0, "acpitz", "27800")
    add_zone(sys_root, 2, "cpu-thermal", "48312")
    add_zone(sys_root, 10, "soc-thermal", "90000")  # zone 10 sorts after zone 2
    assert read_cpu_temperature(sys_root) == pytest.approx(48.312)


def test_no_cpu_zone_means_none_not_failure(roots: tuple[Path, Path]) -> None:
    sys_root, _ = roots
    add_zone(sys_root, 0, "acpitz", "27800")
    sampler = fake_sampler(roots)
    assert sampler.sample().cpu_temp_c is None
    assert sampler.status["cpu temperature"] is True


def test_failing_source_logs_once_on_failure_and_once_on_recovery(
    roots: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sys_root, _ = roots
    temp = add_zone(sys_root, 0, "cpu-thermal", "51000")
    sampler = fake_sampler(roots)
    with caplog.at_level(logging.INFO, logger="vaka.agent.health"):
        assert sampler.sample().cpu_temp_c == 51.0
        temp.write_text("garbage\n")
        assert [sampler.sample().cpu_temp_c for _ in range(3)] == [None, None, None]
        temp.write_text("999999\n")  # implausible: a failure too, already reported
        assert sampler.sample().cpu_temp_c is None
        temp.write_text("52500\n")
        assert [sampler.sample().cpu_temp_c for _ in range(2)] == [52.5, 52.5]
    messages = [r.getMessage() for r in caplog.records if r.name == "vaka.agent.health"]
    failed = [m for m in messages if m.startswith("cpu temperature failed: ")]
    assert len(failed) == 1 and "garbage" in failed[0]
    assert messages.count("cpu temperature: recovered") == 1
    assert [r.levelname for r in caplog.records if "cpu temperature" in r.getMessage()] == [
        "WARNING",
        "INFO",
    ]


def test_wifi_link_from_proc_net_wireless(roots: tuple[Path, Path]) -> None:
    sys_root, proc_root = roots
    add_iface(sys_root, "eth0", "down")
    add_iface(sys_root, "wlan0", "up")
    write(proc_root / "net" / "wireless", WIRELESS)
    link = read_link(sys_root, proc_root)
    assert link == LinkQuality(interface="wlan0", kind="wifi", signal_dbm=-54.0, quality_pct=80.0)


def test_default_route_interface_wins_over_wifi(roots: tuple[Path, Path]) -> None:
    sys_root, proc_root = roots
    add_iface(sys_root, "eth0", "up")
    add_iface(sys_root, "wlan0", "up")
    write(proc_root / "net" / "wireless", WIRELESS)
    write(proc_root / "net" / "route", ROUTE.format(iface="eth0"))
    assert read_link(sys_root, proc_root) == LinkQuality(interface="eth0", kind="ethernet")


def test_first_up_interface_without_wifi(roots: tuple[Path, Path]) -> None:
    sys_root, proc_root = roots
    add_iface(sys_root, "docker0", "up", physical=False)
    add_iface(sys_root, "end0", "up")
    add_iface(sys_root, "eth1", "down")
    assert read_link(sys_root, proc_root) == LinkQuality(interface="end0", kind="ethernet")
    (sys_root / "class" / "net" / "end0" / "operstate").write_text("down\n")
    assert read_link(sys_root, proc_root) == LinkQuality(interface="docker0", kind="other")
    (sys_root / "class" / "net" / "docker0" / "operstate").write_text("dormant\n")
    assert read_link(sys_root, proc_root) is None


def test_kernel_clock_check_answers_on_this_machine() -> None:
    assert isinstance(kernel_clock_synced(), bool)


def test_certificate_expiry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca = pki.make_ca("test ca", days=10)
    key = pki.new_key()
    cert = pki.issue_client_cert(ca, "unit-1", key.public_key(), dt.timedelta(days=3))
    path = tmp_path / "unit.crt"
    pki.write_cert(cert, path)
    sampler = HealthSampler(cert_path=path, clock_synced=lambda: True)
    assert sampler.sample().cert_expires_at == cert.not_valid_after_utc.timestamp()
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="vaka.agent.health"):
        assert sampler.sample().cert_expires_at is None
        assert sampler.sample().cert_expires_at is None
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["certificate failed"]
    assert HealthSampler(clock_synced=lambda: True).sample().cert_expires_at is None


# ---------------------------------------------------------------- whole samples


def test_a_simulated_unit_reports_its_fake_clock_not_the_host_s(roots: tuple[Path, Path]) -> None:
    sys_root, proc_root = roots
    hardware = simulated("nightcam")
    assert isinstance(hardware.clock, FakeClock) and isinstance(Hardware().clock, KernelClock)
    sampler = HealthSampler(hardware=hardware, sys_root=sys_root, proc_root=proc_root)
    assert sampler.sample().clock_synced is True
    hardware.clock.set_synchronised(False)
    assert sampler.sample().clock_synced is False
    assert [synced for _, synced in hardware.clock.history] == [True, False]


def test_sample_of_this_machine_is_a_valid_payload() -> None:
    sampler = HealthSampler(interval_s=12.5, hardware=simulated("tv"))
    payload = sampler.sample()
    assert HealthPayload.model_validate(payload.model_dump()) == payload
    round_trip = decode(encode(HealthMessage(payload=payload)))
    assert isinstance(round_trip, HealthMessage) and round_trip.payload == payload
    assert payload.interval_s == 12.5
    assert payload.uptime_s is not None and payload.uptime_s > 0
    assert payload.mem_used_pct is not None and 0 < payload.mem_used_pct <= 100
    assert payload.load1 is not None and payload.load1 >= 0
    assert isinstance(payload.clock_synced, bool)
    assert (payload.camera_present, payload.shutter, payload.tv) == (True, "closed", "standby")
    assert payload.agent_version == __version__


def test_callables_and_hardware_states(roots: tuple[Path, Path]) -> None:
    hardware = simulated("nightcam")
    assert isinstance(hardware.camera, SimulatedCameraDevice)
    sampler = fake_sampler(
        roots,
        hardware=hardware,
        broker_rtt_ms=lambda: 12.5,
        config_version=lambda: 7,
        refused_messages=lambda: 3,
        last_call=lambda: "completed " + "x" * 300,
    )
    hardware.camera.unplug()
    payload = sampler.sample()
    assert (payload.broker_rtt_ms, payload.config_version, payload.refused_messages) == (12.5, 7, 3)
    assert payload.last_call is not None and len(payload.last_call) == 200
    assert (payload.camera_present, payload.shutter, payload.tv) == (False, "closed", None)
    assert payload.clock_synced is True
    assert payload.link is None and payload.cpu_temp_c is None


def test_failing_callables_give_none_never_an_exception(
    roots: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> int:
        raise RuntimeError("link object gone")

    def no_clock() -> bool:
        raise OSError(1, "adjtimex unavailable")

    hardware = simulated("tv")
    hardware.close()  # released devices raise on refresh()
    sampler = fake_sampler(
        roots,
        hardware=hardware,
        broker_rtt_ms=lambda: -4.0,
        config_version=boom,
        refused_messages=lambda: -1,
        last_call=boom,
        clock_synced=no_clock,
    )
    with caplog.at_level(logging.WARNING, logger="vaka.agent.health"):
        payload = sampler.sample()
    assert payload.broker_rtt_ms is None and payload.last_call is None
    assert (payload.config_version, payload.refused_messages) == (0, 0)
    assert (payload.camera_present, payload.shutter, payload.tv) == (None, None, None)
    assert payload.clock_synced is False
    failed = sorted(r.getMessage().split(" failed")[0] for r in caplog.records)
    assert failed == [
        "broker round-trip",
        "camera",
        "clock sync",
        "config version",
        "last call",
        "refused messages",
        "shutter",
        "sound",
        "tv",
    ]


def test_failing_uptime_load_and_memory_give_none_not_stale_values(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sampler = fake_sampler(roots)
    first = sampler.sample()
    assert None not in (first.uptime_s, first.load1, first.mem_used_pct)

    def broken() -> float:
        raise OSError(5, "Input/output error")

    for reader in ("read_uptime", "read_load1", "read_memory_used"):
        monkeypatch.setattr(health, reader, broken)
    with caplog.at_level(logging.WARNING, logger="vaka.agent.health"):
        payload = sampler.sample()
    assert (payload.uptime_s, payload.load1, payload.mem_used_pct) == (None, None, None)
    assert sorted(r.getMessage() for r in caplog.records) == [
        "load failed: [Errno 5] Input/output error",
        "memory failed: [Errno 5] Input/output error",
        "uptime failed: [Errno 5] Input/output error",
    ]
    monkeypatch.undo()
    again = sampler.sample()
    assert None not in (again.uptime_s, again.load1, again.mem_used_pct)


# ---------------------------------------------------------------- reporter


class Collector:
    """A publish callable that queues what it gets, and can be told to fail."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[float, HealthPayload]] = asyncio.Queue()
        self.fail = 0

    async def __call__(self, payload: HealthPayload) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker unreachable")
        self.queue.put_nowait((time.monotonic(), payload))

    async def next(self, timeout: float = 1.0) -> tuple[float, HealthPayload]:
        return await asyncio.wait_for(self.queue.get(), timeout)


@contextlib.asynccontextmanager
async def running(
    reporter: HealthReporter, publish: Callable[[HealthPayload], object]
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reporter.run(publish))  # type: ignore[arg-type]
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_unplugging_the_camera_reports_at_once(roots: tuple[Path, Path]) -> None:
    hardware = simulated("nightcam")
    assert isinstance(hardware.camera, SimulatedCameraDevice)
    reporter = HealthReporter(
        fake_sampler(roots, hardware=hardware), interval_s=30, hardware=hardware
    )
    out = Collector()
    async with running(reporter, out) as task:
        _, first = await out.next()
        assert first.camera_present is True
        unplugged = time.monotonic()
        hardware.camera.unplug()
        at, second = await out.next(timeout=2)
        assert second.camera_present is False
        assert at - unplugged < 1.0  # well under the 30 s interval
        assert out.queue.empty()
    assert task.cancelled()
    assert hardware.camera.listener_count == 0  # unsubscribed on exit


async def test_changes_from_another_thread_are_debounced_into_one_report(
    roots: tuple[Path, Path],
) -> None:
    hardware = simulated("tv")
    assert isinstance(hardware.camera, SimulatedCameraDevice) and hardware.shutter is not None
    reporter = HealthReporter(
        fake_sampler(roots, hardware=hardware), interval_s=30, hardware=hardware, debounce_s=0.1
    )
    out = Collector()
    async with running(reporter, out):
        await out.next()
        thread = threading.Thread(target=hardware.camera.unplug)
        thread.start()
        await hardware.shutter.open()  # opening -> open within the debounce
        thread.join()
        _, payload = await out.next()
        assert (payload.camera_present, payload.shutter) == (False, "open")
        await asyncio.sleep(0.2)
        assert out.queue.empty()


async def test_periodic_reports_and_trigger(roots: tuple[Path, Path]) -> None:
    reporter = HealthReporter(fake_sampler(roots), interval_s=0.1, debounce_s=0.01)
    reporter.trigger()  # not running: nothing happens, nothing breaks
    out = Collector()
    async with running(reporter, out):
        times = [(await out.next())[0] for _ in range(4)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.08 < gap < 0.5 for gap in gaps), gaps
    slow = HealthReporter(fake_sampler(roots), interval_s=30, debounce_s=0.01)
    async with running(slow, out):
        await out.next()
        asked = time.monotonic()
        slow.trigger()
        at, _ = await out.next()
        assert at - asked < 0.5
    assert slow.published == 2


async def test_failing_publish_is_logged_once_and_the_loop_goes_on(
    roots: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    reporter = HealthReporter(fake_sampler(roots), interval_s=0.05, debounce_s=0.01)
    out = Collector()
    out.fail = 3
    with caplog.at_level(logging.INFO, logger="vaka.agent.health"):
        async with running(reporter, out) as task:
            await out.next()
            assert not task.done()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("health publish failed: broker unreachable") == 1
    assert messages.count("health publish: recovered") == 1
    assert reporter.published >= 1 and reporter.last is not None


async def test_reporter_refuses_to_run_twice(roots: tuple[Path, Path]) -> None:
    reporter = HealthReporter(fake_sampler(roots), interval_s=30)
    out = Collector()
    async with running(reporter, out):
        await out.next()
        with pytest.raises(RuntimeError, match="already running"):
            await reporter.run(out)
    with pytest.raises(ValueError, match="must be positive"):
        HealthReporter(fake_sampler(roots), interval_s=0)
    assert isinstance(Hardware().sources(), list)
