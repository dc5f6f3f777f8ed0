"""Running Mosquitto for the demo, the tests and the benches (production runs it under systemd).

Central writes the broker's configuration (:mod:`vaka.central.broker`); this module only starts
the binary on it, waits for its port, reloads and stops it.
"""

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from vaka.errors import ConfigError

log = logging.getLogger(__name__)


def dev_broker_user() -> str | None:
    """For a broker run by hand from a private directory: stay the current user.

    Mosquitto started as root drops to ``mosquitto``, which cannot read a root-only directory;
    production runs it under systemd as its own user with files it owns.
    """
    return "root" if os.geteuid() == 0 else None


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise :class:`TimeoutError`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, outside the kernel's ephemeral range.

    A listener on an ephemeral port can be taken, while it restarts, by a client's own outgoing
    connection to it (TCP self-connect on loopback); ports below the range avoid that.
    """
    low, _high = _ephemeral_range()
    for _ in range(200):
        port = random.randint(10_000, max(10_001, low - 1))
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MosquittoProcess:
    """A Mosquitto broker run as a child process (demo and tests; production uses systemd)."""

    def __init__(self, config: Path, host: str, port: int, log_path: Path | None = None):
        self.config = config
        self.host = host
        self.port = port
        self.log_path = log_path or config.with_name("mosquitto.log")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "MosquittoProcess":
        """Start the broker and wait until its port accepts connections."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise ConfigError(
                "mosquitto is not installed: run `make setup` (apt install mosquitto)"
            )
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise ConfigError(
                f"mosquitto did not start; see {self.log_path}: "
                + self.log_path.read_text(errors="replace")[-500:]
            ) from None
        log.info("mosquitto listening on %s:%s (pid %s)", self.host, self.port, self._proc.pid)
        return self

    def reload(self) -> None:
        """Make the broker re-read its configuration, certificates and CRL (SIGHUP)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the broker; safe to call twice."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> "MosquittoProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
