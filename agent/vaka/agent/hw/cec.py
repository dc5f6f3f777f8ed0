"""The citizen's TV over HDMI-CEC: the kernel CEC device, driven with ``cec-ctl`` (v4l-utils).

:class:`CecDisplay` finds the CEC device with pyudev (subsystem ``cec``, ``/dev/cecN``), claims a
logical address as a playback device once, and then wakes the TV (``<Image View On>``), switches
its input to the unit (``<Active Source>``), puts it in standby (``<Standby>``) and asks for its
power status. Every command is a ``cec-ctl`` subprocess run from the event loop with a timeout;
failures become :class:`~vaka.errors.HardwareError` with a reason a support person can act on.

:class:`StandbyTimer` puts the TV back in standby after a call and an idle period.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from vaka.agent.hw.display import Display, TvState
from vaka.errors import HardwareError

log = logging.getLogger(__name__)

#: What the TV is on the CEC bus: logical address 0.
TV_ADDRESS = "0"

NO_DEVICE = "no CEC device: is the HDMI cable in the TV's CEC-capable port?"
NO_ANSWER = (
    "the TV did not answer on HDMI-CEC: is it on mains power, and is CEC (Anynet+, Bravia Sync, "
    "SimpLink, ...) turned on in its settings?"
)
NO_HDMI = (
    "the TV is not connected: no HDMI hotplug signal (physical address f.f.f.f); is the cable in "
    "and the TV on mains power?"
)

_PHYS_ADDR = re.compile(r"Physical Address\s*:\s*([0-9a-f]\.[0-9a-f]\.[0-9a-f]\.[0-9a-f])", re.I)
_PWR_STATE = re.compile(r"pwr-state:[^\n]*?\((0x[0-9a-f]+)\)", re.I)
_PWR_NAME = re.compile(r"pwr-state:\s*([a-z-]+)", re.I)
#: ``<Report Power Status>`` operands: on, standby, in transition to on, to standby.
_POWER_CODES = {0: TvState.ON, 1: TvState.STANDBY, 2: TvState.ON, 3: TvState.STANDBY}
_POWER_NAMES = {
    "on": TvState.ON,
    "standby": TvState.STANDBY,
    "to-on": TvState.ON,
    "to-standby": TvState.STANDBY,
}


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Standard output and error together."""
        return f"{self.stdout}\n{self.stderr}"


#: Runs ``argv`` with a timeout in seconds; raises :class:`HardwareError` if it cannot run or
#: does not finish in time. :func:`run_command` is the real one.
CommandRunner = Callable[[Sequence[str], float], Awaitable[CommandResult]]


