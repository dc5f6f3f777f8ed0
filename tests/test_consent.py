"""The consent record (docs/privacy.md): a night check needs valid consent from the citizen and
every cohabitant; a withdrawal refuses the next ticket with that reason, and loading an older
directory file does not undo it. On the real stack with ``[privacy] require_consent`` on."""

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOTP_SECRET, totp_secret_file
from tests.nightcheck import PASSWORD, UNIT, directory_spec, running_agent
from vaka.central.directory.spec import DirectorySpec, load_directory_file
from vaka.central.service import CentralService
from vaka.central.settings.privacy import PrivacySettings
from vaka.devstack.broker import Broker
from vaka.devstack.central import running_central
from vaka.devstack.stack import LocalStack
from vaka.errors import ConfigError
from vaka.staff.client import StaffClient, StaffError

YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()
NO_CONSENT = "no valid consent for night checks from citizen c-1001"


@pytest.fixture
async def strict_central(stack: LocalStack) -> AsyncIterator[CentralService]:
    """Central as a care provider runs it: consent required (the dev stack turns it off)."""
    config = stack.central_config(identity="central-1")
    config = config.model_copy(update={"privacy": PrivacySettings(require_consent=True)})
    assert PrivacySettings().require_consent  # on unless a configuration turns it off
    async with running_central(config) as service:
        yield service


def _with_consent(citizen: dict[str, Any]) -> DirectorySpec:
    data = directory_spec().model_dump(mode="json", exclude_none=True)
    data["citizen"][0] = {**data["citizen"][0], **citizen}
    return DirectorySpec.model_validate(data)


async def _dial(staff: StaffClient) -> Any:
    call = await staff.dial(UNIT, "night_check")
    # A second's frames: the shutter opens after the first one (a call hung up at once may
    # end before it opened).
    for _ in range(15):
        await call.next_frame(timeout=10)
    return await call.hangup()


async def _refusal(staff: StaffClient) -> str:
    with pytest.raises(StaffError) as refused:
        await staff.dial(UNIT, "night_check")
    return str(refused.value)


async def _refused_reasons(central: CentralService) -> list[str]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [e.detail["reason"] for e in entries if e.kind == "ticket_refused"]


async def test_withdrawn_consent_refuses_the_next_ticket(
    broker: Broker, strict_central: CentralService, db_url: str
) -> None:
    assert strict_central.config.database.url == db_url  # consent on each backend
    central = strict_central
    # Loaded without any consent: refused, with the reason.
    await asyncio.to_thread(central.directory.load, directory_spec())
    # One log-in for the whole test: a one-time code is good once, a second log-in would wait.
    async with StaffClient(central.url) as staff:
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        await _with_staff(broker, central, staff)
    reasons = await _refused_reasons(central)
    assert reasons.count(NO_CONSENT) == 3, reasons
    assert (await asyncio.to_thread(central.audit.verify)).ok


async def _with_staff(broker: Broker, central: CentralService, staff: StaffClient) -> None:
    assert await _refusal(staff) == f"call refused: {NO_CONSENT}"

    given = [{"scope": ["night_check", "break_glass"], "given": YESTERDAY}]
    await asyncio.to_thread(central.directory.load, _with_consent({"consent": given}))
    async with running_agent(broker):
        assert await _dial(staff) == "you hung up"

        # A cohabitant who may appear in the picture must consent too.
        household = {"cohabitants": ["h-partner"], "consent": given}
        await asyncio.to_thread(central.directory.load, _with_consent(household))
        assert await _refusal(staff) == (
            "call refused: no valid consent for night checks from cohabitant h-partner "
            "of citizen c-1001"
        )
        both = [*given, {"person": "h-partner", "scope": ["night_check"], "given": YESTERDAY}]
        await asyncio.to_thread(
            central.directory.load, _with_consent({"cohabitants": ["h-partner"], "consent": both})
        )
        assert await _dial(staff) == "you hung up"

        # The citizen withdraws: the very next ticket is refused.
        withdrawn = await asyncio.to_thread(
            central.directory.consent.withdraw, "c-1001", "citizen", "night_check"
        )
        assert withdrawn
        assert await _refusal(staff) == f"call refused: {NO_CONSENT}"
        # Loading the older file again does not bring the consent back...
        await asyncio.to_thread(
            central.directory.load, _with_consent({"cohabitants": ["h-partner"], "consent": both})
        )
        assert await _refusal(staff) == f"call refused: {NO_CONSENT}"
        # ...consent given again after the withdrawal does.
        await asyncio.sleep(0.01)
        await asyncio.to_thread(
            central.directory.consent.give, "c-1001", "citizen", "night_check", time.time()
        )
        assert await _dial(staff) == "you hung up"


def test_the_dev_stack_says_it_does_not_require_consent(stack: LocalStack) -> None:
    assert stack.central_config().privacy.require_consent is False


