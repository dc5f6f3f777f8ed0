"""The codes a client offers central: each step once, and another try only when it can help."""

import pyotp
import pytest

from tests.conftest import TOTP_SECRET
from vaka.otp import REUSED, STEP_S, CodeSource, main

NOW = 1_800_000_015.0  # 15 s into a step


def test_current_then_next_then_previous_then_none() -> None:
    totp, step = pyotp.TOTP(TOTP_SECRET), int(NOW // STEP_S)
    source = CodeSource(TOTP_SECRET)
    offered = [source.next(NOW) for _ in range(4)]
    assert offered == [totp.generate_otp(s) for s in (step, step + 1, step - 1)] + [None]


def test_retry_only_for_a_reused_or_stale_code() -> None:
    source = CodeSource(TOTP_SECRET)
    source.next(NOW)
    assert source.may_retry(f"wrong or missing one-time code: this code was {REUSED}", NOW)
    assert not source.may_retry("wrong or missing one-time code", NOW)
    assert not source.may_retry("wrong or missing one-time code", NOW + STEP_S)
    # two steps later the code offered had gone stale on its way: another may help
    assert source.may_retry("wrong or missing one-time code", NOW + 2 * STEP_S)
    assert not source.may_retry("wrong staff id or password", NOW + 2 * STEP_S)


def test_the_command_prints_the_current_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([TOTP_SECRET]) == 0
    assert capsys.readouterr().out.split()[0] == pyotp.TOTP(TOTP_SECRET).now()
    assert main(["not base32 !"]) == 2
    assert "not a base32 TOTP secret" in capsys.readouterr().err
