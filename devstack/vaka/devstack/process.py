"""A child process of the local stack (broker, central, a unit) and what crash tests do to it.

Every part that runs as its own process is one :class:`ChildProcess`: started with its output in
a log file, stopped with SIGTERM (then SIGKILL), and killed, frozen and thawed on demand.
"""

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ChildProcess:
    """One child process whose standard output and error go to ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        #: where this process's part of its log begins: a log kept from an earlier run (a demo
        #: started again in the same directory) is not read as this one's
        self._log_start: int | None = None

    def spawn(self, env: Mapping[str, str] | None = None) -> None:
        """Start the process (appending to its log); a running one is left alone."""
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            if self._log_start is None:
                self._log_start = out.tell()
            self._proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                # A group of its own: Ctrl-C in a terminal reaches the parent (the demo, a test
                # run) alone, which then stops its children in order (units before the broker).
                process_group=0,
            )
        log.debug("%s started (pid %s)", self.name, self._proc.pid)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The running (or last) process; :class:`RuntimeError` before the first start."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc

    @property
    def running(self) -> bool:
        """Whether the process is alive (a frozen one is)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self._proc is not None and self.running else None

    def log(self) -> str:
        """What the process has written so far (since this object first started it)."""
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self._log_start or 0)
                return log_file.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 1500) -> str:
        """The end of its log."""
        return self.log()[-chars:]

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` if the process is alive."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def kill(self) -> None:
        """``kill -9``: no clean-up, sockets closed by the kernel (a crash)."""
        if self._proc is None:
            return
        self.send(signal.SIGKILL)
        self._proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: the process hangs with its sockets open (a stuck process)."""
        self.send(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self.send(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.thaw()  # a frozen process would hold SIGTERM until the timeout
            self.send(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %s s: killed", self.name, timeout)
                proc.kill()
                proc.wait()
        return proc.returncode
