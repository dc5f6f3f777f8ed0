"""Telling systemd how the agent is: ``READY=1``, ``STATUS=``, ``WATCHDOG=1``, ``STOPPING=1``.

``vaka-agent.service`` is ``Type=notify`` with ``WatchdogSec=``: systemd waits for ``READY=1``
before it counts the agent as started, and restarts it when ``WATCHDOG=1`` pings stop coming.
:func:`run_watchdog` sends those pings from a task on the agent's own event loop, at half the
interval systemd asks for (``WATCHDOG_USEC``), so that a loop stuck in a blocking call or a busy
callback stops the pings and gets the agent restarted.

Backends (STYLE rule 3), in this order unless one is passed to :class:`SystemdNotifier`:

``"systemd"``
    ``systemd.daemon.notify`` from systemd-python (libsystemd's ``sd_notify``), imported lazily;
    used only for the socket named by ``NOTIFY_SOCKET`` in the environment.
``"socket"``
    this module's own sender of the notify protocol: one datagram per message, ``KEY=VALUE``
    lines, to the ``AF_UNIX`` socket named by ``NOTIFY_SOCKET`` (a path, or an abstract name
    written with a leading ``@``). Used when systemd-python is not installed (logged as a warning)
    and for an explicitly given socket.

Without ``NOTIFY_SOCKET`` (not started by systemd, or in tests) every call is a no-op that returns
``False``. The own sender never blocks the event loop: a full socket drops the message (systemd
only needs the next ping in time); libsystemd's ``sd_notify`` sends blocking, into PID 1's large
receive buffer. A failure is logged once, not per ping, and once more when sending recovers.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Literal

log = logging.getLogger(__name__)

Backend = Literal["systemd", "socket"]

#: Largest ``WATCHDOG_USEC`` taken seriously (a day); beyond it the value is treated as garbage.
MAX_WATCHDOG_USEC = 86_400 * 1_000_000
#: Link states (values of :class:`vaka.agent.link.LinkState`) after which the agent counts as
#: started: online, or its first connection attempt has ended and it is waiting to retry. A unit
#: whose broker is unreachable must still count as started (and be watched), not be killed by
#: ``TimeoutStartSec=`` and restarted in a loop while it could be retrying.
READY_STATES = frozenset({"online", "waiting"})


def socket_address(name: str) -> str | bytes:
    """The ``sendto`` address of a ``NOTIFY_SOCKET`` value.

    ``/run/systemd/notify`` stays a path; ``@name`` becomes the abstract address ``b"\\0name"``.
    Anything else (a relative path, ``vsock:...``) raises :class:`ValueError`.
    """
    if name.startswith("@") and len(name) > 1:
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    raise ValueError(f"NOTIFY_SOCKET {name!r} is neither an absolute path nor an @abstract name")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings, half of ``WATCHDOG_USEC``; ``None`` when no watchdog is asked for.

    As in ``sd_watchdog_enabled``: ``WATCHDOG_PID``, when set, must be this process.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", raw)
        return None
    if not 0 < usec <= MAX_WATCHDOG_USEC:
        log.warning("ignoring WATCHDOG_USEC=%r: out of range", raw)
        return None
    return usec / 2 / 1_000_000


def _systemd_notify() -> Callable[[str], bool] | None:
    """systemd-python's ``notify``, or ``None`` when it is not installed."""
    try:
        # By name: the repository's own systemd/ folder (unit files) would shadow the package
        # for a type checker run from the checkout.
        daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    notify: Callable[[str], bool] = daemon.notify
    return notify


