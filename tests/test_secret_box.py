"""The staff's TOTP secrets are sealed at rest when central has a key; log-in works through it,
and a wrong key is refused with a reason instead of letting anybody in."""

import asyncio
import re
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, directory_spec
from vaka import otp
from vaka.central.access.secret_box import PREFIX, SecretBox, SecretBoxError, write_new_key
from vaka.central.cli import main as central_main
from vaka.central.http.staff import LOGIN_REFUSED
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config
from vaka.errors import ConfigError
from vaka.staff.client import StaffClient, StaffError


def test_seal_and_open(tmp_path: Path) -> None:
    write_new_key(tmp_path / "key")
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_new_key(tmp_path / "key")  # never overwritten
    box = SecretBox.from_file(tmp_path / "key")
    sealed = box.seal(TOTP_SECRET)
    assert sealed.startswith(PREFIX) and TOTP_SECRET not in sealed
    assert box.open(sealed) == TOTP_SECRET
    assert box.open(TOTP_SECRET) == TOTP_SECRET  # from before the key: still opens
    write_new_key(tmp_path / "other")
    with pytest.raises(SecretBoxError, match="another key"):
        SecretBox.from_file(tmp_path / "other").open(sealed)
    with pytest.raises(SecretBoxError, match="no totp_key_file"):
        SecretBox().open(sealed)
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(ConfigError, match="is not a TOTP key"):
        SecretBox.from_file(tmp_path / "bad")
    with pytest.raises(ConfigError, match="cannot read"):
        SecretBox.from_file(tmp_path / "missing")


def _sealed_central(broker: Broker, tmp_path: Path, key: Path) -> CentralService:
    config = central_config(broker, tmp_path)
    access = config.staff_access.model_copy(update={"totp_key_file": key})
    return CentralService(config.model_copy(update={"staff_access": access}))


async def test_log_in_through_sealed_secrets(
    broker: Broker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = tmp_path / "totp.key"
    assert central_main(["totp-key", str(key)]) == 0
    assert "totp_key_file" in capsys.readouterr().out
    assert central_main(["totp-key", str(key)]) == 2  # not overwritten
    async with _sealed_central(broker, tmp_path, key) as central:
        await asyncio.to_thread(central.directory.load, directory_spec())
        db = central.config.database.url.removeprefix("sqlite:///")
        with sqlite3.connect(db) as conn:
            stored = [s for (s,) in conn.execute("SELECT totp_secret FROM staff_auth")]
        assert stored and all(s.startswith(PREFIX) and TOTP_SECRET not in s for s in stored)
        async with StaffClient(central.url) as staff:
            await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
            assert staff.token is not None
    # The same database with another key: refused, nobody gets in; the reason is in central's
    # log (the log-in itself gets central's one answer, which confirms no password).
    other = tmp_path / "other.key"
    write_new_key(other)
    async with _sealed_central(broker, tmp_path, other) as central:
        async with StaffClient(central.url) as staff:
            # One unused code, offered once: with the secret the client would go on to offer
            # the rest of the window and then wait for the next step before it gave up.
            code = otp.code_now(TOTP_SECRET, time.time() + otp.STEP_S)
            with pytest.raises(StaffError, match=re.escape(LOGIN_REFUSED)):
                await staff.login("s-nurse", PASSWORD, totp=code)
    assert "a one-time code secret was sealed with another key" in caplog.text
