"""Running coturn (the relay) for the test bed and the benches; production runs it under systemd.

:func:`render_config` writes the test bed's ``turnserver.conf`` from the configuration the
project ships (``turn/turnserver.conf``): the same lines, with the ones :class:`TurnSettings`
names replaced (addresses, ports, realm, certificate, secret, log) and ``allowed-peer-ip`` added
for the test ranges, which coturn lets win over the shipped ``denied-peer-ip`` list. A relay in
the test bed thus refuses loopback and every private range exactly as the municipality's does.

:class:`TurnServer` starts ``turnserver -c FILE`` in the foreground as a child process —
optionally inside a network namespace (``ip netns exec``) — waits until it answers on its
ports, and stops or restarts it. Debian's coturn package enables its own systemd service on
install; the tests never use it.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vaka.errors import ConfigError

log = logging.getLogger(__name__)

SHIPPED_CONFIG = Path(__file__).resolve().parents[3] / "turn" / "turnserver.conf"
"""The production configuration in the repository, the template of every test bed relay."""

TEST_PEER_RANGES = ("100.64.0.0-100.127.255.255", "198.18.0.0-198.19.255.255")
"""The test networks (:data:`vaka.devstack.netns.TEST_NETWORKS`) as coturn ranges."""

# Keys whose shipped value the settings replace (every line with that key is dropped).
_OVERRIDDEN = {
    "listening-ip",
    "relay-ip",
    "listening-port",
    "tls-listening-port",
    "alt-tls-listening-port",
    "cert",
    "pkey",
    "realm",
    "static-auth-secret",
    "min-port",
    "max-port",
    "syslog",
    "log-file",
    "pidfile",
    "no-tls",
}


@dataclass(frozen=True)
class TurnSettings:
    """What differs between the shipped relay and one started here."""

    listen_ip: str
    secret_file: Path
    """One shared secret per line (several during a rotation), as in production."""
    work_dir: Path
    """Where the rendered config, the log and the pid file go."""
    realm: str = "vaka.test"
    port: int = 3478
    tls_port: int | None = None
    """TURN over TLS; needs ``cert`` and ``key``. ``None``: no TLS listener."""
    cert: Path | None = None
    key: Path | None = None
    relay_ip: str | None = None
    """The address relayed traffic leaves from; ``listen_ip`` when not given."""
    min_port: int = 49152
    max_port: int = 65535
    allowed_peers: tuple[str, ...] = field(default=TEST_PEER_RANGES)

    def __post_init__(self) -> None:
        if self.tls_port is not None and (self.cert is None or self.key is None):
            raise ConfigError("a TURN TLS listener needs a certificate and a key")
        if not 0 < self.min_port <= self.max_port < 65536:
            raise ConfigError(f"bad relay port range {self.min_port}-{self.max_port}")

    @property
    def config_path(self) -> Path:
        """The rendered ``turnserver.conf``."""
        return self.work_dir / "turnserver.conf"

    @property
    def log_path(self) -> Path:
        """coturn's log (its stdout)."""
        return self.work_dir / "turnserver.log"


def _key(line: str) -> str:
    return line.split("=", 1)[0].strip()


def read_secrets(path: Path) -> list[str]:
    """The shared secrets in ``path``, one per line; refuses an empty file or a short secret."""
    try:
        secrets = [s.strip() for s in path.read_text().splitlines() if s.strip()]
    except OSError as err:
        raise ConfigError(f"cannot read the TURN secret file {path}: {err.strerror}") from err
    if not secrets:
        raise ConfigError(f"the TURN secret file {path} holds no secret")
    for secret in secrets:
        if len(secret.encode()) < 16 or any(c.isspace() for c in secret):
            raise ConfigError(f"a TURN secret in {path} is shorter than 16 bytes or has spaces")
    return secrets


def render_config(settings: TurnSettings, template: Path = SHIPPED_CONFIG) -> str:
    """The shipped configuration with the settings' lines in place of its own."""
    kept = []
    for raw in template.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and _key(line) in _OVERRIDDEN:
            continue
        kept.append(raw)
    lines = [
        "",
        "# --- vaka.devstack.turn: the test bed's relay ---",
        f"listening-ip={settings.listen_ip}",
        f"relay-ip={settings.relay_ip or settings.listen_ip}",
        f"listening-port={settings.port}",
        f"realm={settings.realm}",
        f"min-port={settings.min_port}",
        f"max-port={settings.max_port}",
        f"pidfile={settings.work_dir / 'turnserver.pid'}",
        "log-file=stdout",
    ]
    if settings.tls_port is not None:
        lines += [
            f"tls-listening-port={settings.tls_port}",
            f"cert={settings.cert}",
            f"pkey={settings.key}",
        ]
    else:
        lines.append("no-tls")
    lines += [f"static-auth-secret={s}" for s in read_secrets(settings.secret_file)]
    lines += [f"allowed-peer-ip={r}" for r in settings.allowed_peers]
    return "\n".join(kept + lines) + "\n"


def probe(host: str, port: int, tls_port: int | None, timeout: float) -> bool:
    """Whether STUN answers on UDP ``host:port`` and, if given, TCP ``tls_port`` accepts."""
    request = bytes.fromhex("000100002112a442") + bytes(range(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            if len(sock.recv(2048)) < 20:
                return False
        except OSError:
            return False
    if tls_port is None:
        return True
    try:
        with socket.create_connection((host, tls_port), timeout=timeout):
            return True
    except OSError:
        return False


class TurnServer:
    """coturn as a child process; ``netns`` runs it inside that network namespace."""

    def __init__(self, settings: TurnSettings, netns: str | None = None) -> None:
        self.settings = settings
        self.netns = netns
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        binary = shutil.which("turnserver") or "/usr/bin/turnserver"
        if not Path(binary).exists():
            raise ConfigError("coturn is not installed: run scripts/setup.sh (apt install coturn)")
        # -c: our file only; -n would ignore it. coturn runs in the foreground unless told
        # -o (daemon), so the child is the server itself and its pid is the one we stop.
        command = [binary, "-c", str(self.settings.config_path)]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]
        return command

    def _ready(self, timeout: float) -> bool:
        """STUN answers and the TLS port accepts (tried from inside the namespace if any)."""
        args = (self.settings.listen_ip, self.settings.port, self.settings.tls_port, timeout)
        if self.netns is None:
            return probe(*args)
        code = f"import sys; from vaka.devstack.turn import probe; sys.exit(not probe{args!r})"
        result = subprocess.run(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", code], capture_output=True
        )
        return result.returncode == 0

    def start(self, timeout: float = 10.0) -> TurnServer:
        """Write the config, start coturn, and wait until it answers STUN."""
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.settings.config_path
        config.write_text(render_config(self.settings))
        config.chmod(0o600)
        with self.settings.log_path.open("ab") as out:
            self._proc = subprocess.Popen(self._command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._ready(0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    f"turnserver did not start; see {self.settings.log_path}: "
                    + self.settings.log_path.read_text(errors="replace")[-800:]
                )
        log.info(
            "turnserver on %s:%s (netns %s, pid %s)",
            self.settings.listen_ip,
            self.settings.port,
            self.netns,
            self._proc.pid,
        )
        return self

    @property
    def running(self) -> bool:
        """Whether the coturn process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop coturn (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
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

    def restart(self, timeout: float = 10.0) -> TurnServer:
        """Stop and start again with a freshly rendered config (a rotated secret, say)."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> TurnServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
