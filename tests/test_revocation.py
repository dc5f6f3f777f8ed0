"""Revoking a unit: the live session is cut, the next connection refused, the audit records it;
and the certificate chain is one `openssl verify` accepts."""

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from tests.conftest import TOTP_SECRET, AgentFactory, staff_token
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.provisioning import pki
from vaka.provisioning.tls import client_tls_context

PASSWORD = "correct horse battery"


def openssl_verify(broker: Broker, cert: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(broker.pki.client_ca_cert),
            "-untrusted",
            str(broker.pki.issuing_ca_cert),
            *extra,
            str(cert),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_openssl_accepts_the_client_chain(broker: Broker) -> None:
    files = broker.pki.client("u-chain")
    result = openssl_verify(broker, files.cert)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


async def _technician_token(central: CentralService) -> str:
    spec = DirectorySpec.model_validate(
        {
            "staff": [
                {
                    "id": "t-tech",
                    "name": "Tina Tech",
                    "role": "technician",
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                },
                {
                    "id": "s-nurse",
                    "name": "Nina",
                    "role": "night_staff",
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                },
            ]
        }
    )
    await asyncio.to_thread(central.directory.load, spec)
    return await staff_token(central.url, "t-tech", PASSWORD)


async def _post_revoke(central: CentralService, token: str, unit: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            central.url + f"/api/units/{unit}/revoke",
            json={"reason": "unit stolen"},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_revoking_cuts_the_live_session_and_refuses_the_next(
    broker: Broker, central: CentralService, start_agent: AgentFactory, tmp_path: Path
) -> None:
    unit = "u-stolen"
    files = broker.pki.client(unit)
    assert central.certs is not None
    await asyncio.to_thread(central.certs.register, pki.load_cert(files.cert), "unit")
    saved_cert, saved_key = tmp_path / "old.crt", tmp_path / "old.key"
    shutil.copyfile(files.cert, saved_cert)
    shutil.copyfile(files.key, saved_key)
    agent = start_agent(unit)
    await wait_for(lambda: unit_status(central, unit), 10, what="unit online")
    token = await _technician_token(central)

    started = time.monotonic()
    status, body = await _post_revoke(central, token, unit)
    assert status == 200, body

    async def offline() -> bool:
        return await unit_status(central, unit) == "offline"

    await wait_for(offline, 10, what="live session cut")
    print(f"live session cut {time.monotonic() - started:.2f} s after the revoke request")
    # It stays out: the agent keeps trying and the broker keeps refusing.
    await asyncio.sleep(2)
    assert await unit_status(central, unit) == "offline"
    assert "certificate revoked" in agent.log() or "revoked" in broker.log()
    ctx = client_tls_context(broker.pki.server_ca_cert, saved_cert, saved_key)
    with pytest.raises(aiomqtt.MqttError):
        async with broker.client_with(ctx, unit, timeout=3):
            pass
    entries = await asyncio.to_thread(central.audit.entries, kind="unit_revoked")
    assert entries and entries[0].unit == unit and entries[0].actor == "t-tech"
    assert entries[0].detail["reason"] == "unit stolen"
    # openssl agrees, with the CRL the broker loads.
    crl_check = openssl_verify(
        broker, saved_cert, "-crl_check", "-CRLfile", str(broker.directory / "crl.pem")
    )
    assert (
        crl_check.returncode != 0 and "certificate revoked" in crl_check.stdout + crl_check.stderr
    )


async def test_only_technicians_may_revoke(central: CentralService) -> None:
    await _technician_token(central)
    token = await staff_token(central.url, "s-nurse", PASSWORD)
    status, body = await _post_revoke(central, token, "u-any")
    assert status == 403 and "may not revoke units" in body["error"]


async def test_revoking_an_unknown_unit_says_so(central: CentralService) -> None:
    token = await _technician_token(central)
    status, body = await _post_revoke(central, token, "u-unknown")
    assert status == 409
    assert body["error"] == "no certificate of u-unknown is known to central"
