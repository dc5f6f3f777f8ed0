"""The TV over HDMI-CEC: the real cec-ctl command lines against a fake cec-ctl on PATH (the fake
bus and the idle standby timer are in test_cec_standby.py)."""

import asyncio
import logging
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from vaka.agent.hw.cec import (
    NO_ANSWER,
    NO_DEVICE,
    NO_HDMI,
    CecDisplay,
    CommandResult,
    find_cec_device,
    parse_physical_address,
    parse_power_status,
)
from vaka.agent.hw.display import TvState
from vaka.errors import HardwareError

DEV = "/dev/cec0"

CLAIMED = """\
Driver Info:
\tDriver Name                : vc4_hdmi
\tAdapter Name               : vc4-hdmi-0
\tAvailable Logical Addresses: 1
\tPhysical Address           : {phys}
\tLogical Address Mask       : 0x0010
\tCEC Version                : 2.0
\tOSD Name                   : 'Playback'
\tLogical Addresses          : 1 (Allow RC Passthrough)

\t  Logical Address          : 4 (Playback Device 1)
"""
TRANSMIT = "Transmit from Playback Device 1 to TV (4 to 0):\n{msg}\n"
NACK = TRANSMIT.format(msg="IMAGE_VIEW_ON (0x04)\n\tTx, Not Acknowledged (2), Max Retries")


def power_reply(state: str, code: int) -> str:
    return TRANSMIT.format(
        msg="GIVE_DEVICE_POWER_STATUS (0x8f):\n\tReceived from TV (0):\n"
        f"\tREPORT_POWER_STATUS (0x90):\n\t\tpwr-state: {state} (0x{code:02x})"
    )


# A stand-in for cec-ctl: records its argv (tab-separated) and answers with the canned
# <key>.out/.err/.rc/.sleep files, <key> being its first --option other than --to.
SCRIPT = """\
#!/bin/sh
dir={dir}
line="$(basename "$0")	"
key=""
for a in "$@"; do
  line="$line$a	"
  case "$a" in --to) ;; --*) [ -z "$key" ] && key="${{a#--}}" ;; esac
done
printf '%s\\n' "$line" >> "$dir/calls"
[ -f "$dir/$key.sleep" ] && exec sleep "$(cat "$dir/$key.sleep")"
[ -f "$dir/$key.out" ] && cat "$dir/$key.out"
[ -f "$dir/$key.err" ] && cat "$dir/$key.err" >&2
[ -f "$dir/$key.rc" ] && exit "$(cat "$dir/$key.rc")"
exit 0
"""


class FakeCecCtl:
    """A fake ``cec-ctl`` first on PATH: set its answers, read its calls."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.answer("playback", out=CLAIMED.format(phys="1.0.0.0"))
        self.answer("give-device-power-status", out=power_reply("standby", 1))

    def answer(
        self, key: str, *, out: str = "", err: str = "", rc: int = 0, sleep: float = 0
    ) -> None:
        for suffix, text in (("out", out), ("err", err)):
            (self.dir / f"{key}.{suffix}").write_text(text)
        (self.dir / f"{key}.rc").write_text(str(rc))
        sleep_file = self.dir / f"{key}.sleep"
        if sleep:
            sleep_file.write_text(str(sleep))
        else:
            sleep_file.unlink(missing_ok=True)

    @property
    def calls(self) -> list[list[str]]:
        path = self.dir / "calls"
        if not path.exists():
            return []
        return [line.rstrip("\t").split("\t") for line in path.read_text().splitlines()]


@pytest.fixture
def cec_ctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCecCtl]:
    """Put the fake cec-ctl first on PATH; monkeypatch restores PATH afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "cec-ctl"
    script.write_text(SCRIPT.format(dir=shlex.quote(str(tmp_path))))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield FakeCecCtl(tmp_path)


def cec(*args: str) -> list[str]:
    return ["cec-ctl", "-d", DEV, *args]


