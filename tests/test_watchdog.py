"""vaka.agent.watchdog and vaka.agent.journal: how the agent talks to systemd.

sd_notify messages and watchdog pings are received by a faithful harness;
the journal handler is checked without a journal (its fields, and when it is chosen).

:class:`NotifyHarness` is the service manager's end of the notify protocol, as systemd implements
it: an ``AF_UNIX`` datagram socket (a path in a temporary directory, or an abstract name) with
``SO_PASSCRED``, one message per datagram, ``KEY=VALUE`` lines, the sender's pid taken from the
kernel's ``SCM_CREDENTIALS`` (what ``NotifyAccess=main`` checks). It receives on its own thread and
stamps each message with ``time.monotonic()``, so a frozen event loop under test cannot hide a gap.
"""

import asyncio
import contextlib
import io
import itertools
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Broker
from vaka.agent import journal, watchdog
from vaka.agent.journal import journal_stream_is_stderr, setup_logging
from vaka.agent.watchdog import (
    LinkReadiness,
    SystemdNotifier,
    run_watchdog,
    socket_address,
    watchdog_interval,
)
from vaka.demo.run import write_unit_config

BACKENDS = ["socket", "systemd"]


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


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[NotifyHarness]:
    """A notify socket at a path in ``tmp_path``."""
    h = NotifyHarness(tmp_path / "notify")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def abstract_harness() -> Iterator[NotifyHarness]:
    """A notify socket with an abstract name (``NOTIFY_SOCKET=@...``)."""
    h = NotifyHarness()
    try:
        yield h
    finally:
        h.close()


def use(monkeypatch: pytest.MonkeyPatch, harness: NotifyHarness, watchdog_usec: int) -> None:
    """Point the environment at ``harness`` as systemd would for ``WatchdogSec=``."""
    monkeypatch.setenv("NOTIFY_SOCKET", harness.name)
    monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_usec))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))


def notifier_for(backend: str) -> SystemdNotifier:
    """A notifier on ``$NOTIFY_SOCKET`` with ``backend`` (skipping without systemd-python)."""
    if backend == "systemd":
        pytest.importorskip("systemd.daemon")
    return SystemdNotifier(backend=backend)  # type: ignore[arg-type]


# -- the protocol -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_ready_then_periodic_pings_then_stopping(
    backend: str, harness: NotifyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, harness, 200_000)  # pings every 0.1 s
    notifier = notifier_for(backend)
    assert notifier.enabled and notifier.backend == backend
    assert notifier.ready("starting")
    task = asyncio.create_task(run_watchdog(notifier))
    await asyncio.sleep(0.75)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert notifier.stopping("closing the shutter")
    notifier.close()
    notifier.close()
    assert not notifier.watchdog(), "a closed notifier sends nothing"

    harness.wait_for(lambda m: "STOPPING" in m[-1].fields, 2, "STOPPING=1")
    messages = harness.messages
    assert messages[0].fields == {"READY": "1", "STATUS": "starting"}
    assert messages[-1].fields == {"STOPPING": "1", "STATUS": "closing the shutter"}
    pings = harness.with_field("WATCHDOG")
    assert 5 <= len(pings) <= 9, pings
    assert all(0.05 < gap < 0.3 for gap in gaps(pings)), gaps(pings)
    assert {m.pid for m in messages} == {os.getpid()}


async def test_a_blocked_event_loop_stops_the_pings(
    harness: NotifyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, harness, 200_000)
    notifier = SystemdNotifier()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    task = asyncio.create_task(run_watchdog(notifier))
    # A callback that blocks the loop for a second, as a stuck driver call would.
    loop.call_later(0.3, time.sleep, 1.0)
    await asyncio.sleep(1.8)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    pings = harness.with_field("WATCHDOG")
    between = gaps(pings)
    long = [i for i, gap in enumerate(between) if gap > 0.5]
    assert len(long) == 1, between
    gap = between[long[0]]
    assert 0.95 <= gap < 1.3, f"the pings stopped for {gap:.2f} s, the loop for 1.0 s"
    assert 0.2 <= pings[long[0]].at - started < 0.5, "the gap starts when the loop blocks"
    assert all(g < 0.4 for i, g in enumerate(between) if i != long[0]), between
    assert len(pings) - long[0] - 1 >= 3, "pings resume once the loop runs again"


