"""Enrolment: a generic simulated unit shows a code, a technician approves it, the unit comes
back with its own certificate; every wrong step is refused with a reason."""

import asyncio
import base64
import contextlib
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import TOTP_SECRET, collecting, staff_token
from tests.nightcheck import agent_config
from vaka.agent.app import Agent
from vaka.agent.config import AgentConfig, parse_config
from vaka.agent.enrol import signing_request, unit_code
from vaka.agent.identity import resolve_identity
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import EnrolRequestMessage, EnrolRequestPayload, display_code
from vaka.protocol.messages import encode
from vaka.provisioning import pki
from vaka.provisioning.tls import client_tls_context

PASSWORD = "correct horse battery"


def generic_config(broker: Broker, creds: Path) -> dict:
    """A unit on a generic image: no id, no certificate, a claim identity."""
    config = agent_config(broker, "u-placeholder")
    del config["unit"]["id"]
    del config["broker"]["cert"], config["broker"]["key"]
    claim = broker.pki.claim()
    config["storage"] = {"credentials_dir": str(creds)}
    config["trust"] = {"config_key": str(broker.pki.config_keys()[1])}
    config["enrolment"] = {
        "claim_cert": str(claim.cert),
        "claim_key": str(claim.key),
        "port": broker.claim_port,
        "repeat_s": 1.0,
    }
    return config


def generic_unit(broker: Broker, creds: Path) -> "contextlib.AbstractAsyncContextManager[Any]":
    """A generic simulated unit in this process: enrols, then runs, until the block ends."""
    return generic_unit_from(parse_config(generic_config(broker, creds)))


@contextlib.asynccontextmanager
async def generic_unit_from(config: AgentConfig) -> AsyncIterator["asyncio.Task[None]"]:

    async def life() -> None:
        # As vaka-agent does: a decommissioned unit enrols again.
        while await Agent(await resolve_identity(config)).run():
            pass

    task = asyncio.create_task(life())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def load_technician(central: CentralService) -> None:
    """The technician ``t-tech`` (password and one-time code), the night group and the
    citizens the tests approve units for, in central's directory."""
    spec = DirectorySpec.model_validate(
        {
            "group": [{"id": "g-night", "name": "Night patrol"}],
            "staff": [
                {
                    "id": "t-tech",
                    "name": "Tina Tech",
                    "role": "technician",
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                }
            ],
            # the citizens the tests approve units for (an unknown one is refused)
            "citizen": [{"id": "c-9"}, {"id": "c-77"}],
        }
    )
    await asyncio.to_thread(central.directory.load, spec)


async def technician(central: CentralService) -> aiohttp.ClientSession:
    """:func:`load_technician`, logged in through the API: a session with their bearer token."""
    await load_technician(central)
    http = aiohttp.ClientSession(base_url=central.url)
    token = await staff_token(central.url, "t-tech", PASSWORD)
    http.headers["Authorization"] = f"Bearer {token}"
    return http