def display(**kwargs: object) -> CecDisplay:
    kwargs.setdefault("device", DEV)
    return CecDisplay(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- command lines


async def test_wake_claims_once_then_wakes_and_switches_input(cec_ctl: FakeCecCtl) -> None:
    tv = display()
    await tv.wake()
    assert cec_ctl.calls == [
        cec("--playback"),
        cec("--to", "0", "--image-view-on"),
        cec("--active-source", "phys-addr=1.0.0.0"),
    ]
    assert tv.state is TvState.ON
    assert tv.phys_addr == "1.0.0.0"
    await tv.wake()
    assert cec_ctl.calls[3:] == [
        cec("--to", "0", "--image-view-on"),
        cec("--active-source", "phys-addr=1.0.0.0"),
    ]


async def test_standby_and_configured_address_and_osd_name(cec_ctl: FakeCecCtl) -> None:
    tv = display(phys_addr="2.0.0.0", osd_name="Vaka")
    await tv.standby()
    assert cec_ctl.calls == [cec("--playback", "--osd-name", "Vaka"), cec("--to", "0", "--standby")]
    assert tv.state is TvState.STANDBY
    await tv.wake()
    assert cec_ctl.calls[-1] == cec("--active-source", "phys-addr=2.0.0.0")


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        (power_reply("on", 0), TvState.ON),
        (power_reply("standby", 1), TvState.STANDBY),
        (power_reply("to-on", 2), TvState.ON),
        (power_reply("to-standby", 3), TvState.STANDBY),
        ("\t\tpwr-state: in transition standby to on (0x02)\n", TvState.ON),
        ("\t\tpwr-state: on\n", TvState.ON),
        (
            TRANSMIT.format(msg="GIVE_DEVICE_POWER_STATUS (0x8f)\n\tTx, Not Acknowledged (2)"),
            TvState.ABSENT,
        ),
        (TRANSMIT.format(msg="GIVE_DEVICE_POWER_STATUS (0x8f)\n\tTimed out"), TvState.UNKNOWN),
        ("", TvState.UNKNOWN),
    ],
)
def test_power_status_is_parsed(reply: str, state: TvState) -> None:
    assert parse_power_status(reply) is state


def test_physical_address_is_parsed() -> None:
    assert parse_physical_address(CLAIMED.format(phys="3.1.0.0")) == "3.1.0.0"
    assert parse_physical_address("Driver Info:\n") is None


async def test_poll_reads_the_power_status(cec_ctl: FakeCecCtl) -> None:
    tv = display()
    assert await tv.poll() is TvState.STANDBY
    assert cec_ctl.calls[-1] == cec("--to", "0", "--give-device-power-status")
    cec_ctl.answer("give-device-power-status", out=power_reply("on", 0))
    assert await tv.poll() is TvState.ON
    assert tv.refresh() is TvState.ON  # the health sampler reads the last known state
    cec_ctl.answer(
        "give-device-power-status",
        out=TRANSMIT.format(msg="GIVE_DEVICE_POWER_STATUS (0x8f)\n\tTx, Not Acknowledged (2)"),
        rc=1,
    )
    assert await tv.poll() is TvState.ABSENT
    assert [s for _, s in tv.history] == [
        TvState.UNKNOWN,
        TvState.STANDBY,
        TvState.ON,
        TvState.ABSENT,
    ]


# ---------------------------------------------------------------- failures


async def test_no_cec_device_found() -> None:
    tv = CecDisplay(find_device=lambda: None)
    with pytest.raises(HardwareError) as err:
        await tv.wake()
    assert str(err.value) == "no CEC device: is the HDMI cable in the TV's CEC-capable port?"
    assert tv.state is TvState.ABSENT


async def test_missing_device_node(cec_ctl: FakeCecCtl) -> None:
    cec_ctl.answer("playback", err="Failed to open /dev/cec0: No such file or directory\n", rc=1)
    tv = display()
    with pytest.raises(HardwareError) as err:
        await tv.wake()
    assert str(err.value) == NO_DEVICE
    assert tv.state is TvState.ABSENT


