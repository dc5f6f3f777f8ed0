"""vaka.agent under systemd: the real agent process's notifications, and its journal logging.

The agent process runs under :class:`tests.notify_harness.NotifyHarness`; the journal handler is
checked without a journal (its fields, and when it is chosen).
"""

import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notify_harness import NotifyHarness, gaps, running_harness
from tests.test_enrolment import generic_config
from vaka.agent import journal
from vaka.agent.journal import journal_stream_is_stderr, setup_logging
from vaka.devstack.broker import Broker
from vaka.devstack.units import unit_config, write_unit_config


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[NotifyHarness]:
    """A notify socket at a path in ``tmp_path``."""
    with running_harness(tmp_path / "notify") as h:
        yield h


# -- the real agent -----------------------------------------------------------------------------


def test_agent_process_notifies_ready_and_pings(
    broker: Broker, harness: NotifyHarness, tmp_path: Path
) -> None:
    """``vaka-agent --simulate`` under the harness: READY=1 once online, pings, STOPPING=1."""
    config = write_unit_config(tmp_path / "unit.toml", unit_config(broker, "u-watchdog"))
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


def test_a_unit_waiting_for_enrolment_counts_as_started(
    broker: Broker, harness: NotifyHarness, tmp_path: Path
) -> None:
    """A new unit waits for its technician for as long as it takes: under systemd it is started
    (READY=1, the code in STATUS=) and feeds the watchdog meanwhile, so TimeoutStartSec= does not
    kill it and make it start over."""
    config = write_unit_config(tmp_path / "unit.toml", generic_config(broker, tmp_path / "creds"))
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
        ready = harness.wait_for(lambda m: bool(harness.with_field("READY")), 15, "READY=1")
        first = next(m for m in ready if m.fields.get("READY") == "1")
        code = re.search(r"enrolment code (\w{5}-\w{5})", log_path.read_text())
        assert code, log_path.read_text()
        assert first.fields.get("STATUS") == f"waiting for enrolment, code {code[1]}"
        assert first.pid == proc.pid
        pings = harness.wait_for(lambda m: len(harness.with_field("WATCHDOG")) >= 3, 3, "pings")
        assert {m.pid for m in pings} == {proc.pid}
        assert proc.poll() is None  # still waiting for its technician
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
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
