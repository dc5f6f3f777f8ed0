"""The broker configuration central writes: TLS with client certificates, ACLs, no strangers."""

import asyncio

import aiomqtt
import pytest

from tests.conftest import collecting
from vaka.central.broker.broker import acl_text
from vaka.devstack.broker import Broker
from vaka.provisioning.localpki import LocalPki
from vaka.provisioning.tls import client_tls_context


async def settle() -> None:
    await asyncio.sleep(0.3)


async def test_unit_cannot_publish_into_another_units_subtree(broker: Broker) -> None:
    async with broker.client("central-1") as central, broker.client("u-a") as unit_a:
        async with collecting(central, "vaka/v1/dev/+/health") as seen:
            await unit_a.publish("vaka/v1/dev/u-b/health", b"forged", qos=1)
            await unit_a.publish("vaka/v1/dev/u-b/state", b"forged", qos=1)
            await unit_a.publish("vaka/v1/dev/u-a/health", b"own", qos=1)
            await settle()
    topics = [m.topic.value for m in seen]
    assert topics == ["vaka/v1/dev/u-a/health"], topics


async def test_unit_cannot_receive_another_units_signal_in(broker: Broker) -> None:
    async with (
        broker.client("central-1") as central,
        broker.client("u-a") as unit_a,
        broker.client("u-b") as unit_b,
    ):
        async with (
            collecting(unit_a, "vaka/v1/dev/u-b/signal/in") as stolen,
            collecting(unit_a, "vaka/v1/dev/+/signal/in") as stolen_wild,
            collecting(unit_b, "vaka/v1/dev/u-b/signal/in") as delivered,
        ):
            await central.publish("vaka/v1/dev/u-b/signal/in", b"call for b", qos=1)
            await settle()
    assert [m.payload for m in delivered] == [b"call for b"]
    assert stolen == [] and stolen_wild == []


async def test_unit_cannot_write_its_own_inbound_channels(broker: Broker) -> None:
    async with broker.client("u-a") as unit_a, broker.client("central-1") as central:
        async with collecting(central, "vaka/v1/dev/u-a/#") as seen:
            await unit_a.publish("vaka/v1/dev/u-a/config", b"self-signed config", qos=1)
            await unit_a.publish("vaka/v1/dev/u-a/signal/in", b"fake call", qos=1)
            await settle()
    assert seen == []


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
