"""vaka.agent.watchdog: sd_notify messages and watchdog pings, received by a faithful harness.

The harness (:mod:`tests.notify_harness`) is the service manager's end of the notify protocol;
the real agent process and the journal handler are in ``test_watchdog_agent.py``.
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notify_harness import NotifyHarness, gaps, running_harness
from vaka.agent import watchdog
from vaka.agent.watchdog import (
    LinkReadiness,
    SystemdNotifier,
    run_watchdog,
    socket_address,
    watchdog_interval,
)

BACKENDS = ["socket", "systemd"]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[NotifyHarness]:
    """A notify socket at a path in ``tmp_path``."""
    with running_harness(tmp_path / "notify") as h:
        yield h


@pytest.fixture
def abstract_harness() -> Iterator[NotifyHarness]:
    """A notify socket with an abstract name (``NOTIFY_SOCKET=@...``)."""
    with running_harness() as h:
        yield h


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
    from vaka.agent.link.settings import LinkState

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