async def run_command(argv: Sequence[str], timeout_s: float) -> CommandResult:
    """Run ``argv`` as a subprocess without blocking the loop; kill it after ``timeout_s``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as err:
        raise HardwareError(f"{argv[0]} not found: install v4l-utils") from err
    except OSError as err:
        raise HardwareError(f"could not run {argv[0]}: {err}") from err
    try:
        out, err_out = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError as err:
        raise HardwareError(
            f"{' '.join(argv)} did not finish within {timeout_s:g} s: the CEC bus may be stuck; "
            "unplug the HDMI cable and plug it in again"
        ) from err
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return CommandResult(
        proc.returncode,
        out.decode(errors="replace"),
        err_out.decode(errors="replace"),
    )


def find_cec_device() -> str | None:
    """The first kernel CEC device node (``/dev/cec0``...) udev knows of, or ``None``.

    Reads sysfs through libudev: call it off the event loop.
    """
    import pyudev  # the agent extra; imported here so the fakes work without it

    nodes = [
        str(device.device_node)
        for device in pyudev.Context().list_devices(subsystem="cec")
        if device.device_node
    ]
    nodes.sort(key=lambda node: (len(node), node))  # /dev/cec2 before /dev/cec10
    return nodes[0] if nodes else None


def parse_power_status(output: str) -> TvState:
    """The TV's state from ``cec-ctl --give-device-power-status`` output.

    ``on`` and ``to-on`` read as :attr:`TvState.ON`, ``standby`` and ``to-standby`` as
    :attr:`TvState.STANDBY`, a transmission nobody acknowledged as :attr:`TvState.ABSENT`, and
    anything else (no reply in time) as :attr:`TvState.UNKNOWN`.
    """
    if match := _PWR_STATE.search(output):
        return _POWER_CODES.get(int(match.group(1), 16), TvState.UNKNOWN)
    if match := _PWR_NAME.search(output):
        return _POWER_NAMES.get(match.group(1).lower(), TvState.UNKNOWN)
    if _not_acknowledged(output):
        return TvState.ABSENT
    return TvState.UNKNOWN


def parse_physical_address(output: str) -> str | None:
    """The ``Physical Address`` that ``cec-ctl`` prints in its driver info, or ``None``."""
    match = _PHYS_ADDR.search(output)
    return match.group(1).lower() if match else None


def _not_acknowledged(output: str) -> bool:
    return "not acknowledged" in output.lower()


def _reason(result: CommandResult) -> str:
    """The last thing ``cec-ctl`` said, for an error message."""
    for text in (result.stderr, result.stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"


class CecDisplay(Display):
    """The TV, reached through the unit's kernel CEC device with ``cec-ctl``.

    ``device`` is the CEC node (found with pyudev when ``None``); ``phys_addr`` the unit's HDMI
    physical address for ``<Active Source>`` (read from ``cec-ctl`` when ``None``); ``osd_name``
    the name the TV shows for the input. Each command gets ``timeout_s``. ``runner`` and
    ``find_device`` are seams for tests. Commands are serialised; the logical address is claimed
    before the first one and again after any failure.

    :meth:`refresh` returns the last known state (the health sampler calls it from a thread): run
    :meth:`watch` as a task, or call :meth:`poll`, to ask the TV.
    """

    def __init__(
        self,
        device: str | None = None,
        *,
        phys_addr: str | None = None,
        osd_name: str | None = None,
        timeout_s: float = 5.0,
        cec_ctl: str = "cec-ctl",
        runner: CommandRunner = run_command,
        find_device: Callable[[], str | None] = find_cec_device,
        name: str | None = None,
    ) -> None:
        super().__init__(TvState.UNKNOWN, name=name)
        self._configured_device = device
        self.device = device
        self._configured_phys = phys_addr
        self.phys_addr = phys_addr
        self.osd_name = osd_name
        self.timeout_s = timeout_s
        self.cec_ctl = cec_ctl
        self._runner = runner
        self._find_device = find_device
        self._claimed = False
        self._commands = asyncio.Lock()
        self._last_error: str | None = None

    # ------------------------------------------------------------ public

    async def wake(self) -> None:
        """Switch the TV on and make it show the unit's input."""
        self._check_usable()
        async with self._commands:
            device = await self._prepare()
            await self._send(device, "--to", TV_ADDRESS, "--image-view-on")
            if self.phys_addr is None:
                log.warning("%s: physical address unknown, cannot switch the input", self.name)
            else:
                await self._send(device, "--active-source", f"phys-addr={self.phys_addr}")
            self._set_state(TvState.ON)

    async def standby(self) -> None:
        """Put the TV into standby."""
        self._check_usable()
        async with self._commands:
            device = await self._prepare()
            await self._send(device, "--to", TV_ADDRESS, "--standby")
            self._set_state(TvState.STANDBY)

    async def poll(self) -> TvState:
        """Ask the TV for its power status, update :attr:`state` and return it.

        A TV that does not acknowledge reads as ``absent``, one that does not reply in time as
        ``unknown``. No CEC device, a timeout or a failing ``cec-ctl`` raise
        :class:`HardwareError` (no device also sets ``absent``).
        """
        self._check_usable()
        async with self._commands:
            device = await self._prepare()
            result = await self._run(device, "--to", TV_ADDRESS, "--give-device-power-status")
            state = parse_power_status(result.output)
            if state is TvState.ABSENT or result.returncode != 0:
                self._claimed = False
            if result.returncode != 0 and state is TvState.UNKNOWN:
                raise self._failed(result, "--give-device-power-status")
            self._set_state(state)
            return state

    async def watch(self, interval_s: float = 30.0) -> None:
        """Poll the TV every ``interval_s`` until cancelled; logs a failure once, and recovery."""
        while not self.released:
            try:
                await self.poll()
            except HardwareError as err:
                if str(err) != self._last_error:
                    log.warning("%s: power status failed: %s", self.name, err)
                self._last_error = str(err)
            else:
                if self._last_error is not None:
                    log.info("%s: power status recovered", self.name)
                self._last_error = None
            await asyncio.sleep(interval_s)

    def device_changed(self, present: bool) -> None:
        """Hotplug: the CEC device or the HDMI link came (``True``) or went (``False``).

        Forgets the claim (and a discovered device and address) so the next command starts over;
        a loss reads as ``absent`` at once, a return as ``unknown`` until the next poll.
        """
        self._check_usable()
        self._claimed = False
        self.device = self._configured_device
        self.phys_addr = self._configured_phys
        self._set_state(TvState.UNKNOWN if present else TvState.ABSENT)

    # ------------------------------------------------------------ internals

    async def _prepare(self) -> str:
        """The device node, with our logical address claimed."""
        if self.device is None:
            self.device = await asyncio.to_thread(self._find_device)
            if self.device is None:
                self._set_state(TvState.ABSENT)
                raise HardwareError(NO_DEVICE)
            log.info("%s: using CEC device %s", self.name, self.device)
        if not self._claimed:
            args = ["--playback"] + (["--osd-name", self.osd_name] if self.osd_name else [])
            result = await self._send(self.device, *args)
            found = parse_physical_address(result.stdout)
            if found == "f.f.f.f":
                self._set_state(TvState.ABSENT)
                raise HardwareError(NO_HDMI)
            if self._configured_phys is None:
                self.phys_addr = found
            self._claimed = True
            log.info("%s: claimed a playback address, physical %s", self.name, self.phys_addr)
        return self.device

    async def _run(self, device: str, *args: str) -> CommandResult:
        argv = [self.cec_ctl, "-d", device, *args]
        log.debug("%s: %s", self.name, " ".join(argv))
        try:
            return await self._runner(argv, self.timeout_s)
        except HardwareError:
            self._claimed = False
            raise

    async def _send(self, device: str, *args: str) -> CommandResult:
        """Run a command that must succeed and be acknowledged."""
        result = await self._run(device, *args)
        if _not_acknowledged(result.output):
            self._claimed = False
            self._set_state(TvState.ABSENT)
            raise HardwareError(NO_ANSWER)
        if result.returncode != 0:
            self._claimed = False
            raise self._failed(result, args[-1])
        return result

    def _failed(self, result: CommandResult, what: str) -> HardwareError:
        reason = _reason(result)
        lowered = reason.lower()
        if "no such file or directory" in lowered and "open" in lowered:
            self.device = self._configured_device
            self._set_state(TvState.ABSENT)
            return HardwareError(NO_DEVICE)
        if "permission denied" in lowered:
            return HardwareError(
                f"no permission to use {self.device}: add the agent's user to the 'video' group"
            )
        return HardwareError(f"cec-ctl {what} failed (exit {result.returncode}): {reason}")


