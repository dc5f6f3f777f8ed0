"""The codes a client offers central: each step once, and another try only when it can help."""

import pyotp
import pytest

from tests.conftest import TOTP_SECRET
from vaka.otp import RETRIES, STEP_S, CodeSource, main

NOW = 1_800_000_015.0  # 15 s into a step


def test_current_then_next_then_previous_then_none() -> None:
    totp, step = pyotp.TOTP(TOTP_SECRET), int(NOW // STEP_S)
    source = CodeSource(TOTP_SECRET)
    offered = [source.next(NOW) for _ in range(4)]
    assert offered == [totp.generate_otp(s) for s in (step, step + 1, step - 1)] + [None]


def test_bounded_retries_after_central_refused_the_log_in() -> None:
    # central's one refusal does not say whether the code or the password was wrong:
    # another code may help (another process used this one, or it went stale), but each retry
    # would count towards the lock-out if the password was wrong
    refusal = "log-in refused: wrong staff id, password or one-time code"
    source = CodeSource(TOTP_SECRET)
    source.next(NOW)
    for _ in range(RETRIES):
        assert source.may_retry(refusal, NOW)
        source.next(NOW)
    assert not source.may_retry(refusal, NOW)
    assert not CodeSource(TOTP_SECRET).may_retry("too many failed log-ins from 10.0.0.1", NOW)


def test_a_code_accepted_once_is_not_offered_again_by_this_process() -> None:
    secret = pyotp.random_base32()  # not one other tests log in with: this process remembers
    totp, step = pyotp.TOTP(secret), int(NOW // STEP_S)
    first = CodeSource(secret)
    assert first.next(NOW) == totp.generate_otp(step)
    first.accepted()
    second = CodeSource(secret)
    assert second.next(NOW) == totp.generate_otp(step + 1)
    assert second.next(NOW) is None


def test_the_command_prints_the_current_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([TOTP_SECRET]) == 0
    assert capsys.readouterr().out.split()[0] == pyotp.TOTP(TOTP_SECRET).now()
    assert main(["not base32 !"]) == 2
    assert "not a base32 TOTP secret" in capsys.readouterr().err