@pytest.mark.parametrize("backend", BACKENDS)
def test_abstract_socket_names(
    backend: str, abstract_harness: NotifyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert abstract_harness.name.startswith("@")
    monkeypatch.setenv("NOTIFY_SOCKET", abstract_harness.name)
    notifier = notifier_for(backend)
    assert notifier.status("online")
    messages = abstract_harness.wait_for(bool, 2, "a message on the abstract socket")
    assert messages[0].fields == {"STATUS": "online"}
    assert messages[0].pid == os.getpid()


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@vaka/x") == b"\0vaka/x"
    for bad in ("run/notify", "@", "vsock:2:1234", ""):
        with pytest.raises(ValueError, match="neither an absolute path nor an @abstract name"):
            socket_address(bad)


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    notifier = SystemdNotifier()
    assert not notifier.enabled and notifier.backend is None
    assert not notifier.ready() and not notifier.watchdog() and not notifier.stopping()
    # Nothing to ping: run_watchdog returns at once instead of looping.
    asyncio.run(asyncio.wait_for(run_watchdog(notifier), 0.5))


def test_bad_notify_socket_disables_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:9999")
    monkeypatch.setattr(watchdog, "_systemd_notify", lambda: None)
    with caplog.at_level(logging.WARNING):
        notifier = SystemdNotifier()
    assert not notifier.enabled
    assert "not notifying systemd: NOTIFY_SOCKET 'vsock:2:9999'" in caplog.text


def test_falls_back_to_its_own_sender_without_systemd_python(
    harness: NotifyHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", harness.name)
    monkeypatch.setattr(watchdog, "_systemd_notify", lambda: None)
    with caplog.at_level(logging.WARNING):
        notifier = SystemdNotifier()
    assert notifier.backend == "socket"
    assert "systemd-python is not installed: sending sd_notify messages directly" in caplog.text
    with pytest.raises(ValueError, match="needs systemd-python"):
        SystemdNotifier(backend="systemd")
    assert notifier.ready("multi\nline   status")
    messages = harness.wait_for(bool, 2, "READY=1")
    assert messages[0].fields == {"READY": "1", "STATUS": "multi line status"}


def test_explicit_socket_wins_over_the_environment(
    harness: NotifyHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "elsewhere"))
    notifier = SystemdNotifier(harness.name)
    assert notifier.backend == "socket"
    assert notifier.watchdog()
    assert harness.wait_for(bool, 2, "WATCHDOG=1")[0].fields == {"WATCHDOG": "1"}
    with pytest.raises(ValueError, match=r"only sends to \$NOTIFY_SOCKET"):
        SystemdNotifier(harness.name, backend="systemd")


def test_send_failure_is_logged_once_then_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "later"
    notifier = SystemdNotifier(str(path))
    with caplog.at_level(logging.INFO):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        h = NotifyHarness(path)
        try:
            assert notifier.watchdog()
            h.wait_for(bool, 2, "WATCHDOG=1")
        finally:
            h.close()
    assert caplog.text.count("cannot notify systemd on") == 1
    assert "notifying systemd works again" in caplog.text
    with pytest.raises(ValueError, match="not a KEY=VALUE notify field"):
        notifier.notify("READY")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "self"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    env = {k: (str(os.getpid()) if v == "self" else v) for k, v in environ.items()}
    assert watchdog_interval(env) == expected


def test_link_readiness_sends_ready_once(
    harness: NotifyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaka.agent.link.session import LinkState

    monkeypatch.setenv("NOTIFY_SOCKET", harness.name)
    listener = LinkReadiness(SystemdNotifier())
    for state in (LinkState.CONNECTING, LinkState.ONLINE, LinkState.WAITING, LinkState.ONLINE):
        listener(state)
    listener("closed")
    messages = harness.wait_for(lambda m: len(m) == 5, 2, "five messages")
    assert [m.fields for m in messages] == [
        {"STATUS": "link connecting"},
        {"READY": "1", "STATUS": "link online"},
        {"STATUS": "link waiting"},
        {"STATUS": "link online"},
        {"STATUS": "link closed"},
    ]


def test_an_unreachable_broker_still_counts_as_started(
    harness: NotifyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", harness.name)
    listener = LinkReadiness(SystemdNotifier())
    listener("connecting")
    listener("waiting")
    messages = harness.wait_for(lambda m: len(m) == 2, 2, "two messages")
    assert messages[1].fields == {"READY": "1", "STATUS": "link waiting"}


# -- the real agent -----------------------------------------------------------------------------


def test_agent_process_notifies_ready_and_pings(
    broker: Broker, harness: NotifyHarness, tmp_path: Path
) -> None:
    """``vaka-agent --simulate`` under the harness: READY=1 once online, pings, STOPPING=1."""
    config = write_unit_config(
        tmp_path / "unit.toml", broker.pki, "u-watchdog", "nightcam", broker.port, 30
    )
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "WATCHDOG_PID")}
    env.update(NOTIFY_SOCKET=harness.name, WATCHDOG_USEC="1000000", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vaka.agent.cli", "--config", str(config), "--simulate"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 15
        while "online as u-watchdog" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the agent did not come online"
            time.sleep(0.05)
        ready = harness.wait_for(lambda m: bool(harness.with_field("READY")), 2, "READY=1")
        first = next(m for m in ready if m.fields.get("READY") == "1")
        assert first.fields.get("STATUS") == "link online"
        assert first.pid == proc.pid, "NotifyAccess=main: only the main process may notify"

        pings = harness.wait_for(lambda m: len(harness.with_field("WATCHDOG")) >= 3, 3, "pings")
        assert {m.pid for m in pings} == {proc.pid}
        # Freeze the whole process: the pings stop for as long.
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        proc.send_signal(signal.SIGCONT)
        before = len(harness.with_field("WATCHDOG"))
        harness.wait_for(lambda m: len(harness.with_field("WATCHDOG")) >= before + 2, 3, "more")
        assert max(gaps(harness.with_field("WATCHDOG"))) >= 1.4

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert harness.with_field("STOPPING"), "STOPPING=1 on an orderly shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the journal --------------------------------------------------------------------------------


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


def stderr_stream_id() -> str:
    """``JOURNAL_STREAM`` as systemd would set it for this process's stderr."""
    st = os.fstat(2)
    return f"{st.st_dev}:{st.st_ino}"


def test_plain_lines_carry_the_fields(root_logger: logging.Logger) -> None:
    out = io.StringIO()
    handler = setup_logging("INFO", "u-night-1", journal=False, stream=out)
    assert isinstance(handler, logging.StreamHandler)
    log = logging.getLogger("vaka.agent.call")
    log.warning("call refused", extra={"call_id": "c-42", "reason": "ticket expired"})
    log.info("health sent")
    log.debug("not at INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("camera failed", extra={"unit_id": "u-other"})
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(
        " WARNING vaka.agent.call: call refused "
        "[unit_id=u-night-1 call_id=c-42 reason=ticket expired]"
    )
    assert lines[1].endswith(" INFO vaka.agent.call: health sent [unit_id=u-night-1]")
    assert lines[2].endswith("camera failed [unit_id=u-other]")
    assert lines[3] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: boom"
    assert "not at INFO" not in out.getvalue()
    # Called again (unit id now known): replaces its own handler, does not add a second one.
    setup_logging("INFO", "u-night-2", journal=False, stream=out)
    assert sum(h.get_name() == "vaka" for h in root_logger.handlers) == 1


def test_journal_handler_chosen_when_stderr_is_the_journal(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd_journal = pytest.importorskip("systemd.journal")
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert not journal_stream_is_stderr()
    assert isinstance(setup_logging("INFO", "u-1"), logging.StreamHandler)
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")  # inherited, but stderr was redirected
    assert not journal_stream_is_stderr()
    monkeypatch.setenv("JOURNAL_STREAM", stderr_stream_id())
    assert journal_stream_is_stderr()
    handler = setup_logging("INFO", "u-1")
    assert isinstance(handler, systemd_journal.JournalHandler)
    assert [h for h in root_logger.handlers if h.get_name() == "vaka"] == [handler]


def test_journal_entries_have_upper_case_fields() -> None:
    pytest.importorskip("systemd.journal")
    sent: list[tuple[str, dict[str, object]]] = []

    def capture(message: str, /, **fields: object) -> None:
        sent.append((message, fields))

    handler = journal.journal_handler("u-night-1", send=capture)
    record = logging.LogRecord(
        "vaka.agent.call", logging.WARNING, __file__, 1, "refused %s", ("x",), None
    )
    record.call_id = "c-42"
    record.reason = "ticket expired"
    handler.handle(record)
    message, fields = sent[0]
    assert message == "refused x"
    assert fields["UNIT_ID"] == "u-night-1"
    assert fields["CALL_ID"] == "c-42"
    assert fields["REASON"] == "ticket expired"
    assert fields["SYSLOG_IDENTIFIER"] == "vaka-agent"
    assert fields["PRIORITY"] == "4"
    assert fields["LOGGER"] == "vaka.agent.call"
    # The record's other attributes (msg, args, levelname...) are not journal field names.
    assert all(key == key.upper() and not key.startswith("_") for key in fields), fields


def test_falls_back_to_stderr_without_systemd_python(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(unit_id: str | None) -> logging.Handler:
        raise ImportError("No module named 'systemd'")

    monkeypatch.setattr(journal, "journal_handler", missing)
    out = io.StringIO()
    handler = setup_logging("INFO", "u-1", journal=True, stream=out)
    assert isinstance(handler, logging.StreamHandler)
    assert "systemd-python is not installed: logging to stderr without journal fields" in (
        out.getvalue()
    )