class SystemdNotifier:
    """Sends ``sd_notify`` messages to the service manager; a no-op outside systemd.

    ``socket_name`` defaults to ``$NOTIFY_SOCKET``; ``backend`` to systemd-python when it is
    installed and the socket is the environment's, else this module's own sender. Thread-safe.
    :meth:`close` is safe twice; a closed notifier sends nothing.
    """

    def __init__(self, socket_name: str | None = None, backend: Backend | None = None) -> None:
        from_env = socket_name is None
        self.socket_name = os.environ.get("NOTIFY_SOCKET") if from_env else socket_name
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._address: str | bytes | None = None
        self._failed = False
        self._closed = False
        self._sd_notify: Callable[[str], bool] | None = None
        self.backend: Backend | None = None
        if not self.socket_name:
            return
        if backend == "systemd" and not from_env:
            raise ValueError("the systemd backend only sends to $NOTIFY_SOCKET")
        if backend in (None, "systemd") and from_env:
            self._sd_notify = _systemd_notify()
            if self._sd_notify is not None:
                self.backend = "systemd"
                return
            if backend == "systemd":
                raise ValueError("the systemd backend needs systemd-python (import systemd)")
            log.warning("systemd-python is not installed: sending sd_notify messages directly")
        try:
            self._address = socket_address(self.socket_name)
        except ValueError as err:
            log.warning("not notifying systemd: %s", err)
            self.socket_name = None
            return
        self.backend = "socket"

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere (a notify socket is set and the notifier is open)."""
        return self.backend is not None and not self._closed

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one message; ``True`` if it was handed to the socket."""
        if not self.enabled:
            return False
        for field in fields:
            if "=" not in field or "\n" in field:
                raise ValueError(f"not a KEY=VALUE notify field: {field!r}")
        message = "\n".join(fields)
        if self._sd_notify is not None:
            try:
                return self._sent(bool(self._sd_notify(message)), None)
            except OSError as err:  # systemd-python raises what sd_notify returns
                return self._sent(False, err)
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                assert self._address is not None
                self._sock.sendto(message.encode(), socket.MSG_DONTWAIT, self._address)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.ENOBUFS):
                    log.debug("notify socket full, dropped %r", message)
                    return False
                return self._sent(False, err)
        return self._sent(True, None)

    def _sent(self, ok: bool, err: OSError | None) -> bool:
        """Log a failure once, and once again when sending recovers."""
        if not ok and not self._failed:
            log.warning("cannot notify systemd on %s: %s", self.socket_name, err or "send failed")
        elif ok and self._failed:
            log.info("notifying systemd works again")
        self._failed = not ok
        return ok

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is done (with a ``STATUS=`` line if given)."""
        return self.notify("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: one line shown by ``systemctl status``."""
        return self.notify(*self._status(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the agent is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: an orderly shutdown has begun."""
        return self.notify("STOPPING=1", *self._status(status))

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        return ("STATUS=" + " ".join(text.split()),)  # one line, whatever the caller passed

    def close(self) -> None:
        """Close the socket; later calls send nothing. Safe to call twice."""
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None


async def run_watchdog(notifier: SystemdNotifier, interval: float | None = None) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds (default: half ``WATCHDOG_USEC``).

    Runs until cancelled; returns at once when there is nothing to ping. The ping is sent from
    this coroutine on the event loop, never from a thread: a blocked loop must stop the pings.
    """
    if interval is None:
        interval = watchdog_interval()
    if interval is None or not notifier.enabled:
        return
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval}")
    log.info("systemd watchdog: pinging every %.1f s", interval)
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


class LinkReadiness:
    """A link-state listener: ``READY=1`` once, then ``STATUS=`` on every change.

    ``READY=1`` goes out the first time the link reaches one of ``ready_states`` (see
    :data:`READY_STATES`), with ``STATUS=link online`` (or ``waiting``); every later state is a
    ``STATUS=link <state>`` line. Accepts an :class:`~enum.Enum` (its value) or a string.
    """

    def __init__(
        self, notifier: SystemdNotifier, ready_states: frozenset[str] = READY_STATES
    ) -> None:
        self.notifier = notifier
        self.ready_states = ready_states
        self.ready = False

    def __call__(self, state: Enum | str) -> None:
        name = str(state.value) if isinstance(state, Enum) else state
        status = f"link {name}"
        if not self.ready and name in self.ready_states:
            self.ready = True
            self.notifier.ready(status)
        else:
            self.notifier.status(status)
