"""The service manager's end of the sd_notify protocol, for the watchdog tests.

:class:`NotifyHarness` is the service manager's end of the notify protocol, as systemd implements
it: an ``AF_UNIX`` datagram socket (a path in a temporary directory, or an abstract name) with
``SO_PASSCRED``, one message per datagram, ``KEY=VALUE`` lines, the sender's pid taken from the
kernel's ``SCM_CREDENTIALS`` (what ``NotifyAccess=main`` checks). It receives on its own thread and
stamps each message with ``time.monotonic()``, so a frozen event loop under test cannot hide a gap.
"""

import contextlib
import itertools
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Notification:
    """One datagram as the service manager sees it."""

    at: float
    pid: int
    fields: dict[str, str]


class NotifyHarness:
    """A notify socket like PID 1's: records every message with its sender pid and arrival time."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if path is None:
            abstract = f"vaka-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + abstract.encode())
            self.name = "@" + abstract
        else:
            self.sock.bind(str(path))
            self.name = str(path)
        self.sock.settimeout(0.02)
        self._messages: list[Notification] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        creds_size = struct.calcsize("3i")
        while not self._stop.is_set():
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds_size))
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()
            pid = -1
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds_size])[0]
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self._messages.append(Notification(at, pid, fields))

    @property
    def messages(self) -> list[Notification]:
        """Everything received so far, in order."""
        with self._lock:
            return list(self._messages)

    def with_field(self, key: str, value: str = "1") -> list[Notification]:
        """The messages carrying ``key=value``."""
        return [m for m in self.messages if m.fields.get(key) == value]

    def wait_for(
        self, predicate: Callable[[list[Notification]], bool], timeout: float, what: str
    ) -> list[Notification]:
        """Block until ``predicate(messages)`` holds; the messages then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.messages
            if predicate(messages):
                return messages
            time.sleep(0.01)
        raise AssertionError(f"no {what} within {timeout} s; got {self.messages}")

    def close(self) -> None:
        """Stop receiving."""
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def gaps(messages: list[Notification]) -> list[float]:
    """Seconds between consecutive messages."""
    return [b.at - a.at for a, b in itertools.pairwise(messages)]


@contextlib.contextmanager
def running_harness(path: Path | None = None) -> Iterator[NotifyHarness]:
    """A :class:`NotifyHarness` (at ``path``, or an abstract name), closed afterwards."""
    h = NotifyHarness(path)
    try:
        yield h
    finally:
        h.close()
