"""Whether the unit's clock is synchronised (network time), behind a small interface.

Call tickets are checked against the unit's own clock, so health reports ``clock_synced`` and
central shows an unsynchronised unit as degraded. :class:`KernelClock` asks the kernel; the
simulated hardware's :class:`~vaka.agent.hw.fake_clock.FakeClock` says what a test (or the demo)
wants, so that a simulated unit does not inherit the state of the machine it runs on.
"""

import ctypes
import ctypes.util
import functools
from pathlib import Path

STA_UNSYNC = 0x0040
TIME_ERROR = 5
#: systemd-timesyncd creates this file once the clock is synchronised.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


class Clock:
    """The unit's clock discipline.

    An implementation **must** override :meth:`synchronised`; it may raise :class:`OSError`
    when it cannot tell (the health sampler reports that as not synchronised and logs it once).
    Calls block briefly: make them off the event loop.
    """

    name = "clock"

    def synchronised(self) -> bool:
        """Whether the clock is synchronised now."""
        raise NotImplementedError


class KernelClock(Clock):
    """The kernel's own account (:func:`kernel_clock_synced`)."""

    def synchronised(self) -> bool:
        return kernel_clock_synced()


class _Timex(ctypes.Structure):
    """The head of Linux's ``struct timex``; the tail is reserved space for the kernel to fill."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def kernel_clock_synced() -> bool:
    """Whether the kernel's clock is synchronised (``adjtimex`` read-only, no privileges needed).

    Raises :class:`OSError` (or :class:`AttributeError` without ``adjtimex``) when it cannot tell.
    """
    timex = _Timex()  # modes = 0: read only
    result = _libc().adjtimex(ctypes.byref(timex))
    if result == -1:
        errno = ctypes.get_errno()
        # Under the hardened unit (ProtectClock, the system-call filter) even a read-only
        # adjtimex is refused: then ask systemd-timesyncd, which marks a synchronised clock.
        if TIMESYNC_FLAG.parent.exists():
            return TIMESYNC_FLAG.exists()
        raise OSError(errno, f"adjtimex failed with errno {errno}")
    return result != TIME_ERROR and not timex.status & STA_UNSYNC