class StandbyTimer:
    """Puts the TV back in standby ``idle_s`` after a call, unless there is new activity.

    :meth:`wake` wakes the TV for a call and remembers whether it was off; :meth:`arm` starts the
    idle countdown when the call ends (only if the TV was woken by us, unless ``force``);
    :meth:`touch` restarts a running countdown; :meth:`hold` stops it (a new call). A TV the
    citizen was already watching is never switched off. Use it from the event loop.
    """

    def __init__(self, display: Display, idle_s: float) -> None:
        if idle_s < 0:
            raise ValueError(f"idle time must not be negative, got {idle_s}")
        self.display = display
        self.idle_s = idle_s
        self._task: asyncio.Task[None] | None = None
        self._woke = False
        #: How many times the timer has put the TV in standby.
        self.fired = 0

    @property
    def armed(self) -> bool:
        """Whether a countdown is running."""
        return self._task is not None and not self._task.done()

    async def wake(self) -> None:
        """Stop any countdown and wake the TV, remembering whether it was already on (asking the
        TV first if its state is unknown)."""
        self.hold()
        if self.display.state is TvState.UNKNOWN:
            with contextlib.suppress(HardwareError):
                await self.display.poll()
        was_on = self.display.state is TvState.ON
        await self.display.wake()
        self._woke = self._woke or not was_on

    def arm(self, *, force: bool = False) -> bool:
        """Start (or restart) the countdown; returns whether it did.

        Without ``force`` it does nothing unless :meth:`wake` switched the TV on.
        """
        if not (self._woke or force):
            return False
        self.hold()
        self._task = asyncio.get_running_loop().create_task(self._countdown())
        return True

    def touch(self) -> None:
        """Activity: restart the countdown if one is running."""
        if self.armed:
            self.arm(force=True)

    def hold(self) -> None:
        """Stop the countdown (a call or a message on screen)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    close = hold

    async def _countdown(self) -> None:
        await asyncio.sleep(self.idle_s)
        self._woke = False
        if self.display.state is TvState.ABSENT or self.display.released:
            return
        try:
            await self.display.standby()
        except HardwareError as err:
            log.warning("%s: idle standby failed: %s", self.display.name, err)
            return
        self.fired += 1
        log.info("%s: standby after %g s idle", self.display.name, self.idle_s)