async def test_timeout_kills_cec_ctl(cec_ctl: FakeCecCtl) -> None:
    cec_ctl.answer("image-view-on", sleep=30)
    tv = display(timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(HardwareError) as err:
        await tv.wake()
    assert time.monotonic() - started < 3
    assert str(err.value) == (
        "cec-ctl -d /dev/cec0 --to 0 --image-view-on did not finish within 0.3 s: the CEC bus may "
        "be stuck; unplug the HDMI cable and plug it in again"
    )
    cec_ctl.answer("image-view-on")
    await tv.wake()  # claims again after a failure
    assert cec_ctl.calls[-3][3:] == ["--playback"]


async def test_non_zero_exit_gives_the_reason(cec_ctl: FakeCecCtl) -> None:
    cec_ctl.answer("standby", err="Transmit: Network is down\n", rc=1)
    tv = display()
    with pytest.raises(HardwareError) as err:
        await tv.standby()
    assert str(err.value) == "cec-ctl --standby failed (exit 1): Transmit: Network is down"
    assert tv.state is TvState.UNKNOWN


async def test_permission_denied(cec_ctl: FakeCecCtl) -> None:
    cec_ctl.answer("playback", err="Failed to open /dev/cec0: Permission denied\n", rc=1)
    with pytest.raises(HardwareError) as err:
        await display().wake()
    assert (
        str(err.value)
        == "no permission to use /dev/cec0: add the agent's user to the 'video' group"
    )


async def test_tv_that_does_not_acknowledge_is_absent(cec_ctl: FakeCecCtl) -> None:
    cec_ctl.answer("image-view-on", out=NACK)
    tv = display()
    with pytest.raises(HardwareError) as err:
        await tv.wake()
    assert str(err.value) == NO_ANSWER
    assert tv.state is TvState.ABSENT
    assert cec_ctl.calls[-1] == cec("--to", "0", "--image-view-on")  # no input switch


async def test_no_hdmi_link(cec_ctl: FakeCecCtl) -> None:
    cec_ctl.answer("playback", out=CLAIMED.format(phys="f.f.f.f"))
    tv = display()
    with pytest.raises(HardwareError) as err:
        await tv.wake()
    assert str(err.value) == NO_HDMI
    assert tv.state is TvState.ABSENT


async def test_cec_ctl_not_installed() -> None:
    tv = display(cec_ctl="/nonexistent/cec-ctl")
    with pytest.raises(HardwareError, match=r"^/nonexistent/cec-ctl not found: install v4l-utils$"):
        await tv.standby()


async def test_commands_do_not_block_the_loop(cec_ctl: FakeCecCtl) -> None:
    cec_ctl.answer("standby", sleep=0.4)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.02)

    ticker = asyncio.create_task(tick())
    try:
        await display().standby()
    finally:
        ticker.cancel()
    assert ticks >= 10


async def test_runner_seam_and_watch_logs_a_failure_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[list[str]] = []

    async def runner(argv: Sequence[str], timeout_s: float) -> CommandResult:
        seen.append(list(argv))
        if "--give-device-power-status" in argv:
            return CommandResult(1, "", "Transmit: Network is down\n")
        return CommandResult(0, CLAIMED.format(phys="1.0.0.0"), "")

    tv = display(runner=runner)
    with caplog.at_level(logging.WARNING, logger="vaka.agent.hw.cec"):
        watcher = asyncio.create_task(tv.watch(0.01))
        await asyncio.sleep(0.1)
        watcher.cancel()
    failures = [r for r in caplog.records if "power status failed" in r.getMessage()]
    assert len(failures) == 1
    assert seen[0] == cec("--playback")
    assert seen.count(cec("--to", "0", "--give-device-power-status")) > 2


async def test_device_changed_forgets_the_claim(cec_ctl: FakeCecCtl) -> None:
    tv = display()
    await tv.wake()
    tv.device_changed(False)
    assert tv.state is TvState.ABSENT
    tv.device_changed(True)
    assert tv.state is TvState.UNKNOWN
    await tv.wake()
    assert cec_ctl.calls[3] == cec("--playback")


def test_find_cec_device_with_pyudev() -> None:
    found = find_cec_device()
    if not list(Path("/dev").glob("cec*")):
        assert found is None  # no CEC adapter on this machine
    else:
        assert found is not None and found.startswith("/dev/cec")