async def approve(
    http: aiohttp.ClientSession, code: str, citizen: str = "c-9", replaces: str | None = None
) -> tuple[int, dict]:
    body = {"profile": "nightcam", "citizen": citizen, "group": "g-night", "replaces": replaces}
    async with http.post(f"/api/enrolments/{code}/approve", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def pending_code(central: CentralService) -> str:
    assert central.provisioner is not None
    queue = central.provisioner.queue
    await wait_for(lambda: asyncio.to_thread(queue.pending), 30, what="a unit waiting to enrol")
    return (await asyncio.to_thread(queue.pending))[0].code


async def test_full_enrolment(broker: Broker, central: CentralService, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    async with broker.client("central-2") as sniffer, collecting(sniffer, "vaka/v1/#") as seen:
        async with generic_unit(broker, creds):
            code = await pending_code(central)
            key_file = creds / "unit.key"
            assert key_file.stat().st_mode & 0o777 == 0o600
            key = pki.load_key(key_file)
            assert unit_code(key) == code
            http = await technician(central)
            async with http:
                status, body = await approve(http, display_code(code))
            assert status == 200, body
            unit = f"u-{code.lower()}"
            assert body["unit"] == unit

            async def online() -> bool:
                return await unit_status(central, unit) == "online"

            await wait_for(online, 15, what="the enrolled unit online in the fleet")
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(broker.pki.client_ca_cert),
            "-untrusted",
            str(broker.pki.issuing_ca_cert),
            str(creds / "unit.crt"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify.stdout
    assert pki.common_name(pki.load_cert(creds / "unit.crt")) == unit
    entries = await asyncio.to_thread(central.audit.entries, kind="unit_enrolled")
    assert entries[0].unit == unit and entries[0].actor == "t-tech"
    # The private key never crossed the broker, in any form.
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    traffic = b"".join(bytes(m.payload) for m in seen)
    assert traffic  # the capture did see the enrolment
    for needle in (
        der,
        base64.b64encode(der),
        secret,
        secret.hex().encode(),
        base64.b64encode(secret),
    ):
        assert needle not in traffic


@pytest.mark.timeout(60)
async def test_refusals(broker: Broker, central: CentralService, tmp_path: Path) -> None:
    http = await technician(central)
    async with http:
        status, body = await approve(http, "AAAAA-AAAAA")
        assert status == 404 and body["error"] == "no unit is waiting with code AAAAA-AAAAA"
        status, body = await approve(http, "not a code")
        assert status == 400 and "is not an enrolment code" in body["error"]

        async with generic_unit(broker, tmp_path / "one"):
            code = await pending_code(central)
            assert (await approve(http, code))[0] == 200
            status, body = await approve(http, code)
            assert status == 409 and f"code {display_code(code)} was already used" in body["error"]

        # An expired code.
        async with generic_unit(broker, tmp_path / "two"):
            assert central.provisioner is not None
            await wait_for(lambda: _pending_other(central, code), 30)
            other = (await _pending_other(central, code))[0]
            db = Path(central.config.database.url.removeprefix("sqlite:///"))
            with sqlite3.connect(db) as conn:
                conn.execute(
                    "UPDATE enrolments SET first_seen = first_seen - 200000 WHERE code = ?",
                    (other,),
                )
            status, body = await approve(http, other)
            assert status == 409 and "has expired" in body["error"]

        # A request whose subject does not match its code.
        key = pki.new_key()
        real = unit_code(key)
        wrong = signing_request(key, "BBBBBBBBBB")
        claim = broker.pki.claim()
        ctx = client_tls_context(broker.pki.server_ca_cert, claim.cert, claim.key)

        async with broker.client_with(ctx, real, port=broker.claim_port) as rogue:
            request = EnrolRequestMessage(
                payload=EnrolRequestPayload(csr=wrong, profile="nightcam", agent_version="x")
            )
            await rogue.publish(f"vaka/v1/enrol/{real}/csr", encode(request), qos=1)
            # refused as it arrives: counted, and nothing is stored for the code
            refusals = central.provisioner.refusals
            await wait_for(lambda: refusals.by_category["EnrolmentRefused"] == 1, 5)
            assert await _pending_other(central, code, other) == []
            status, body = await approve(http, real)
        assert status == 404 and "no unit is waiting" in body["error"]
    refused = await asyncio.to_thread(central.audit.entries, kind="enrolment_refused")
    assert len(refused) >= 3


async def _pending_other(central: CentralService, *exclude: str) -> list[str]:
    assert central.provisioner is not None
    pending = await asyncio.to_thread(central.provisioner.queue.pending)
    return [e.code for e in pending if e.code not in exclude]


async def test_claim_identity_is_confined_to_the_enrolment_subtree(
    broker: Broker, central: CentralService
) -> None:
    claim = broker.pki.claim()
    ctx = client_tls_context(broker.pki.server_ca_cert, claim.cert, claim.key)

    async with broker.client("central-2") as watcher, collecting(watcher, "vaka/v1/#") as seen:
        async with broker.client_with(ctx, "CCCCCCCCCC", port=broker.claim_port) as claim_client:
            await claim_client.publish("vaka/v1/dev/u-victim/health", b"forged", qos=1)
            await claim_client.publish("vaka/v1/dev/u-victim/state", b"forged", qos=1)
            await claim_client.publish("vaka/v1/enrol/CCCCCCCCCC/cert", b"self-answer", qos=1)
            await asyncio.sleep(0.5)
        # Claiming central's client id does not take its session over: the broker forces the
        # client id to the claim certificate's name.
        async with broker.client_with(ctx, "central-1", port=broker.claim_port):
            await asyncio.sleep(0.3)
    assert [m.topic.value for m in seen] == []
    assert central.link.connected.is_set()
    assert "as claim (" in broker.log() and "closing old connection" not in broker.log()


async def test_a_request_under_someone_elses_code_is_refused(
    broker: Broker, central: CentralService, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone with the claim identity may post a request, but only under its key's own code."""
    key = pki.new_key()
    victim_code = "DDDDDDDDDD"
    claim = broker.pki.claim()
    ctx = client_tls_context(broker.pki.server_ca_cert, claim.cert, claim.key)
    async with broker.client_with(ctx, "x", port=broker.claim_port) as rogue:
        request = EnrolRequestMessage(
            payload=EnrolRequestPayload(
                csr=signing_request(key, victim_code), profile="nightcam", agent_version="x"
            )
        )
        await rogue.publish(f"vaka/v1/enrol/{victim_code}/csr", encode(request), qos=1)
        # refused as it arrives, with the reason, and nothing stored
        assert central.provisioner is not None
        refusals = central.provisioner.refusals
        await wait_for(lambda: refusals.by_category["EnrolmentRefused"] == 1, 5)
    assert "key does not belong to code DDDDD-DDDDD" in caplog.text
    assert await _pending_other(central) == []
    http = await technician(central)
    async with http:
        status, body = await approve(http, victim_code)
    assert status == 404 and body["error"] == "no unit is waiting with code DDDDD-DDDDD"


async def test_replaced_card_enrols_under_the_same_citizen_and_revokes_the_old(
    broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    http = await technician(central)
    async with http:
        async with generic_unit(broker, tmp_path / "old"):
            old_code = await pending_code(central)
            assert (await approve(http, old_code, citizen="c-77"))[0] == 200
            old_unit = f"u-{old_code.lower()}"
            await wait_for(lambda: _is(central, old_unit, "online"), 15)
            async with generic_unit(broker, tmp_path / "new"):
                await wait_for(lambda: _pending_other(central, old_code), 30)
                new_code = (await _pending_other(central, old_code))[0]
                status, body = await approve(http, new_code, citizen="c-77", replaces=old_unit)
                assert status == 200 and body["replaced"] == [old_unit]
                new_unit = f"u-{new_code.lower()}"
                await wait_for(lambda: _is(central, new_unit, "online"), 15)
                await wait_for(lambda: _is(central, old_unit, "offline"), 10)
    revoked = await asyncio.to_thread(central.audit.entries, kind="unit_revoked")
    assert revoked and revoked[0].unit == old_unit
    assert revoked[0].detail["reason"] == f"replaced by {new_unit}"
    assert await asyncio.to_thread(central.directory.citizen_of, new_unit) == "c-77"
    assert await asyncio.to_thread(central.directory.citizen_of, old_unit) is None


async def _is(central: CentralService, unit: str, status: str) -> bool:
    return await unit_status(central, unit) == status


def test_a_code_is_refused_when_malformed() -> None:
    from vaka.errors import BadTopic
    from vaka.protocol.enrolment import normalise_code

    assert normalise_code("abcde-fgh23") == "ABCDEFGH23"
    with pytest.raises(BadTopic, match="is not an enrolment code"):
        normalise_code("ABCDE-FGH11")


async def test_an_unapproved_code_is_replaced_by_a_new_one(
    broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    config = generic_config(broker, tmp_path / "creds")
    config["enrolment"]["rotate_after_s"] = 1.0
    async with generic_unit_from(parse_config(config)):
        first = await pending_code(central)
        await wait_for(lambda: _pending_other(central, first), 10, what="a new code")
    key = pki.load_key(tmp_path / "creds" / "unit.key")
    assert unit_code(key) != first
