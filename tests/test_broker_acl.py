"""The broker configuration central writes: TLS with client certificates, ACLs, no strangers."""

import asyncio

import aiomqtt
import pytest

from tests.acl_cases import CASES, AclCase, read_barrier
from tests.conftest import collecting
from tests.emqx_authz import topic_matches
from vaka.central.broker.broker import acl_text
from vaka.devstack.broker import Broker
from vaka.provisioning.localpki import LocalPki
from vaka.provisioning.tls import client_tls_context


async def settle() -> None:
    await asyncio.sleep(0.3)


def _client(broker: Broker, case: AclCase) -> aiomqtt.Client:
    if case.listener == "main":
        return broker.client(case.who)
    files = broker.pki.claim(case.who)
    ctx = client_tls_context(files.server_ca, files.cert, files.key)
    return broker.client_with(ctx, case.who, port=broker.claim_port)


async def _until(seen: list[aiomqtt.Message], payload: bytes) -> list[bytes]:
    """Wait until ``payload`` has arrived; everything that arrived until then."""
    async with asyncio.timeout(5):
        while payload not in (payloads := [bytes(m.payload) for m in seen]):
            await asyncio.sleep(0.01)
    return payloads


async def _gets_through(
    broker: Broker,
    central: aiomqtt.Client,
    seen_by_central: list[aiomqtt.Message],
    n: int,
    case: AclCase,
) -> bool:
    """Run one case on the broker. Each QoS 1 message is handed on before its PUBACK, so a
    barrier published afterwards arrives after it, if it arrives at all."""
    payload, barrier = f"case {n}".encode(), f"barrier {n}".encode()
    async with _client(broker, case) as client:
        if case.action == "publish":
            await client.publish(case.topic, payload, qos=1)
            await central.publish(read_barrier("central-1"), barrier, qos=1)
            return payload in await _until(seen_by_central, barrier)
        barrier_topic = read_barrier(case.who)
        assert case.allowed or not topic_matches(barrier_topic, case.delivered_topic), case
        await client.subscribe(barrier_topic, qos=1)
        async with collecting(client, case.topic) as seen:
            await central.publish(case.delivered_topic, payload, qos=1)
            await central.publish(barrier_topic, barrier, qos=1)
            return payload in await _until(seen, barrier)


async def test_access_rules_hold_on_mosquitto(broker: Broker) -> None:
    """The shared table of access rules (tests/acl_cases.py) on a real Mosquitto."""
    wrong = []
    async with broker.client("central-1") as central:
        async with collecting(central, "vaka/v1/#") as seen:
            for n, case in enumerate(CASES):
                if await _gets_through(broker, central, seen, n, case) != case.allowed:
                    wrong.append(str(case))
    assert wrong == [], "\n".join(wrong)


async def test_certificate_from_a_foreign_ca_is_refused(broker: Broker, tmp_path) -> None:
    foreign = LocalPki(tmp_path / "foreign").ensure()
    files = foreign.client("u-a")
    # Trust our broker, but present a certificate the broker's client CA never signed.
    ctx = client_tls_context(broker.pki.server_ca_cert, files.cert, files.key)
    client = broker.client_with(ctx, "u-a", timeout=2)
    with pytest.raises(aiomqtt.MqttError):
        async with client:
            pass
    assert "certificate verify failed" in broker.log()


async def test_client_without_certificate_is_refused(broker: Broker) -> None:
    import ssl

    ctx = ssl.create_default_context(cafile=str(broker.pki.server_ca_cert))
    client = broker.client_with(ctx, "anon", timeout=2)
    with pytest.raises(aiomqtt.MqttError):
        async with client:
            pass
    assert "peer did not return a certificate" in broker.log()


async def test_client_id_is_forced_to_the_certificate_cn(broker: Broker) -> None:
    """A unit cannot take over another unit's session by claiming its client id."""
    files = broker.pki.client("u-a")
    ctx = client_tls_context(files.server_ca, files.cert, files.key)
    async with broker.client("u-b") as unit_b:
        impostor = broker.client_with(ctx, "u-b")
        async with impostor:
            await settle()
        # u-b's session survived: it can still publish and the broker logged u-a under its own id.
        await unit_b.publish("vaka/v1/dev/u-b/health", b"still here", qos=1)
    assert "as u-a (" in broker.log()


def test_acl_confines_units_to_their_own_subtree() -> None:
    text = acl_text(("central-1", "central-2"))
    assert "user central-1\ntopic readwrite vaka/v1/#" in text
    assert "user central-2\ntopic readwrite vaka/v1/#" in text
    pattern_lines = [line for line in text.splitlines() if line.startswith("pattern")]
    assert pattern_lines and all("vaka/v1/dev/%u/" in line for line in pattern_lines)
    assert "pattern read vaka/v1/dev/%u/signal/in" in pattern_lines
    assert not any(
        line.startswith("pattern write") and "signal/in" in line for line in pattern_lines
    )