def test_a_consent_from_someone_not_in_the_home_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(
        '[[citizen]]\nid = "c-1001"\ncohabitants = ["h-partner"]\n'
        '[[citizen.consent]]\nperson = "h-lodger"\nscope = ["night_check"]\n'
        "given = 2026-01-05\n"
        '[[citizen.consent]]\nscope = ["video_visit"]\ngiven = 2026-01-05\n'
        "withdrawn = 2026-02-01T08:00:00\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_directory_file(path)
    assert str(raised.value) == (
        f"directory file {path} is inconsistent: "
        "citizen c-1001: consent from h-lodger, who is not a cohabitant"
    )


def _with_keeper(citizen: dict[str, Any]) -> DirectorySpec:
    """The directory with consent, and a support member who keeps the consent record."""
    data = _with_consent(citizen).model_dump(mode="json", exclude_none=True)
    keeper = {
        "id": "s-records",
        "name": "Rita Records",
        "role": "support",
        "groups": [],
        "password": PASSWORD,
        "totp_secret": TOTP_SECRET,
    }
    data["staff"] = [*data["staff"], keeper]
    return DirectorySpec.model_validate(data)


async def test_consent_withdrawn_through_the_api_refuses_the_next_ticket_and_is_audited(
    broker: Broker, strict_central: CentralService
) -> None:
    central = strict_central
    given = [{"scope": ["night_check"], "given": YESTERDAY}]
    await asyncio.to_thread(central.directory.load, _with_keeper({"consent": given}))
    async with StaffClient(central.url) as keeper, StaffClient(central.url) as nurse:
        await keeper.login("s-records", PASSWORD, totp_secret=TOTP_SECRET)
        await nurse.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        # Night staff do not keep the record.
        with pytest.raises(StaffError) as refused:
            await nurse.change_consent("c-1001", "night_check", "withdraw")
        assert str(refused.value) == (
            "refused: the role night_staff may not change the consent record"
        )
        # Nobody outside the home consents for it.
        with pytest.raises(StaffError) as refused:
            await keeper.change_consent("c-1001", "night_check", "give", person="h-lodger")
        assert str(refused.value) == (
            "refused: h-lodger is not the citizen or a cohabitant of citizen c-1001"
        )
        async with running_agent(broker):
            assert await _dial(nurse) == "you hung up"
            answer = await keeper.change_consent(
                "c-1001", "night_check", "withdraw", source="phone call with the citizen"
            )
            assert answer["recorded"] == "consent_withdrawn"
            assert await _refusal(nurse) == f"call refused: {NO_CONSENT}"
            await asyncio.sleep(0.01)  # consent given again counts from after the withdrawal
            answer = await keeper.change_consent(
                "c-1001", "night_check", "give", source="signed form 2026-14"
            )
            assert answer["recorded"] == "consent_given"
            assert await _dial(nurse) == "you hung up"
    entries = await asyncio.to_thread(central.audit.entries)
    changes = [
        (e.kind, e.actor, e.detail["citizen"], e.detail["person"], e.detail["scope"])
        for e in entries
        if e.kind.startswith("consent_")
    ]
    assert changes == [
        ("consent_withdrawn", "s-records", "c-1001", "citizen", "night_check"),
        ("consent_given", "s-records", "c-1001", "citizen", "night_check"),
    ]
    sources = [e.detail["source"] for e in entries if e.kind.startswith("consent_")]
    assert sources == ["phone call with the citizen", "signed form 2026-14"]
    assert (await asyncio.to_thread(central.audit.verify)).ok


def _provision(
    central: CentralService, state: Path, *args: str
) -> "subprocess.CompletedProcess[str]":
    """``vaka-provision`` as the records keeper runs it (password and code from the
    environment, the kept session under ``state``)."""
    credentials = {"VAKA_PASSWORD": PASSWORD, "VAKA_TOTP_SECRET_FILE": str(totp_secret_file())}
    return subprocess.run(
        [
            *(sys.executable, "-m", "vaka.provisioning.cli", args[0]),
            *("--central", central.url, "--user", "s-records", *args[1:]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **credentials, "XDG_STATE_HOME": str(state)},
    )


async def _missing(central: CentralService) -> str | None:
    consent = central.directory.consent
    return await asyncio.to_thread(consent.refusal, "c-1001", "night_check", time.time())


async def test_vaka_provision_withdraws_and_gives_consent(
    broker: Broker, strict_central: CentralService, tmp_path: Path
) -> None:
    central = strict_central
    given = [{"scope": ["night_check"], "given": YESTERDAY}]
    await asyncio.to_thread(central.directory.load, _with_keeper({"consent": given}))
    withdrawn = await asyncio.to_thread(
        _provision, central, tmp_path, "consent", "withdraw", "--citizen", "c-1001",
        "--scope", "night_check", "--source", "letter 2026-11-30",
    )  # fmt: skip
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert "consent_withdrawn" in withdrawn.stdout
    assert (
        await asyncio.to_thread(
            central.directory.consent.refusal, "c-1001", "night_check", time.time()
        )
        == NO_CONSENT
    )
    refused = await asyncio.to_thread(
        _provision, central, tmp_path, "consent", "withdraw", "--citizen", "c-1001",
        "--scope", "night_check", "--person", "h-lodger",
    )  # fmt: skip
    assert refused.returncode == 2
    assert "h-lodger is not the citizen or a cohabitant of citizen c-1001" in refused.stderr
    await asyncio.sleep(0.01)
    again = await asyncio.to_thread(
        _provision, central, tmp_path, "consent", "give", "--citizen", "c-1001",
        "--scope", "night_check",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (
        await asyncio.to_thread(
            central.directory.consent.refusal, "c-1001", "night_check", time.time()
        )
        is None
    )
    kinds = [
        e.kind
        for e in await asyncio.to_thread(central.audit.entries)
        if e.kind.startswith("consent_")
    ]
    assert kinds == ["consent_withdrawn", "consent_given"]
